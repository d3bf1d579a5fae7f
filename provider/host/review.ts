// Confirming a batch against the listing taken after its restore (pure). Every inserted (or
// adopted) rule must be there and, for position "auto", still in effect; every deleted rule gone.
// A writer that ignores the lock may have changed the chain between our listing and our restore: an
// `auto` rule that is shadowed now but was not in the ruleset the plan expected is moved back to where
// placement says (a few times at most); one that another rule of the same batch shadows, as planned,
// stays. A deleted rule that is back is deleted again. A request whose rule someone removed, or that
// cannot be kept in place, is dropped, and its rules (every family) are removed (an adopted one given back).
import { placeRule, shadowing } from "../rules";
import type { Ruleset } from "../rules";
import { HostError } from "./errors";
import { contextOf } from "./facts";
import type { HostFacts } from "./types";
import { LOCK_FILE } from "./protocol";
import type { Family } from "./protocol";
import { asDelete, asInsert, ownRule, swapLines, textOf } from "./plan";
import type { Plan } from "./plan";
import { withDeleted } from "./ruleset-text";
import type { ChangeRequest } from "./types";

/** How often a rule moved out of place by a writer that ignores the lock is put back. A batch's
 * fix-ups stop after twice as many reviews (the rules dropped at FIXUPS are removed by fix-ups too). */
export const FIXUPS = 5;

/** What is said of a chain that a writer ignoring the lock keeps changing. */
export const keptChanging = (chain: string, target: string) =>
  `the chain ${chain} on ${target} kept changing under another writer that ignores ${LOCK_FILE}`;

export interface Review {
  /** Restore lines per family that put the batch (back) in place; none: the listing confirms it. */
  fixes: Map<Family, string[]>;
  /** Requests dropped by this review, with why. */
  dropped: Map<ChangeRequest, HostError>;
  /** The requests' plans with their lines, reasons and shadowing where the rules are (or are moved to). */
  plans: Map<ChangeRequest, Plan>;
}

/**
 * Reviews the listing after the restore (attempt 0) or after the previous review's fixes, against
 * `plans` (left as they are: the review returns the plans revised). `expected` is the ruleset per
 * family the plans lead to.
 */
export function review(
  rulesets: ReadonlyMap<Family, Ruleset>,
  reqs: ChangeRequest[],
  plans: ReadonlyMap<ChangeRequest, Plan>,
  attempt: number,
  target: string,
  expected: ReadonlyMap<Family, Ruleset>,
  facts?: HostFacts,
): Review {
  const context = (f: Family) => (facts ? contextOf(facts, f) : {});
  const effectiveAsPlanned = (f: Family, req: ChangeRequest) => {
    const rs = expected.get(f);
    const mine = rs ? ownRule(rs, req, f) : undefined;
    return !!rs && !!mine && !shadowing(rs, { table: req.table, chain: mine.chain, line: mine.line, ...context(f) });
  };
  const fixes = new Map<Family, string[]>();
  const fix = (f: Family, ...lines: string[]) => fixes.set(f, [...(fixes.get(f) ?? []), ...lines]);
  const dropped = new Map<ChangeRequest, HostError>();
  const revised = new Map<ChangeRequest, Plan>();
  for (const req of reqs) {
    const { table, chain } = req;
    const found = (f: Family) => ownRule(rulesets.get(f)!, req, f);
    // Restore lines carry the request's own text (which a found rule is exactly), never listed text.
    const text = (f: Family) => textOf(req, f)!;
    const plan: Plan = Object.fromEntries(Object.entries(plans.get(req) ?? {}).map(([f, p]) => [f, { ...p }]));
    revised.set(req, plan);
    let problem: string | undefined;
    for (const [f, planned] of Object.entries(plan).map(([k, v]) => [Number(k) as Family, v] as const)) {
      if (!rulesets.has(f)) continue;
      const rule = found(f);
      if (req.kind === "delete") {
        if (rule) fix(f, asDelete(text(f)));
        continue;
      }
      if (req.kind !== "insert") continue;
      if (!rule) {
        problem = `the rule ${planned.rule} was removed from ${target} right after it was inserted (by another writer)`;
        break;
      }
      // The line it went in at stays; where it is now is said (rules inserted above it later moved it).
      if (rule.line !== planned.line && !planned.now)
        planned.reason += `; now at line ${rule.line}: the chain changed above it after it went in`;
      planned.now = rule.line;
      const rs = rulesets.get(f)!;
      // What the rule's state reports is the listing's truth (another rule of the batch may shadow it).
      const shadow = shadowing(rs, { table, chain: rule.chain, line: rule.line, ...context(f) });
      if (shadow) planned.shadowedBy = shadow.why;
      else delete planned.shadowedBy;
      // An adopted rule stays where its owner put it.
      if (planned.adopted || req.rewrites || req.position !== "auto" || !shadow || !effectiveAsPlanned(f, req))
        continue;
      if (attempt >= FIXUPS) {
        problem = `${keptChanging(chain, target)}, so the rule could not be kept in place and was removed`;
        break;
      }
      const without = withDeleted(rs, table, rule.chain, rule.line);
      const { line, reason } = placeRule(without, {
        table,
        chain,
        rule: req.specs[f]!,
        position: "auto",
        ...context(f),
      });
      fix(f, asDelete(text(f)), asInsert(text(f), line));
      planned.line = line;
      planned.now = line;
      planned.reason = `${reason} (moved back: another writer changed the chain while it was inserted)`;
    }
    if (problem) {
      dropped.set(req, new HostError(problem, { kind: "refusal", target }));
      for (const f of rulesets.keys()) {
        const rule = found(f);
        // An adopted rule is the operator's: it goes back to the hand-made rule it was, where it is now.
        const twin = plan[f]?.adopted ? plan[f]?.twin : undefined;
        const counters = { packets: rule?.counters?.packets ?? 0n, bytes: rule?.counters?.bytes ?? 0n };
        // Otherwise the plan's own undo: a takeover's dropped rule also puts back the rules it took over.
        const undo = plan[f]?.undo ?? [asDelete(text(f))];
        if (rule) fix(f, ...(twin ? swapLines(text(f), twin.rule, rule.line, counters) : undo));
      }
    }
  }
  return { fixes, dropped, plans: revised };
}

/** Does a listing show the request's own rule in this family? */
export const shows = (rulesets: ReadonlyMap<Family, Ruleset>, req: ChangeRequest, f: Family): boolean => {
  const rs = rulesets.get(f);
  return !!rs && !!ownRule(rs, req, f);
};
