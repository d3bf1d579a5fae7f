// The path of a batch that did not go in, or was not confirmed: cancel the armed rollback, undo in the
// shell that holds the lock, and say what happened only as far as a listing shows it.
import type { Batch, Rulesets } from "./batch";
import { confirmStep } from "./commit";
import { HostError } from "./errors";
import { outputOf } from "./facts";
import type { Family, Section } from "./protocol";
import { shows } from "./review";
import type { Shell } from "./shell";

/** What a listing shows still changed by these requests (by default the live ones; empty: all undone). */
export function notUndone(batch: Batch, rulesets: Rulesets, reqs = batch.reqs()): string[] {
  const left: string[] = [];
  for (const req of reqs) {
    const applied = Object.entries(batch.planOf(req)).filter(([, p]) => p.apply.length);
    for (const [f, p] of applied) {
      const there = shows(rulesets, req, Number(f) as Family);
      if (req.kind === "insert" && there) left.push(`${p.rule} is still on the host`);
      if (req.kind === "delete" && !there) left.push(`${p.rule} is still deleted`);
    }
  }
  return left;
}

/** A step failed before anything was applied: says so only if the listing shows it. */
export function unapplied(batch: Batch, head: string, rulesets: Rulesets): never {
  const { target } = batch;
  const left = notUndone(batch, rulesets);
  if (left.length) throw new HostError(`${head}; a listing shows: ${left.join("; ")}`, { kind: "command", target });
  if (!batch.armed) batch.phase = "listing";
  throw new HostError(`${head}, and a listing shows none of the change on the host`, { kind: "command", target });
}

/** Cancels the armed rollback once a listing shows the host as it was. */
export async function disarm(batch: Batch, shell: Shell): Promise<void> {
  if (!batch.armed) return;
  const what = "cancelling the rollback";
  outputOf(await shell.step(what, confirmStep(batch.id)), "confirm", what, batch.target);
  batch.armed = false;
  batch.phase = "listing";
}

/** The confirmation lost the claim to a rollback: says so, with what a listing shows. */
export async function lostClaim(batch: Batch, shell: Shell, confirm: Section): Promise<never> {
  batch.armed = false;
  batch.phase = "listing";
  const rulesets = batch.rulesetsIn(await shell.step("listing the rules", batch.listRulesets()));
  unapplied(batch, `confirming the change on ${batch.target} failed: ${confirm.err}`, rulesets);
}

/**
 * The confirmation could not claim the transaction, and no rollback did either (a /run turned
 * read-only): nothing on the host would revert the change, so this shell, which holds the lock, undoes
 * it now; says so only as far as a listing shows it. A rollback that claims it later finds nothing to
 * undo (its undo lines are skipped where the host is as they would leave it).
 */
export async function unconfirmed(batch: Batch, shell: Shell, confirm: Section): Promise<never> {
  const undo = batch.undoSteps(batch.plansOf());
  const answer = await shell.step("undoing the unconfirmed change", [...undo, batch.listRulesets()].join("\n"));
  batch.armed = false;
  unapplied(
    batch,
    `confirming the change on ${batch.target} failed: ${confirm.err || confirm.out || "no answer"}; it was undone`,
    batch.rulesetsIn(answer),
  );
}
