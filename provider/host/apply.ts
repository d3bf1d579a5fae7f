// Changing the host for a batch, in the shell that holds its lock: plan each change against the
// listing (plan.ts), arm the rollback (commit.ts) and make one atomic iptables-restore per family,
// then put back what another writer moved meanwhile and drop what it removed (review.ts), until a
// listing confirms the batch. A restore that is refused is undone here, checked by a listing.
import type { Batch, Rulesets } from "./batch";
import { armStep, unitsOf } from "./commit";
import { HostError } from "./errors";
import { ifOk } from "./locked";
import type { LockedHost } from "./locked";
import { saveScript } from "./persist";
import { handMadeKept, impostorWarnings, linesOf, planBatch, textOf, transientTags } from "./plan";
import { iptables } from "./protocol";
import type { Family, Section, Sections } from "./protocol";
import { FIXUPS, keptChanging, review } from "./review";
import type { GuardOrigin } from "./types";
import { disarm, notUndone, unapplied } from "./undo";

/** Plans the batch against the listing; a request that cannot be planned fails alone. Throws
 * PartialListingError where a copy listed in part cannot answer (nothing is planned then). */
export function plan(batch: Batch, host: LockedHost, rulesets: Rulesets, origin?: GuardOrigin): void {
  const { plans, failed, resolved, expected } = planBatch(batch.reqs(), rulesets, {
    target: batch.target,
    facts: host.facts,
    origin,
  });
  for (const { req } of batch.live)
    for (const [f, rs] of rulesets) {
      const text = textOf(req, f);
      if (text === undefined) continue;
      for (const w of impostorWarnings(rs, batch.table, req.tag, text, batch.target)) batch.session.log.warn?.(w);
    }
  batch.plan(plans, expected);
  for (const [req, error] of failed) batch.failWhere((r) => r === req, error);
  for (const op of batch.live) op.req = resolved.get(op.req) ?? op.req;
}

/** Arm the rollback, then one atomic restore per family (each only if all before succeeded); list
 * in any case. Returns the rulesets after it. */
export async function apply(batch: Batch, host: LockedHost, rulesets: Rulesets): Promise<Rulesets> {
  const { shell } = host;
  const plans = batch.plansOf();
  const lines = new Map(batch.families.map((f) => [f, linesOf(plans, f)]));
  const touched = batch.families.filter((f) => lines.get(f)!.apply.length);
  const transient = transientTags(batch.reqs());
  if (!touched.length && !transient.length) return rulesets;
  const parts = ["c=0"];
  if (transient.length) {
    const handMade = handMadeKept(batch.reqs(), plans);
    const change = { transient, handMade, persistent: [], save: false, present: [], absent: [] };
    parts.push(saveScript(host.facts.persistence, change));
  }
  if (touched.length) {
    const undo = Object.fromEntries(touched.map((f) => [f, unitsOf(lines.get(f)!.units)]));
    parts.push(ifOk(armStep(batch.id, batch.table, undo, batch.limits)));
    for (const f of touched) parts.push(ifOk(batch.restore(f, lines.get(f)!.apply)));
  }
  const chains = batch.chains();
  parts.push(batch.confirmListing(rulesets, chains, touched.length));
  batch.phase = "applying";
  const answer = await shell.step("applying the change", parts.join("\n"));
  batch.armed = answer.arm?.code === 0;
  const after = batch.confirmedIn(answer, rulesets, chains);
  // Each step before the restores runs only if the one before it succeeded: the first that failed says why.
  const before: [string, Section | undefined][] = [];
  if (transient.length) before.push(["keeping persist: false rules out of the rules files", answer.persist]);
  if (touched.length) before.push(["arming the rollback", answer.arm]);
  const failed = before.find(([, s]) => s?.code !== 0);
  if (failed) {
    const [what, s] = failed;
    unapplied(batch, `${what} on ${batch.target} failed: ${s?.err || s?.out || "no answer"}`, after);
  }
  const refusedFamily = touched.find((f) => answer[`restore${f}`]?.code !== 0);
  if (refusedFamily)
    await refused(batch, host, refusedFamily, answer, touched.slice(0, touched.indexOf(refusedFamily)), after);
  return after;
}

/** A family's restore was refused: undo the families applied before it, check by a listing. */
async function refused(
  batch: Batch,
  host: LockedHost,
  f: Family,
  answer: Sections,
  applied: Family[],
  after: Rulesets,
): Promise<never> {
  const { target } = batch;
  const why = answer[`restore${f}`]?.err || "no answer";
  let rulesets = after;
  if (applied.length) {
    const undo = batch.undoSteps(batch.plansOf(), applied);
    const r = await host.shell.step("undoing the change", [...undo, batch.listRulesets()].join("\n"));
    rulesets = batch.rulesetsIn(r);
  }
  const left = notUndone(batch, rulesets);
  const head = `${iptables(f)}-restore on ${target} refused the change: ${why}`;
  if (left.length)
    throw new HostError(`${head}; undoing it did not take: ${left.join("; ")}`, { kind: "command", target });
  await disarm(batch, host.shell);
  const undone = applied.length ? `; the ${applied.map((g) => `IPv${g}`).join(" and ")} half was undone` : "";
  throw new HostError(`${head}${undone}, and a listing shows none of it on the host`, {
    kind: "refused",
    target,
    command: `${iptables(f)}-restore`,
    status: answer[`restore${f}`]?.code,
    stderr: why,
  });
}

/** Put back what another writer moved, drop what it removed; until the listing confirms the batch.
 * Returns the rulesets that confirm it. */
export async function fixUp(batch: Batch, host: LockedHost, rulesets: Rulesets): Promise<Rulesets> {
  let listed = rulesets;
  const chains = [...new Set(batch.reqs().map((q) => q.chain))].join(", ");
  for (let attempt = 0; ; attempt++) {
    const r = review(listed, batch.reqs(), batch.plansOf(), attempt, batch.target, batch.expected, host.facts);
    batch.revise(r.plans);
    for (const [req, error] of r.dropped) batch.failWhere((q) => q === req, error);
    if (!r.fixes.size) return listed;
    if (attempt >= 2 * FIXUPS)
      throw new HostError(keptChanging(chains, batch.target), { kind: "refusal", target: batch.target });
    const steps = [...r.fixes].map(([f, lines]) => batch.restore(f, lines));
    const answer = await host.shell.step(
      "putting the rules back in place",
      [...steps, batch.listRulesets()].join("\n"),
    );
    listed = batch.rulesetsIn(answer);
  }
}
