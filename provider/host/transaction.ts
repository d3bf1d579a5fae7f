// One remote transaction of a batch of changes, in named steps over one remote shell that holds the
// host's lock from the first step to the last:
//   begin    (locked.ts) lock, revert what earlier runs left unconfirmed, list;
//   plan     (apply.ts, pure: plan.ts) each change against the listing;
//   apply    (apply.ts) arm the rollback (commit.ts), one atomic iptables-restore per family, list;
//   fix up   (apply.ts, pure: review.ts) put back what another writer moved, drop what it removed, list;
//   commit   (confirm-save.ts) confirm in this shell, which holds the lock (where the change may cut
//            off new SSH connections, after a fresh one proved they still work), and in the same step
//            save the boot files, only once confirmed.
// A transaction that succeeds hands its conversation on: the next batch for the host, if it comes
// within a short idle window, runs in the same shell under the same lock and is planned against the
// listing this one left (no new shell, no `begin`), so a batch costs two round trips: apply, commit.
// A failure before `commit` leaves the rollback armed: the host undoes the change by itself within
// rollbackAfter. Undoing (undo.ts) is always checked by a listing before anything is said about it.
// The batch's state (its operations in flight, plans, how far it got) is one Batch (batch.ts).
import { PartialListingError, parseSpec } from "../rules";
import type { Session } from "../ssh";
import { apply, fixUp, plan } from "./apply";
import { Batch, freshSession } from "./batch";
import type { Rulesets } from "./batch";
import type { FreshSession, Op, Outcome } from "./batch";
import { judgeBeside } from "./beside";
import { commit, saved } from "./confirm-save";
import { HostError } from "./errors";
import { stepDeadline } from "./facts";
import type { Facts } from "./facts";
import { begin, fits, handOn, listedWhole, newShell, resume } from "./locked";
import type { Conversation, LockedHost } from "./locked";
import { asksSave } from "./plan";
import type { Plan } from "./plan";
import type { Family } from "./protocol";
import type { ChangeResult, GuardOrigin, Placement } from "./types";

export interface TransactionResult {
  outcomes: Map<Op, Outcome>;
  /** The conversation to go on with, when the transaction succeeded (the caller closes it). */
  conversation?: Conversation;
}

export async function runTransaction(
  session: Session,
  facts: Facts,
  table: string,
  ops: Op[],
  fresh: FreshSession = freshSession,
  kept?: Conversation,
): Promise<TransactionResult> {
  const batch = new Batch(session, facts, table, ops, fresh);
  // A kept conversation whose shell has ended (its link dropped while it waited) is not resumed.
  const resumed = kept && fits(kept, batch) ? kept : undefined;
  if (kept && !resumed) await kept.shell.close();
  let shell = resumed?.shell;
  // Where the connection comes from is asked on a channel of its own while the shell takes the lock.
  const finding = originOf(batch);
  finding.catch(() => undefined); // (awaited below; a failure before that is the one reported)
  try {
    shell ??= await newShell(batch);
    const taken = resumed ? resume(resumed, batch) : await begin(batch, shell);
    const { host } = taken;
    const origin = await finding;
    const rulesets = await planned(batch, host, taken.rulesets, origin);
    let confirmed = rulesets;
    let asLeft = true;
    if (batch.live.length) {
      confirmed = await fixUp(batch, host, await apply(batch, host, rulesets));
      asLeft = await saved(batch, host, await commit(batch, host, origin), confirmed, origin);
    }
    for (const op of batch.live) batch.succeed(op, resultOf(batch, host, op));
    // After a failed save the undo changed the ruleset: the next batch starts afresh.
    if (asLeft) return { outcomes: batch.outcomes, conversation: handOn(host, batch, confirmed, resumed) };
  } catch (err) {
    const error = explain(batch, err);
    for (const op of batch.live) batch.fail(op, error);
  }
  await shell?.close();
  return { outcomes: batch.outcomes };
}

/** Plans the batch; where a copy listed in part cannot answer, on the whole tables, listed first. Returns
 * the rulesets it was planned on. */
async function planned(batch: Batch, host: LockedHost, rulesets: Rulesets, origin?: GuardOrigin): Promise<Rulesets> {
  try {
    plan(batch, host, rulesets, origin);
    return rulesets;
  } catch (err) {
    if (!(err instanceof PartialListingError)) throw err;
    const whole = await listedWhole(batch, host);
    plan(batch, host, whole, origin);
    return whole;
  }
}

/** Where the provider's connection comes from, where a guard or the boot files' SSH check judges it. */
async function originOf(batch: Batch): Promise<GuardOrigin | undefined> {
  const saves = batch.live.some((op) => asksSave(op.req));
  if (!saves && !batch.live.some((op) => op.req.kind !== "persist" && op.req.guard)) return undefined;
  return stepDeadline(
    batch.session.origin(),
    batch.limits.step,
    "finding where the connection comes from",
    batch.target,
  );
}

const placements = (plan: Plan): Partial<Record<Family, Placement>> =>
  Object.fromEntries(Object.entries(plan).map(([f, { apply: _a, undo: _u, ...placement }]) => [f, placement]));

/** What a change that succeeded did: the host's facts, where its rule is, what is beside it. */
function resultOf(batch: Batch, host: LockedHost, op: Op): ChangeResult {
  const { req } = op;
  const plan = batch.planOf(req);
  const beside =
    req.kind !== "insert"
      ? {}
      : Object.fromEntries(
          Object.keys(plan).map((k) => {
            const f = Number(k) as Family;
            const rule = { table: batch.table, chain: req.chain, spec: parseSpec(req.specs[f]!) };
            return [f, judgeBeside(host.beside, f, rule, { backend: host.facts.backend, name: batch.target })];
          }),
        );
  const persisted = req.persist ? host.facts.persistence : undefined;
  return { tag: req.tag, facts: host.facts, families: placements(plan), persisted, beside };
}

const utc = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`;

/** The error, with what may be on the host now and what the host does about it by itself. */
function explain(batch: Batch, err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const { phase, limits } = batch;
  if (phase === "listing" && !(e instanceof HostError && e.isInterrupted())) return e;
  const by = utc(Date.now() + (limits.command + limits.rollbackAfter) * 1000);
  const reverts = `the host reverts it by itself within ${limits.rollbackAfter}s after this connection ends (by ${by} at the latest)`;
  const what: Record<typeof phase, string> = {
    listing: "nothing had been sent to change the host yet",
    applying: `the change may be on the host, not confirmed: ${reverts}`,
    committing: `the change is on the host and may or may not be confirmed: if not, ${reverts}; if it stays, the next pulumi up takes it over`,
    committed:
      "the change is on the host (confirmed), but the rules files may not hold it yet: the next pulumi up saves them",
  };
  const fields = e instanceof HostError ? e : { kind: "command" as const, target: batch.target };
  return new HostError(`${e.message}: ${what[phase]}`, fields, { cause: e });
}
