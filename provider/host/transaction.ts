// One remote transaction of a batch of changes, in named steps over one remote shell that holds the
// host's lock from the first step to the last:
//   begin    lock, revert what earlier runs left unconfirmed, list;
//   plan     (pure, plan.ts) each change against the listing;
//   apply    arm the rollback (commit.ts), one atomic iptables-restore per family, list;
//   review   (pure, confirm.ts) put back what another writer moved, drop what it removed, list;
//   commit   confirm in this shell, which holds the lock (where the change may cut off new SSH
//            connections, after a fresh one proved they still work), and in the same step save the
//            boot files, only once confirmed.
// A transaction that succeeds hands its conversation on: the next batch for the host, if it comes
// within a short idle window, runs in the same shell under the same lock and is planned against the
// listing this one left (no new shell, no `begin`), so a batch costs two round trips: apply, commit.
// A failure before `commit` leaves the rollback armed: the host undoes the change by itself within
// rollbackAfter. Undoing is always checked by a listing before anything is said about it.
import { randomBytes } from "node:crypto";
import { parseSpec, shown } from "../rules";
import type { Ruleset } from "../rules";
import { Session } from "../ssh";
import { besideWant, judgeBeside } from "./beside";
import { armStep, unitsOf, CLAIM_LOST, confirmStep, REAP, restoreInput } from "./commit";
import { review, shows } from "./confirm";
import type { Review } from "./confirm";
import { HostError } from "./errors";
import { listing, listings, out, saves, withDeadline } from "./facts";
import type { Facts } from "./facts";
import { BOOT_SSH_ADVICE, bootLockoutOf } from "../lockout";
import { saveScript, unsaveScript } from "./persist";
import {
  asksSave,
  familiesOf,
  handMadeKept,
  impostorWarnings,
  linesOf,
  persistChange,
  planBatch,
  textOf,
  transientTags,
} from "./plan";
import type { Plan } from "./plan";
import { framed, iptables, LOCK_UNAVAILABLE, limitsFor, lock, preamble, section } from "./protocol";
import type { Family, Limits, Section, Sections } from "./protocol";
import { openShell } from "./shell";
import type { Shell } from "./shell";
import type { ChangeRequest, ChangeResult, GuardOrigin, HostFacts, InsertRequest, Placement } from "./types";

export type Outcome = { result: ChangeResult } | { error: Error };

/** What a listing was asked to include beside the rulesets. */
interface Want {
  listening: boolean;
  owner: boolean;
  nat: boolean;
  nft: boolean;
}

/** A conversation kept from one batch to the next: its shell holds the host's lock, and `listed` is
 * the host's ruleset as the last batch left it (confirmed). */
export interface Conversation {
  readonly shell: Shell;
  readonly table: string;
  readonly families: readonly Family[];
  readonly want: Want;
  /** When its shell took the lock (ms). */
  readonly lockedAt: number;
  readonly first: Sections;
  readonly host: HostFacts;
  readonly listed: Listings;
}

export interface TransactionResult {
  outcomes: Map<Op, Outcome>;
  /** The conversation to go on with, when the transaction succeeded (the caller closes it). */
  conversation?: Conversation;
}
export interface Op {
  req: ChangeRequest;
  rollbackAfter: number;
  done: (o: Outcome) => void;
}

/** How far a transaction got: what a failure may have left on the host. */
type Phase = "listing" | "applying" | "committing" | "committed";

/** Parsed listings, per family. */
type Listings = Map<Family, Ruleset>;

/** Opens a new SSH connection (not the pooled one) for a confirmation that must prove new ones work. */
export type FreshSession = (args: Session["args"], log: Session["log"]) => Session;
export const freshSession: FreshSession = (args, log) => new Session(args, log);

export function runTransaction(
  session: Session,
  facts: Facts,
  table: string,
  ops: Op[],
  fresh: FreshSession = freshSession,
  kept?: Conversation,
): Promise<TransactionResult> {
  return new Transaction(session, facts, table, ops, fresh).run(kept);
}

const restoreStep = (f: Family, table: string, lines: string[], limits: Limits) =>
  section(
    `restore${f}`,
    [`${iptables(f)}-restore`, "--noflush", "-w", String(limits.lockWait)],
    restoreInput(table, lines),
  );

/** `then` runs only if every section before it succeeded ($c is the last section's status). */
const ifOk = (then: string) => `if [ "$c" = 0 ]; then\n${then}\nfi`;

const placements = (plan: Plan): Partial<Record<Family, Placement>> =>
  Object.fromEntries(Object.entries(plan).map(([f, { apply: _a, undo: _u, ...placement }]) => [f, placement]));

/** An insert's target (its spec's -j). */
const targetOf = (r: InsertRequest) => {
  const spec = r.specs[4] ?? r.specs[6] ?? [];
  return spec[spec.indexOf("-j") + 1];
};

const utc = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`;

class Transaction {
  private readonly outcomes = new Map<Op, Outcome>();
  private readonly target: string;
  private readonly limits: Limits;
  private readonly families: Family[];
  private readonly id = randomBytes(6).toString("hex");
  private phase: Phase = "listing";
  private armed = false;
  private live: Op[];
  private plans = new Map<ChangeRequest, Plan>();
  /** The rulesets the plans lead to, per family. */
  private expected: Listings = new Map();
  private host?: HostFacts;
  /** The first step's answer: what is beside the chain (Docker, nft) comes from it. */
  private first: Sections = {};
  /** When the shell took the lock (ms). */
  private lockedAt = 0;
  /** Where the provider's connection comes from: the guards and the boot files' SSH check judge it. */
  private sshOrigin?: GuardOrigin;
  /** What that answer includes. */
  private listedWant: Want = { listening: false, owner: false, nat: false, nft: false };

  constructor(
    private readonly session: Session,
    private readonly facts: Facts,
    private readonly table: string,
    ops: Op[],
    private readonly fresh: FreshSession,
  ) {
    this.target = session.target;
    this.live = ops;
    this.families = familiesOf(ops.map((op) => op.req));
    const rollbackAfter = Math.max(...ops.map((op) => op.rollbackAfter));
    this.limits = limitsFor(session.args.perDialTimeout, rollbackAfter);
  }

  async run(kept?: Conversation): Promise<TransactionResult> {
    // A kept conversation whose shell has ended (its link dropped while it waited) is not resumed.
    const resumed = kept && !kept.shell.ended && this.fits(kept) ? kept : undefined;
    if (kept && !resumed) await kept.shell.close();
    let shell = resumed?.shell;
    try {
      const origin = await this.origin();
      shell ??= await this.openShell();
      let listed = resumed ? this.resume(resumed) : await this.begin(shell);
      this.sshOrigin = origin;
      this.plan(listed, origin);
      let saved = true;
      if (this.live.length) {
        const applied = await this.apply(shell, listed);
        listed = await this.review(shell, applied);
        saved = await this.save(shell, await this.commit(shell), listed);
      }
      for (const op of this.live) this.succeed(op);
      // After a failed save the undo changed the ruleset: the next batch starts afresh.
      if (saved) return { outcomes: this.outcomes, conversation: this.conversation(shell, listed, resumed) };
    } catch (err) {
      const error = this.explain(err);
      for (const op of this.live) this.fail(op, error);
    }
    await shell?.close();
    return { outcomes: this.outcomes };
  }

  /** What this batch's listing must include beside the rulesets. */
  private want(): Want {
    const reqs = this.live.map((op) => op.req);
    const inserts = reqs.flatMap((r) => (r.kind === "insert" ? [r] : []));
    const beside = besideWant(
      this.table === "filter" ? inserts.map((r) => ({ chain: r.chain, target: targetOf(r) })) : [],
    );
    return {
      listening: inserts.length > 0,
      owner: reqs.some((r) => r.persist && r.kind !== "delete"),
      nat: !!beside.nat,
      nft: !!beside.nft,
    };
  }

  /** Can this batch go on in the kept conversation (same table, its listing has all it needs, and the
   * lock has not been held for half of what others wait for it: they get their turn)? */
  private fits(kept: Conversation): boolean {
    const want = this.want();
    return (
      kept.table === this.table &&
      Date.now() - kept.lockedAt < (this.limits.lockWait * 1000) / 2 &&
      this.families.every((f) => kept.families.includes(f)) &&
      (Object.keys(want) as (keyof Want)[]).every((k) => !want[k] || kept.want[k])
    );
  }

  /** Goes on where the last batch left: its lock, facts and listing (and what that listing holds). */
  private resume(kept: Conversation): Listings {
    this.host = kept.host;
    this.first = kept.first;
    this.listedWant = kept.want;
    this.lockedAt = kept.lockedAt;
    return new Map(this.families.map((f) => [f, kept.listed.get(f)!]));
  }

  /** The conversation to hand on; families this batch did not list keep the kept listing. */
  private conversation(shell: Shell, listed: Listings, kept?: Conversation): Conversation {
    const all = new Map([...(kept?.listed ?? []), ...listed]);
    return {
      shell,
      table: this.table,
      families: [...all.keys()],
      want: this.listedWant,
      lockedAt: this.lockedAt,
      first: this.first,
      host: this.host!,
      listed: all,
    };
  }

  private succeed(op: Op): void {
    const persisted = op.req.persist ? this.host!.persistence : undefined;
    const plan = this.plans.get(op.req) ?? {};
    const families = placements(plan);
    const req = op.req;
    const beside =
      req.kind !== "insert"
        ? {}
        : Object.fromEntries(
            Object.keys(plan).map((k) => {
              const f = Number(k) as Family;
              const rule = { table: this.table, chain: req.chain, spec: parseSpec(req.specs[f]!) };
              return [f, judgeBeside(this.first, f, rule, { backend: this.host!.backend, name: this.target })];
            }),
          );
    this.outcomes.set(op, { result: { tag: op.req.tag, facts: this.host!, families, persisted, beside } });
  }

  private fail(op: Op, error: Error): void {
    this.outcomes.set(op, { error });
    this.live = this.live.filter((o) => o !== op);
  }

  private failWhere(pred: (req: ChangeRequest) => boolean, error: Error): void {
    for (const op of this.live.filter((o) => pred(o.req))) this.fail(op, error);
  }

  private async origin(): Promise<GuardOrigin | undefined> {
    const saves = this.live.some((op) => asksSave(op.req));
    if (!saves && !this.live.some((op) => op.req.kind !== "persist" && op.req.guard)) return undefined;
    return withDeadline(
      this.session.origin(),
      this.limits.step,
      "finding where the connection comes from",
      this.target,
    );
  }

  private async openShell(): Promise<Shell> {
    const opening = openShell(this.session, this.limits.step);
    return withDeadline(opening, this.limits.step, "opening a shell", this.target).catch((e) => {
      opening.then((s) => s.close()).catch(() => undefined);
      throw e;
    });
  }

  /** Lock, revert what earlier runs left unconfirmed, list. */
  private async begin(shell: Shell): Promise<Listings> {
    const want = this.want();
    // Nothing but taking the lock runs before the lock is held.
    const script = [
      preamble(this.limits) + lock(this.limits),
      ifOk(`${REAP}\n${listing(this.facts.known, this.families, this.table, want)}`),
    ];
    const first = await shell.step("taking the lock and listing the rules", script.join("\n"));
    if (first.lock?.code === LOCK_UNAVAILABLE)
      throw new HostError(`could not take the lock on ${this.target}: ${first.lock.err}`, {
        kind: "command",
        target: this.target,
        command: "lock",
        status: first.lock.code,
        stderr: first.lock.err,
      });
    if (first.lock?.code !== 0) {
      throw new HostError(
        `could not take the host's lock on ${this.target} within ${this.limits.lockWait}s: another pulumi-iptables run ` +
          `(another stack or operator) holds it; try again when it is done${first.lock?.err ? ` (${first.lock.err})` : ""}`,
        { kind: "lock-busy", target: this.target, command: "lock", status: first.lock?.code, stderr: first.lock?.err },
      );
    }
    // Each line "<id> reverted" or "<id> NOT reverted: <why>" (see REAP).
    const reaped = (first.reap?.out ?? "").split("\n").filter(Boolean);
    const reverted = reaped.filter((l) => l.endsWith(" reverted")).map((l) => l.split(" ")[0]);
    if (reverted.length)
      this.session.log.warn?.(
        `${this.target}: reverted unconfirmed changes of an earlier run (${reverted.join(", ")})`,
      );
    for (const l of reaped.filter((l) => !l.endsWith(" reverted")))
      this.session.log.warn?.(`${this.target}: unconfirmed changes of an earlier run: ${shown(l)}`);
    this.host = this.facts.of(first, this.families);
    this.first = first;
    this.listedWant = want;
    this.lockedAt = Date.now();
    return listings(first, this.families, this.target);
  }

  private plan(listed: Listings, origin?: GuardOrigin): void {
    for (const { req } of this.live)
      for (const [f, rs] of listed) {
        const text = textOf(req, f);
        if (text === undefined) continue;
        for (const w of impostorWarnings(rs, this.table, req.tag, text, this.target)) this.session.log.warn?.(w);
      }
    const { plans, failed, resolved, expected } = planBatch(
      this.live.map((op) => op.req),
      listed,
      { target: this.target, facts: this.host!, origin },
    );
    this.plans = plans;
    this.expected = expected;
    for (const [req, error] of failed) this.failWhere((r) => r === req, error);
    for (const op of this.live) op.req = resolved.get(op.req) ?? op.req;
  }

  private reqs(): ChangeRequest[] {
    return this.live.map((op) => op.req);
  }

  private livePlans(): Map<ChangeRequest, Plan> {
    return new Map(this.reqs().map((r) => [r, this.plans.get(r) ?? {}]));
  }

  /** Arm the rollback, then one atomic restore per family (each only if all before succeeded); list
   * in any case. Returns the listings after it. */
  private async apply(shell: Shell, listed: Listings): Promise<Listings> {
    const plans = this.livePlans();
    const lines = new Map(this.families.map((f) => [f, linesOf(plans, f)]));
    const touched = this.families.filter((f) => lines.get(f)!.apply.length);
    const transient = transientTags(this.reqs());
    if (!touched.length && !transient.length) return listed;
    const parts = ["c=0"];
    if (transient.length) {
      const handMade = handMadeKept(this.reqs(), plans);
      const change = { transient, handMade, persistent: [], save: false, present: [], absent: [] };
      parts.push(saveScript(this.host!.persistence, change));
    }
    if (touched.length) {
      const undo = Object.fromEntries(touched.map((f) => [f, unitsOf(lines.get(f)!.units)]));
      parts.push(ifOk(armStep(this.id, this.table, undo, this.limits)));
      for (const f of touched) parts.push(ifOk(restoreStep(f, this.table, lines.get(f)!.apply, this.limits)));
    }
    parts.push(saves(this.families, this.table));
    this.phase = "applying";
    const second = await shell.step("applying the change", parts.join("\n"));
    this.armed = second.arm?.code === 0;
    const after = listings(second, this.families, this.target);
    // Each step before the restores runs only if the one before it succeeded: the first that failed says why.
    const before: [string, Section | undefined][] = [];
    if (transient.length) before.push(["keeping persist: false rules out of the rules files", second.persist]);
    if (touched.length) before.push(["arming the rollback", second.arm]);
    const failed = before.find(([, s]) => s?.code !== 0);
    if (failed) {
      const [what, s] = failed;
      this.unapplied(`${what} on ${this.target} failed: ${s?.err || s?.out || "no answer"}`, after);
    }
    const refused = touched.find((f) => second[`restore${f}`]?.code !== 0);
    if (refused) await this.refused(shell, refused, second, touched.slice(0, touched.indexOf(refused)), after);
    return after;
  }

  /** A family's restore was refused: undo the families applied before it, check by a listing. */
  private async refused(shell: Shell, f: Family, answer: Sections, applied: Family[], after: Listings): Promise<never> {
    const why = answer[`restore${f}`]?.err || "no answer";
    const plans = this.livePlans();
    let listed = after;
    if (applied.length) {
      const undo = applied.map((g) => restoreStep(g, this.table, linesOf(plans, g).undo, this.limits));
      const r = await shell.step("undoing the change", [...undo, saves(this.families, this.table)].join("\n"));
      listed = listings(r, this.families, this.target);
    }
    const left = this.notUndone(listed);
    const head = `${iptables(f)}-restore on ${this.target} refused the change: ${why}`;
    if (left.length)
      throw new HostError(`${head}; undoing it did not take: ${left.join("; ")}`, {
        kind: "command",
        target: this.target,
      });
    await this.disarm(shell);
    const undone = applied.length ? `; the ${applied.map((g) => `IPv${g}`).join(" and ")} half was undone` : "";
    throw new HostError(`${head}${undone}, and a listing shows none of it on the host`, {
      kind: "refused",
      target: this.target,
      command: `${iptables(f)}-restore`,
      status: answer[`restore${f}`]?.code,
      stderr: why,
    });
  }

  /** A step failed before anything was applied: says so only if the listing shows it. */
  private unapplied(head: string, listed: Listings): never {
    const left = this.notUndone(listed);
    if (left.length)
      throw new HostError(`${head}; a listing shows: ${left.join("; ")}`, { kind: "command", target: this.target });
    if (!this.armed) this.phase = "listing";
    throw new HostError(`${head}, and a listing shows none of the change on the host`, {
      kind: "command",
      target: this.target,
    });
  }

  /** What a listing shows still changed by this batch's live requests (empty: all undone). */
  private notUndone(listed: Listings, reqs = this.reqs()): string[] {
    const left: string[] = [];
    for (const req of reqs) {
      const plan = this.plans.get(req) ?? {};
      const applied = Object.entries(plan).filter(([, p]) => p.apply.length);
      if (!applied.length) continue;
      for (const [f, p] of applied) {
        const there = shows(listed, req, Number(f) as Family);
        if (req.kind === "insert" && there) left.push(`${p.rule} is still on the host`);
        if (req.kind === "delete" && !there) left.push(`${p.rule} is still deleted`);
      }
    }
    return left;
  }

  /** Put back what another writer moved, drop what it removed; until the listing confirms the batch. */
  private async review(shell: Shell, listed: Listings): Promise<Listings> {
    for (let attempt = 0; ; attempt++) {
      const r: Review = review(listed, this.reqs(), this.plans, attempt, this.target, this.expected);
      for (const [req, error] of r.dropped) this.failWhere((q) => q === req, error);
      if (!r.fixes.size) return listed;
      if (attempt >= 10)
        throw new HostError(`the chain on ${this.target} keeps changing under another writer that ignores the lock`, {
          kind: "refusal",
          target: this.target,
        });
      const steps = [...r.fixes].map(([f, lines]) => restoreStep(f, this.table, lines, this.limits));
      const answer = await shell.step(
        "putting the rules back in place",
        [...steps, saves(this.families, this.table)].join("\n"),
      );
      listed = listings(answer, this.families, this.target);
    }
  }

  /**
   * Confirm: the transaction claimed, its watchdog stopped, its rollback removed; then, in the same
   * step, the save of the boot files where the batch asks for one (only if the confirmation
   * succeeded). Always in the transaction's own shell, which holds the lock: where the change may cut
   * off new SSH connections, a fresh connection first proves that new ones still work. Returns the
   * answer that holds the save's section, if there is a save.
   */
  private async commit(shell: Shell): Promise<Sections | undefined> {
    const change = persistChange(this.reqs());
    const saving = change && saveScript(this.host!.persistence, change, this.bootFamily());
    if (!this.armed) return saving ? shell.step("saving the ruleset", saving) : undefined;
    if (this.live.some((op) => op.req.freshConfirm)) await this.proveFresh();
    // A shell that has ended holds no lock: its rollback may be under way, and nothing is confirmed.
    if (shell.ended)
      throw new HostError(`the connection to ${this.target} (or its shell) ended before the change was confirmed`, {
        kind: "lost",
        target: this.target,
      });
    this.phase = "committing";
    const answer = await shell.step(
      saving ? "confirming the change and saving the ruleset" : "confirming the change",
      saving ? `${confirmStep(this.id)}\n${ifOk(saving)}` : confirmStep(this.id),
    );
    if (answer.confirm?.code === CLAIM_LOST) await this.lostClaim(shell, answer.confirm);
    if (answer.confirm && answer.confirm.code !== 0) await this.unconfirmed(shell, answer.confirm);
    out(answer, "confirm", "confirming the change", this.target);
    this.phase = "committed";
    return answer;
  }

  /** The confirmation lost the claim to a rollback: says so, with what a listing shows. */
  private async lostClaim(shell: Shell, confirm: Section): Promise<never> {
    this.armed = false;
    this.phase = "listing";
    const listed = listings(
      await shell.step("listing the rules", saves(this.families, this.table)),
      this.families,
      this.target,
    );
    this.unapplied(`confirming the change on ${this.target} failed: ${confirm.err}`, listed);
  }

  /**
   * The confirmation could not claim the transaction, and no rollback did either (a /run turned
   * read-only): nothing on the host would revert the change, so this shell, which holds the lock, undoes
   * it now; says so only as far as a listing shows it. A rollback that claims it later finds nothing to
   * undo (its undo lines are skipped where the host is as they would leave it).
   */
  private async unconfirmed(shell: Shell, confirm: Section): Promise<never> {
    const plans = this.livePlans();
    const undo = this.families.flatMap((f) => {
      const lines = linesOf(plans, f).undo;
      return lines.length ? [restoreStep(f, this.table, lines, this.limits)] : [];
    });
    const answer = await shell.step(
      "undoing the unconfirmed change",
      [...undo, saves(this.families, this.table)].join("\n"),
    );
    this.armed = false;
    this.unapplied(
      `confirming the change on ${this.target} failed: ${confirm.err || confirm.out || "no answer"}; it was undone`,
      listings(answer, this.families, this.target),
    );
  }

  /** Cancels the armed rollback once a listing shows the host as it was. */
  private async disarm(shell: Shell): Promise<void> {
    if (!this.armed) return;
    out(
      await shell.step("cancelling the rollback", confirmStep(this.id)),
      "confirm",
      "cancelling the rollback",
      this.target,
    );
    this.armed = false;
    this.phase = "listing";
  }

  /** Proves that a new SSH connection to the host works after the change: a fresh connection (not the
   * pooled one) runs a framed `true`. It confirms nothing: the transaction's shell does (commit). */
  private async proveFresh(): Promise<void> {
    const a = this.session.args;
    const fresh = this.fresh(
      { ...a, hostKey: a.hostKey ?? this.session.hostKey?.publicKey, dialErrorLimit: 1 },
      this.session.log,
    );
    const what = "connecting afresh";
    try {
      const script = framed(preamble(this.limits) + section("fresh", ["true"]));
      const r = await withDeadline(fresh.run(script.script), this.limits.step, what, this.target);
      out(script.parse(r.stdout), "fresh", what, this.target);
    } catch (err) {
      throw new HostError(
        `the change may cut off new SSH connections to ${this.target}, and a fresh connection could not be made ` +
          `(${err instanceof Error ? err.message : String(err)})`,
        { kind: "refusal", target: this.target, command: "confirm" },
        { cause: err },
      );
    } finally {
      await fresh.close();
    }
  }

  /** The save's outcome (in `answer`, see commit): a failed save undoes the runtime change of the
   * requests that asked for it (checked by a listing), then saves again from what is live. Returns
   * whether the ruleset is as the batch left it (no save, or the save succeeded). */
  private async save(shell: Shell, answer: Sections | undefined, listed: Listings): Promise<boolean> {
    const change = persistChange(this.reqs());
    if (!change) return true;
    const persistence = this.host!.persistence;
    const saved = answer?.persist;
    const lockout = saved?.code === 0 && change.save ? this.bootLockout(answer!, listed) : undefined;
    if (saved?.code === 0 && !lockout) return true;
    const savers = this.reqs().filter(asksSave);
    const failed = savers.length ? savers : this.reqs();
    const why =
      lockout ??
      (saved?.err ?? "no answer")
        .split("\n")
        .filter((l) => !l.startsWith("run-parts: executing"))
        .join("\n");
    const head = lockout
      ? `saving the ruleset on ${this.target} with ${persistence.mechanism} was refused: ${lockout}`
      : `saving the ruleset on ${this.target} with ${persistence.mechanism} to ${persistence.files.join(" and ")} failed: ${why}`;
    const plans = new Map(failed.map((r) => [r, this.plans.get(r) ?? {}]));
    const undo = this.families.flatMap((f) => {
      const lines = linesOf(plans, f).undo;
      return lines.length ? [restoreStep(f, this.table, lines, this.limits)] : [];
    });
    // A refused save puts the files back as they were; a failed one saves again from what is live.
    const unsave = lockout ? [unsaveScript(persistence)] : [];
    const undone = await shell.step(
      lockout ? "undoing the change after the refused save" : "undoing the change after the failed save",
      [...undo, ...unsave, saves(this.families, this.table)].join("\n"),
    );
    const left = this.notUndone(listings(undone, this.families, this.target), failed);
    if (lockout && undone.unsave?.code !== 0)
      left.push(`putting ${persistence.files.join(" and ")} back failed: ${undone.unsave?.err || "no answer"}`);
    if (savers.length && !lockout) {
      const again = { transient: [], persistent: [], save: true, present: [], absent: [] };
      await shell.step("saving the ruleset again", saveScript(persistence, again));
    }
    const tail = left.length
      ? `; undoing the change did not take: ${left.join("; ")}`
      : lockout
        ? `, so the change was undone (a listing shows it) and ${persistence.files.join(" and ")} were put back as they were. ${BOOT_SSH_ADVICE}`
        : ", so the change was undone (a listing shows it)";
    const error = new HostError(head + tail, {
      kind: "save",
      target: this.target,
      command: persistence.mechanism,
      stderr: why,
    });
    this.failWhere((r) => failed.includes(r), error);
    return false;
  }

  /** The family whose boot file a save reads back for the SSH check: the provider's own, where this
   * batch lists the filter table of it (the live side of the comparison). */
  private bootFamily(): Family | undefined {
    const o = this.sshOrigin;
    const f: Family | undefined = o && (o.clientAddress.includes(":") ? 6 : 4);
    return f && this.table === "filter" && this.families.includes(f) ? f : undefined;
  }

  /**
   * Would the boot file this save wrote stop accepting new SSH connections from the provider, where
   * the live ruleset (`listed`, after the batch) accepts them? Judged by the lockout guard's model on
   * the file as read back (its filter table). Says why, or nothing.
   */
  private bootLockout(answer: Sections, listed: Listings): string | undefined {
    const f = this.bootFamily();
    if (!f) return undefined;
    const file = this.host!.persistence.files[f === 4 ? 0 : 1];
    const boot = answer.boot;
    if (boot?.code !== 0) return `${file} could not be read back to check it: ${boot?.err || "no answer"}`;
    return bootLockoutOf(listed.get(f)!, boot.out, this.sshOrigin!, file);
  }

  /** The error, with what may be on the host now and what the host does about it by itself. */
  private explain(err: unknown): Error {
    const e = err instanceof Error ? err : new Error(String(err));
    if (this.phase === "listing" && !(e instanceof HostError && e.isInterrupted())) return e;
    const by = utc(Date.now() + (this.limits.command + this.limits.rollbackAfter) * 1000);
    const reverts = `the host reverts it by itself within ${this.limits.rollbackAfter}s after this connection ends (by ${by} at the latest)`;
    const what: Record<Phase, string> = {
      listing: "nothing had been sent to change the host yet",
      applying: `the change may be on the host, not confirmed: ${reverts}`,
      committing: `the change is on the host and may or may not be confirmed: if not, ${reverts}; if it stays, the next pulumi up takes it over`,
      committed:
        "the change is on the host (confirmed), but the rules files may not hold it yet: the next pulumi up saves them",
    };
    const fields = e instanceof HostError ? e : { kind: "command" as const, target: this.target };
    return new HostError(`${e.message}: ${what[this.phase]}`, fields, { cause: e });
  }
}
