// One agent per host connection per provider process. Every change of the host goes through its
// queue, and the changes that arrive together share one remote transaction (transaction.ts). Reads
// that arrive together share one listing.
import { setTimeout as delay } from "node:timers/promises";
import { findRule, parseRuleset } from "../rules";
import { besideWant } from "./beside";
import type { BesideWant } from "./beside";
import type { CheckedConnection } from "../rules";
import { getSession } from "../ssh";
import type { Logger, Session } from "../ssh";
import { HostError } from "./errors";
import { FAMILIES, framed, iptables, limitsFor, preamble, section } from "./protocol";
import type { Family, Sections } from "./protocol";
import { contextOf, Facts, listingScript, rulesetOf, stepDeadline } from "./facts";
import { listedRule } from "./listed";
import { impostorWarnings } from "./plan";
import { freshSession } from "./batch";
import type { FreshSession, Op, Outcome } from "./batch";
import { Arrivals } from "./gather";
import type { Conversation } from "./locked";
import { runTransaction } from "./transaction";
import type { TransactionResult } from "./transaction";
import type { ChangeRequest, ChangeResult, ReadResult } from "./types";

/** Milliseconds the reads the engine starts together get to join one listing. */
const BATCH_MS = 2;

/** Milliseconds after the last read of a listing that another read may still take it. */
export const IDLE_MS = 20;

/** Seconds after which the host undoes an unconfirmed change, unless a request says otherwise. */
export const DEFAULT_ROLLBACK_AFTER = 30;

// Process-wide: the operations the engine starts on one host (separate calls) share one queue and lock.
const agents = new Map<string, HostAgent>();

/** The agent of a host connection (one per pooled connection per process). */
export function hostAgent(conn: CheckedConnection, log: Logger): HostAgent {
  const session = getSession(conn, log);
  let a = agents.get(session.key);
  if (a?.session !== session) {
    a = new HostAgent(session);
    agents.set(session.key, a);
  }
  return a;
}

export class HostAgent {
  private queue: Op[] = [];
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  /** Changes asked for and not answered yet (queued or in a batch). */
  private pending = 0;
  private pendingRead?: SharedRead;
  /** The last listing of reads (see list), and how many changes were queued in all. */
  private lastRead?: SharedRead;
  private changes = 0;
  readonly facts: Facts;

  constructor(
    readonly session: Session,
    private readonly fresh: FreshSession = freshSession,
    private readonly arrivals = new Arrivals(),
  ) {
    this.facts = new Facts(session);
  }

  /** Applies a change (insert, delete, or a persist flag's save) in the next transaction. */
  change(req: ChangeRequest & { rollbackAfter?: number }): Promise<ChangeResult> {
    this.changes++;
    this.pending++;
    return new Promise((resolve, reject) => {
      const done = (o: Outcome) => {
        this.pending--;
        return "error" in o ? reject(o.error) : resolve(o.result);
      };
      this.enqueue({ req, rollbackAfter: req.rollbackAfter ?? DEFAULT_ROLLBACK_AFTER, done });
    });
  }

  /** Live state of the rule, per family, found by its exact text (`rules`, as rendered and recorded);
   * undefined where it is gone. `target`, the rule's -j, says what of the host beside the chain the
   * judgement needs. Rules that carry its tag but are not it are named in a warning, never read. */
  async read(
    table: string,
    chain: string,
    tag: string,
    rules: Partial<Record<Family, string>>,
    target: string,
  ): Promise<ReadResult> {
    const families = FAMILIES.filter((f) => rules[f] !== undefined);
    const beside = table === "filter" ? besideWant([{ chain, target }]) : {};
    const listing = this.list(table, families, beside);
    listing.readers++;
    try {
      return this.found(await listing.result!, table, chain, tag, rules, families);
    } finally {
      listing.readers--;
      listing.done = Date.now();
    }
  }

  /** What a listing shows of the rule (see read). */
  private found(
    sections: Sections,
    table: string,
    chain: string,
    tag: string,
    rules: Partial<Record<Family, string>>,
    families: Family[],
  ): ReadResult {
    const result: ReadResult = { facts: this.facts.of(sections, families), families: {}, carried: [] };
    for (const f of families) {
      const rs = rulesetOf(sections, f, this.session.target);
      const warnings = impostorWarnings(rs, table, tag, rules[f]!, this.session.target);
      for (const w of warnings) this.session.log.warn?.(w);
      if (warnings.length) result.carried.push(f);
      const found = findRule(rs, table, chain, rules[f]!);
      if (found)
        result.families[f] = listedRule(sections, f, rs, table, found, contextOf(result.facts, f), {
          backend: result.facts.backend,
          name: this.session.target,
        });
    }
    return result;
  }

  /**
   * Refuses to call a rule gone that is in the tables of the other iptables backend: the host was
   * switched between legacy and nf_tables after the rule was made (the kernel still applies both),
   * and dropping it from state would let the next up add a second copy. Reads the other backend's
   * tables with its own -save tools, where the host has them (nothing is loaded or created).
   */
  async refuseIfSwitched(
    table: string,
    chain: string,
    tag: string,
    rules: Partial<Record<Family, string>>,
    families: Family[],
  ): Promise<void> {
    const now = this.facts.iptables;
    if (!now || !families.length) return;
    const other = now.backend === "nf_tables" ? "legacy" : "nf_tables";
    const short = (b: string) => (b === "legacy" ? "legacy" : "nft");
    const tool = (f: Family) => `${iptables(f)}-${short(other)}-save`;
    const limits = limitsFor(this.session.args.perDialTimeout, DEFAULT_ROLLBACK_AFTER);
    const script = framed(
      preamble(limits) +
        families
          .map((f) =>
            section(`other${f}`, { script: `if command -v ${tool(f)} >/dev/null 2>&1; then ${tool(f)} -c; fi` }),
          )
          .join("\n"),
    );
    const what = "reading the other iptables backend's tables";
    const r = await stepDeadline(this.session.run(script.script), limits.step, what, this.session.target);
    const sections = script.parse(r.stdout);
    const there = families.filter((f) => {
      const s = sections[`other${f}`];
      return s?.code === 0 && !!rules[f] && !!findRule(parseRuleset(s.out), table, chain, rules[f]);
    });
    if (!there.length) return;
    throw new HostError(
      `the rule tagged ${tag} is not in the ${now.backend} tables that iptables on ${this.session.target} uses now ` +
        `(iptables ${now.version}), but in its ${other} tables (${there.map(iptables).join(", ")}): the host's iptables ` +
        `was switched from ${other} to ${now.backend} after the rule was made, and the kernel still applies both. No rule was added or removed. ` +
        `Switch back (Debian, Ubuntu: update-alternatives --set iptables /usr/sbin/iptables-${short(other)}, and the same for ip6tables), ` +
        `or move the ${other} rules over (iptables-${short(other)}-save | iptables-${short(now.backend)}-restore, and the same for ip6tables) ` +
        `and clear the ${other} tables; then run pulumi refresh again`,
      { kind: "backend-switched", target: this.session.target, command: tool(there[0]) },
    );
  }

  /** One listing for every read of the same table that arrives while it is being gathered, with
   * what each of them needs beside the chain; reads that arrive while it is on its way, while reads
   * of it are being judged or within IDLE_MS after the last of them share it too, where it holds all
   * they need and no change went through this agent since it was started. */
  private list(table: string, families: Family[], beside: BesideWant): SharedRead {
    const last = this.lastRead;
    if (last && last.changes === this.changes && sharesListing(last, table, families, beside)) return last;
    let p = this.pendingRead;
    if (!p || p.table !== table) {
      const limits = limitsFor(this.session.args.perDialTimeout, DEFAULT_ROLLBACK_AFTER);
      const listing: SharedRead = { table, families: new Set(), want: {}, changes: this.changes, readers: 0 };
      listing.result = delay(BATCH_MS).then(async () => {
        if (this.pendingRead === listing) this.pendingRead = undefined;
        listing.changes = this.changes;
        this.lastRead = listing;
        const script = framed(
          preamble(limits) +
            listingScript(
              this.facts.known,
              FAMILIES.filter((f) => listing.families.has(f)),
              table,
              listing.want,
            ),
        );
        try {
          const r = await stepDeadline(
            this.session.run(script.script),
            limits.step,
            "listing the rules",
            this.session.target,
          );
          return script.parse(r.stdout);
        } catch (e) {
          if (this.lastRead === listing) this.lastRead = undefined;
          throw e;
        }
      });
      p = this.pendingRead = listing;
    }
    for (const f of families) p.families.add(f);
    p.want.nat ||= beside.nat;
    p.want.nft ||= beside.nft;
    return p;
  }

  private enqueue(op: Op): void {
    this.queue.push(op);
    this.arrivals.arrived(this.pending);
    if (this.draining) return;
    this.draining = true;
    this.drained = this.drain();
  }

  /** Resolves once the queue is empty and the conversation kept for it is closed (the lock free). */
  settled(): Promise<void> {
    return this.drained;
  }

  /**
   * Runs the queue's batches, one table at a time, and settles every operation's outcome here, as
   * soon as its batch is done. A batch's conversation (its shell, the lock, the listing it left) is
   * kept for the next batch while changes keep arriving within the keep window (gather.ts), and closed
   * at once otherwise.
   */
  private async drain(): Promise<void> {
    // Operations queued while the last conversation closes are run after it (its lock released).
    while (this.queue.length) {
      let kept: Conversation | undefined;
      for (;;) {
        // The engine starts a wave's operations one by one: let them join one batch (gather.ts).
        if (this.queue.length || (kept && (await this.arrivals.kept())))
          await this.arrivals.gathered(() => this.queue.length);
        if (!this.queue.length) break;
        const table = this.queue[0].req.table;
        const batch = this.queue.filter((op) => op.req.table === table);
        this.queue = this.queue.filter((op) => op.req.table !== table);
        const { outcomes, conversation } = await this.runBatch(table, batch, kept);
        kept = conversation;
        for (const op of batch) op.done(outcomes.get(op) ?? { error: new Error("no outcome (a bug)") });
      }
      await kept?.shell.close();
    }
    this.draining = false;
  }

  /** Runs one batch in a transaction; where iptables refused it as a whole, each refused operation
   * again on its own. */
  private async runBatch(table: string, batch: Op[], kept?: Conversation): Promise<TransactionResult> {
    const run = (ops: Op[], conv?: Conversation): Promise<TransactionResult> =>
      runTransaction(this.session, this.facts, table, ops, this.fresh, conv).catch((error: unknown) => ({
        outcomes: new Map(ops.map((op): [Op, Outcome] => [op, { error: asError(error) }])),
      }));
    const result = await run(batch, kept);
    const refused = (o?: Outcome) => !!o && "error" in o && o.error instanceof HostError && o.error.isRestoreRefused();
    if (batch.length === 1 || !batch.some((op) => refused(result.outcomes.get(op)))) return result;
    // iptables refused the batch as a whole (a listing showed none of it applied): one operation
    // at a time, so one bad rule fails alone.
    let conversation: Conversation | undefined;
    for (const op of batch.filter((o) => refused(result.outcomes.get(o)))) {
      const one = await run([op], conversation);
      conversation = one.conversation;
      for (const [k, v] of one.outcomes) result.outcomes.set(k, v);
    }
    return { outcomes: result.outcomes, conversation };
  }
}

/** A listing of reads: what it holds, its answer, the agent's change count when it started, the
 * reads being judged from it and when the last of them was done (ms). */
interface SharedRead {
  table: string;
  families: Set<Family>;
  want: BesideWant;
  result?: Promise<Sections>;
  changes: number;
  readers: number;
  done?: number;
}

const asError = (e: unknown) => (e instanceof Error ? e : new Error(String(e)));

/** May a read of `table` in `families`, needing `beside`, take this listing? */
function sharesListing(l: SharedRead, table: string, families: Family[], beside: BesideWant): boolean {
  return (
    l.table === table &&
    families.every((f) => l.families.has(f)) &&
    (!beside.nat || !!l.want.nat) &&
    (!beside.nft || !!l.want.nft) &&
    (l.readers > 0 || l.done === undefined || Date.now() - l.done < IDLE_MS)
  );
}
