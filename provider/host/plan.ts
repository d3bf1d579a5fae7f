// Planning a batch of changes against the listing (pure): for each request and family the
// iptables-restore lines that apply it and the lines that undo it, each planned against the ruleset
// as the earlier requests of the batch leave it. A create that finds its own identical rule (a tag of
// its lineage) on the host takes it over: the same rule under the lineage's next free tag goes in at
// its line and the found one goes out, in one atomic restore. Never a duplicate.
import { contextOf } from "./facts";
import { findRule, impostors, PartialListingError, PlacementError, placeRule, ruleText, shown } from "../rules";
import type { HostContext, Rule, Ruleset } from "../rules";
import { findTwin } from "./adopt";
import { placeableOf } from "./move";
import { HostError } from "./errors";
import type { HandMade, PersistChange } from "./persist";
import { inApplyOrder } from "./order";
import { ownerError } from "./persist";
import { FAMILIES, iptables } from "./protocol";
import type { Family } from "./protocol";
import { planRewrite } from "./rewrite";
import { asDelete, asInsert, swapLines } from "./restore-lines";
import { withDeleted, withInserted } from "./ruleset-text";
import type { ChangeRequest, GuardOrigin, HostFacts, InsertRequest, Placement } from "./types";

/** A planned change in one family: its restore lines and the lines that undo them, in order. */
export interface Planned extends Placement {
  apply: string[];
  undo: string[];
}
export type Plan = Partial<Record<Family, Planned>>;

export interface PlanContext {
  target: string;
  facts: HostFacts;
  origin?: GuardOrigin;
}

export { asDelete, asInsert, swapLines } from "./restore-lines";

/** The request's rule in this family exactly as rendered (tag included): the only listed rule it acts on. */
export const textOf = (req: ChangeRequest, f: Family): string | undefined =>
  req.kind === "insert" ? req.specs[f] && ruleText(req.chain, req.specs[f]) : req.rules[f];

/** The request's own rule in a listing: exactly its text, in its chain. */
export const ownRule = (rs: Ruleset, req: ChangeRequest, f: Family) => {
  const text = textOf(req, f);
  return text === undefined ? undefined : findRule(rs, req.table, req.chain, text);
};

/** Warnings naming, escaped, the rules of a listing that carry `tag` but are not exactly `text`. */
export const impostorWarnings = (rs: Ruleset, table: string, tag: string, text: string, target: string) =>
  impostors(rs, table, tag, text).map(
    (r) =>
      `${target}: ${r.chain}:${r.line} carries the tag ${tag} but is not the rule made with it (${text}): ` +
      `left alone, neither read nor changed: ${shown(r.text)}`,
  );

/** Does the request concern this family? */
export const concerns = (req: ChangeRequest, f: Family) =>
  req.kind === "insert" ? req.specs[f] !== undefined : req.families.includes(f);

/** The families a batch touches, in order. */
export const familiesOf = (reqs: ChangeRequest[]): Family[] => FAMILIES.filter((f) => reqs.some((r) => concerns(r, f)));

const refusal = (message: string, ctx: PlanContext) => new HostError(message, { kind: "refusal", target: ctx.target });

/** Plans one request in one family against `rs`; returns the plan and the ruleset after it. */
export function planOne(
  req: ChangeRequest,
  f: Family,
  rs: Ruleset,
  ctx: PlanContext,
): { planned?: Planned; next: Ruleset } {
  if (req.persist && req.kind !== "delete" && ctx.facts.owner)
    throw refusal(ownerError(ctx.facts.owner, ctx.target), ctx);
  const { table, chain, tag } = req;
  const found = ownRule(rs, req, f);
  if (req.kind === "persist" || req.kind === "move") {
    if (!found) throw refusal(`the rule tagged ${tag} is not on ${ctx.target} (run pulumi refresh)`, ctx);
    if (req.kind === "persist") return { next: rs };
    const host = contextOf(ctx.facts, f);
    const moved = planMove(rs, table, found, textOf(req, f)!, host);
    const refused = moved.planned.apply.length && ctx.origin && req.guard?.(ctx.origin, f, rs, moved.next, host);
    if (refused) throw refusal(refused, ctx);
    return moved;
  }
  if (req.kind === "delete") {
    if (!found) return { next: rs }; // already gone: success
    // The restore lines are the recorded text (which the listed rule is exactly), never listed text.
    const text = textOf(req, f)!;
    const handMade = req.giveBack?.[f];
    if (handMade !== undefined && found.chain === chain) return giveBack(found, text, handMade, rs, table);
    const planned = {
      line: found.line,
      reason: "delete",
      rule: text,
      apply: [asDelete(text)],
      undo: [asInsert(text, found.line)],
    };
    const next = withDeleted(rs, table, found.chain, found.line);
    const refused = ctx.origin && req.guard?.(ctx.origin, f, rs, next, contextOf(ctx.facts, f));
    if (refused) throw refusal(refused, ctx);
    return { planned, next };
  }
  if (req.rewrites) return planRewrite({ ...req, rewrites: req.rewrites }, f, rs, ctx);
  const text = ruleText(chain, req.specs[f]!);
  if (found)
    throw new HostError(`${text} is on ${ctx.target} already (a bug: planning chose a tag in use)`, {
      kind: "tag-taken",
      target: ctx.target,
    });
  const taken = (req.takeover ?? [])
    .flatMap((t) => {
      const r = t[f] === undefined ? undefined : findRule(rs, table, chain, t[f]);
      return r ? [{ text: t[f]!, line: r.line }] : [];
    })
    .sort((a, b) => a.line - b.line);
  if (taken.length) {
    const line = taken[0].line;
    let next = rs;
    for (const r of [...taken].reverse()) next = withDeleted(next, table, chain, r.line);
    const tags = req.tookOver!.join(", ");
    return {
      planned: {
        line,
        reason: `took over its own identical rule already on the host (${tags}): replaced in place under a new tag`,
        rule: text,
        tookOver: req.tookOver,
        apply: [asInsert(text, line), ...taken.map((r) => asDelete(r.text))],
        undo: [asDelete(text), ...taken.map((r) => asInsert(r.text, r.line))],
      },
      next: withInserted(next, table, chain, line, text),
    };
  }
  const twinText = req.twins?.[f];
  const twin = twinText === undefined ? undefined : findTwin(rs, table, chain, twinText);
  if (twin && req.adopt) {
    // The hand-made rule already decides these packets where it is: tag it there (no guard: nothing changes).
    const reason = `adopted: line ${twin.line} held this rule without a tag (${twin.rule}); tagged in place, counters kept (${twin.packets} packets, ${twin.bytes} bytes)`;
    const [apply, undo] = [swapLines(twin.rule, text, twin.line, twin), swapLines(text, twin.rule, twin.line, twin)];
    return {
      planned: { line: twin.line, reason, rule: text, twin, adopted: true, apply, undo },
      next: withInserted(withDeleted(rs, table, chain, twin.line), table, chain, twin.line, text),
    };
  }
  const host = contextOf(ctx.facts, f);
  const { line, reason, shadowedBy } = placedIn(f, () =>
    placeRule(rs, { table, chain, rule: req.specs[f]!, position: req.position, ...host }),
  );
  const next = withInserted(rs, table, chain, line, text);
  const refused = ctx.origin && req.guard?.(ctx.origin, f, rs, next, host);
  if (refused) throw refusal(refused, ctx);
  return {
    planned: {
      line,
      reason,
      rule: text,
      twin,
      ...(shadowedBy && { shadowedBy: shadowedBy.why }),
      apply: [asInsert(text, line)],
      undo: [asDelete(text)],
    },
    next,
  };
}

/**
 * The move of `found` (listed exactly as `text`, the recorded rule) to where position "auto" puts it now:
 * out by its text and in at that line with its counters, in one restore; when no line makes it effective,
 * or it is there already, a plan that changes nothing and says why.
 */
function planMove(
  rs: Ruleset,
  table: string,
  found: Rule,
  text: string,
  host: HostContext,
): { planned: Planned; next: Ruleset } {
  const to = placeableOf(rs, table, found, host);
  const c = { packets: found.counters?.packets ?? 0n, bytes: found.counters?.bytes ?? 0n };
  const stay = (reason: string) => ({
    planned: { line: found.line, now: found.line, reason, rule: text, apply: [], undo: [] },
    next: rs,
  });
  if (to.shadowedBy) return stay(`not moved: no line of ${found.chain} makes it effective: ${to.shadowedBy}`);
  if (to.line === found.line) return stay(`not moved: line ${found.line} is where it decides its packets`);
  return {
    planned: {
      line: to.line,
      now: to.line,
      reason: `moved from line ${found.line} to line ${to.line}, where it decides its packets again (counters kept: ${c.packets} packets, ${c.bytes} bytes)`,
      rule: text,
      apply: [asDelete(text), asInsert(text, to.line, c)],
      undo: [asDelete(text), asInsert(text, found.line, c)],
    },
    next: withInserted(withDeleted(rs, table, found.chain, found.line), table, found.chain, to.line, text),
  };
}

/** A placement in family `f`'s tables; a PlacementError (a chain missing there) names the family, which
 * matters when the other family has the chain. */
function placedIn<T>(f: Family, place: () => T): T {
  try {
    return place();
  } catch (e) {
    if (!(e instanceof PlacementError)) throw e;
    throw new PlacementError(`${e.message} of ${f === 4 ? "IPv4" : "IPv6"} (${iptables(f)})`);
  }
}

/** The adopted rule `found` replaced by the hand-made rule it was, at its line with its counters (no
 * guard: the verdict does not change). */
function giveBack(
  found: Rule,
  text: string,
  handMade: string,
  rs: Ruleset,
  table: string,
): { planned: Planned; next: Ruleset } {
  const counters = { packets: found.counters?.packets ?? 0n, bytes: found.counters?.bytes ?? 0n };
  return {
    planned: {
      line: found.line,
      reason: `gave back: line ${found.line} holds the hand-made rule again (${handMade}), counters kept`,
      rule: text,
      apply: swapLines(text, handMade, found.line, counters),
      undo: swapLines(handMade, text, found.line, counters),
    },
    next: withInserted(withDeleted(rs, table, found.chain, found.line), table, found.chain, found.line, handMade),
  };
}

/**
 * Chooses an insert's tag from its lineage: the first one on the host in no family. The lineage's
 * rules that are on the host exactly as rendered (this resource's own) are taken over. A rule that
 * only carries a lineage tag is not this resource's: it is left alone.
 */
export function resolveLineage(
  req: InsertRequest,
  listed: ReadonlyMap<Family, Ruleset>,
  ctx: PlanContext,
): InsertRequest {
  const lineage = [{ tag: req.tag, specs: req.specs }, ...(req.successors ?? [])];
  const rulesets = [...listed].filter(([f]) => concerns(req, f));
  const texts = (specs: InsertRequest["specs"]) =>
    Object.fromEntries(rulesets.map(([f]) => [f, ruleText(req.chain, specs[f]!)])) as Partial<Record<Family, string>>;
  const present = lineage.filter(({ specs }) =>
    rulesets.some(([f, rs]) => !!findRule(rs, req.table, req.chain, texts(specs)[f]!)),
  );
  if (!present.length) return req;
  const free = lineage.find((c) => !present.includes(c));
  if (!free)
    throw new HostError(
      `${lineage.length} generations of this rule (${lineage.map((c) => c.tag).join(", ")}) are on ${ctx.target} already: remove them by hand and run pulumi up again`,
      { kind: "tag-taken", target: ctx.target },
    );
  return {
    ...req,
    tag: free.tag,
    specs: free.specs,
    successors: undefined,
    takeover: present.map((c) => texts(c.specs)),
    tookOver: present.map((c) => c.tag),
  };
}

/**
 * Plans a batch against the listings. A request that cannot be planned in one family fails alone,
 * in all of its families; the others are planned against the ruleset as the earlier ones leave it.
 * `resolved` maps each planned request to itself as planned (an insert's tag chosen from its lineage);
 * `expected` is the ruleset per family the plans lead to.
 */
export function planBatch(
  reqs: ChangeRequest[],
  listed: ReadonlyMap<Family, Ruleset>,
  ctx: PlanContext,
): {
  plans: Map<ChangeRequest, Plan>;
  failed: Map<ChangeRequest, Error>;
  resolved: Map<ChangeRequest, ChangeRequest>;
  expected: Map<Family, Ruleset>;
} {
  const current = new Map(listed);
  const plans = new Map<ChangeRequest, Plan>();
  const failed = new Map<ChangeRequest, Error>();
  const resolved = new Map<ChangeRequest, ChangeRequest>();
  for (const original of inApplyOrder(reqs)) {
    try {
      const req = original.kind === "insert" && !original.rewrites ? resolveLineage(original, current, ctx) : original;
      const plan: Plan = {};
      const next = new Map(current);
      for (const f of FAMILIES.filter((g) => concerns(req, g) && current.has(g))) {
        const r = planOne(req, f, next.get(f)!, ctx);
        if (r.planned) plan[f] = r.planned;
        next.set(f, r.next);
      }
      for (const [k, v] of next) current.set(k, v);
      plans.set(req, plan);
      resolved.set(original, req);
    } catch (err) {
      // A copy listed in part cannot answer: the batch is planned again on the whole table.
      if (err instanceof PartialListingError) throw err;
      failed.set(original, err instanceof Error ? err : new Error(String(err)));
    }
  }
  return { plans, failed, resolved, expected: current };
}

/** The restore lines of a batch in one family, and the undo lines (in reverse order), also per request. */
export function linesOf(
  plans: ReadonlyMap<ChangeRequest, Plan>,
  f: Family,
): { apply: string[]; undo: string[]; units: string[][] } {
  const planned = [...plans.values()].flatMap((p) => p[f] ?? []);
  // Each request's undo lines are one unit: an adoption's swap back, a takeover's pair, go in together or not at all.
  const units = [...planned].reverse().map((p) => p.undo);
  return { apply: planned.flatMap((p) => p.apply), undo: units.flat(), units };
}

/** Requests whose rule's place in the saved files changes: persisted inserts and deletes, flag changes. */
export const asksSave = (req: ChangeRequest) => req.persist || req.kind === "persist";

/** Tags to add to the transient list before applying (kept out of the files from the start). */
export const transientTags = (reqs: ChangeRequest[]) =>
  reqs.filter((r) => r.kind !== "delete" && !r.persist).map((r) => r.tag);

/** The rules of the batch adopted with persist: false: the files hold the hand-made rule in their place. */
export const handMadeKept = (reqs: ChangeRequest[], plans: ReadonlyMap<ChangeRequest, Plan>): HandMade[] =>
  reqs.flatMap((r) => {
    if (r.persist || r.kind === "delete") return [];
    if (r.kind === "persist" || (r.kind === "insert" && r.rewrites)) return r.handMade ?? [];
    const planned = Object.values(plans.get(r) ?? {});
    return planned.flatMap((p) => (p.adopted && p.twin ? [{ rule: p.rule, handMade: p.twin.rule }] : []));
  });

/** What the persistence step does after confirming: tags that leave the transient list, and the
 * save for the requests that ask for it; undefined if nothing. */
export function persistChange(reqs: ChangeRequest[]): PersistChange | undefined {
  const tags = (list: ChangeRequest[]) => list.map((r) => r.tag);
  const savers = reqs.filter(asksSave);
  // A persisted rule's tag leaves the transient list (where a failed earlier try may have put it).
  const persistent = tags(reqs.filter((r) => r.kind === "delete" || r.persist));
  if (!savers.length && !persistent.length) return undefined;
  const present = savers
    .filter((r) => r.kind !== "delete" && r.persist)
    .map((r) => ({ tag: r.tag, families: FAMILIES.filter((f) => concerns(r, f)) }));
  // A persisted takeover's files must lose the tag it took over.
  const takenOver = reqs.flatMap((r) => (r.kind === "insert" ? (r.tookOver ?? []) : []));
  const absent = [...transientTags(reqs), ...tags(savers.filter((r) => r.kind === "delete")), ...takenOver];
  return { transient: [], persistent, save: savers.length > 0, present, absent };
}
