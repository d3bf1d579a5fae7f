// Concluding a batch in the shell that holds the lock: confirm the change (where it may cut off new
// SSH connections, after a fresh one proved they still work), and in the same step save the boot
// files where the batch asks for it, only once confirmed. A save that fails, or whose file would lock
// SSH out, undoes the change of the requests that asked for it, checked by a listing.
import { BOOT_SSH_ADVICE, bootLockoutOf } from "./lockout";
import type { Batch, Rulesets } from "./batch";
import { CLAIM_LOST, confirmStep } from "./commit";
import { HostError } from "./errors";
import { contextOf, outputOf, stepDeadline } from "./facts";
import { ifOk } from "./locked";
import type { LockedHost } from "./locked";
import { fileOf, saveScript, unsaveScript } from "./persist";
import { asksSave, persistChange } from "./plan";
import { framed, preamble, section } from "./protocol";
import type { Family, Sections } from "./protocol";
import type { GuardOrigin } from "./types";
import { lostClaim, notUndone, unconfirmed } from "./undo";

/**
 * Confirm: the transaction claimed, its watchdog stopped, its rollback removed; then, in the same
 * step, the save of the boot files where the batch asks for one (only if the confirmation
 * succeeded). Always in the transaction's own shell, which holds the lock: where the change may cut
 * off new SSH connections, a fresh connection first proves that new ones still work. Returns the
 * answer that holds the save's section, if there is a save.
 */
export async function commit(batch: Batch, host: LockedHost, origin?: GuardOrigin): Promise<Sections | undefined> {
  const { shell } = host;
  const change = persistChange(batch.reqs());
  const saving = change && saveScript(host.facts.persistence, change, bootFamily(batch, origin));
  if (!batch.armed) return saving ? shell.step("saving the ruleset", saving) : undefined;
  if (batch.live.some((op) => op.req.freshConfirm)) await proveFresh(batch);
  // A shell that has ended holds no lock: its rollback may be under way, and nothing is confirmed.
  if (shell.ended)
    throw new HostError(`the connection to ${batch.target} (or its shell) ended before the change was confirmed`, {
      kind: "lost",
      target: batch.target,
    });
  batch.phase = "committing";
  const answer = await shell.step(
    saving ? "confirming the change and saving the ruleset" : "confirming the change",
    saving ? `${confirmStep(batch.id)}\n${ifOk(saving)}` : confirmStep(batch.id),
  );
  if (answer.confirm?.code === CLAIM_LOST) await lostClaim(batch, shell, answer.confirm);
  if (answer.confirm && answer.confirm.code !== 0) await unconfirmed(batch, shell, answer.confirm);
  outputOf(answer, "confirm", "confirming the change", batch.target);
  batch.phase = "committed";
  return answer;
}

/** Proves that a new SSH connection to the host works after the change: a fresh connection (not the
 * pooled one) runs a framed `true`. It confirms nothing: the transaction's shell does (commit). */
async function proveFresh(batch: Batch): Promise<void> {
  const { session, target, limits } = batch;
  const a = session.args;
  const fresh = batch.fresh({ ...a, hostKey: a.hostKey ?? session.hostKey?.publicKey, dialErrorLimit: 1 }, session.log);
  const what = "connecting afresh";
  try {
    const script = framed(preamble(limits) + section("fresh", ["true"]));
    const r = await stepDeadline(fresh.run(script.script), limits.step, what, target);
    outputOf(script.parse(r.stdout), "fresh", what, target);
  } catch (err) {
    throw new HostError(
      `the change may cut off new SSH connections to ${target}, and a fresh connection could not be made ` +
        `(${err instanceof Error ? err.message : String(err)})`,
      { kind: "refusal", target, command: "confirm" },
      { cause: err },
    );
  } finally {
    await fresh.close();
  }
}

/** The save's outcome (in `answer`, see commit): a failed save undoes the runtime change of the
 * requests that asked for it (checked by a listing), then saves again from what is live. Returns
 * whether the ruleset is as the batch left it (no save, or the save succeeded). */
export async function saved(
  batch: Batch,
  host: LockedHost,
  answer: Sections | undefined,
  rulesets: Rulesets,
  origin?: GuardOrigin,
): Promise<boolean> {
  const change = persistChange(batch.reqs());
  if (!change) return true;
  const { target } = batch;
  const persistence = host.facts.persistence;
  const save = answer?.persist;
  const lockout = save?.code === 0 && change.save ? bootLockout(batch, host, answer!, rulesets, origin) : undefined;
  if (save?.code === 0 && !lockout) return true;
  const savers = batch.reqs().filter(asksSave);
  const failed = savers.length ? savers : batch.reqs();
  const why =
    lockout ??
    (save?.err ?? "no answer")
      .split("\n")
      .filter((l) => !l.startsWith("run-parts: executing"))
      .join("\n");
  const files = persistence.files.join(" and ");
  const head = lockout
    ? `saving the ruleset on ${target} with ${persistence.mechanism} was refused: ${lockout}`
    : `saving the ruleset on ${target} with ${persistence.mechanism} to ${files} failed: ${why}`;
  const undo = batch.undoSteps(batch.plansOf(failed));
  // A refused save puts the files back as they were; a failed one saves again from what is live.
  const unsave = lockout ? [unsaveScript(persistence)] : [];
  const undone = await host.shell.step(
    lockout ? "undoing the change after the refused save" : "undoing the change after the failed save",
    [...undo, ...unsave, batch.listRulesets()].join("\n"),
  );
  const left = notUndone(batch, batch.rulesetsIn(undone), failed);
  if (lockout && undone.unsave?.code !== 0)
    left.push(`putting ${files} back failed: ${undone.unsave?.err || "no answer"}`);
  if (savers.length && !lockout) {
    const again = { transient: [], persistent: [], save: true, present: [], absent: [] };
    await host.shell.step("saving the ruleset again", saveScript(persistence, again));
  }
  const tail = left.length
    ? `; undoing the change did not take: ${left.join("; ")}`
    : lockout
      ? `, so the change was undone (a listing shows it) and ${files} were put back as they were. ${BOOT_SSH_ADVICE}`
      : ", so the change was undone (a listing shows it)";
  const error = new HostError(head + tail, { kind: "save", target, command: persistence.mechanism, stderr: why });
  batch.failWhere((r) => failed.includes(r), error);
  return false;
}

/** The family whose boot file a save reads back for the SSH check: the provider's own, where this
 * batch lists the filter table of it (the live side of the comparison). */
function bootFamily(batch: Batch, origin?: GuardOrigin): Family | undefined {
  const f: Family | undefined = origin && (origin.clientAddress.includes(":") ? 6 : 4);
  return f && batch.table === "filter" && batch.families.includes(f) ? f : undefined;
}

/**
 * Would the boot file this save wrote stop accepting new SSH connections from the provider, where
 * the live ruleset (`rulesets`, after the batch) accepts them? Judged by the lockout guard's model on
 * the file as read back (its filter table). Says why, or nothing.
 */
function bootLockout(
  batch: Batch,
  host: LockedHost,
  answer: Sections,
  rulesets: Rulesets,
  origin?: GuardOrigin,
): string | undefined {
  const f = bootFamily(batch, origin);
  if (!f || !origin) return undefined;
  const file = fileOf(host.facts.persistence.files, f);
  const boot = answer.boot;
  if (boot?.code !== 0) return `${file} could not be read back to check it: ${boot?.err || "no answer"}`;
  const { interfaces, addresses } = contextOf(host.facts, f);
  return bootLockoutOf(rulesets.get(f)!, boot.out, origin, file, { interfaces, addresses });
}
