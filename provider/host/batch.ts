// One batch of changes in a transaction: what it is about (host, table, families, time limits), its
// operations still in flight and the outcome of each one that has one, their plans, and how far it
// got on the host (what a failure may have left there). The steps of a transaction (locked.ts,
// apply.ts, undo.ts, confirm-save.ts) read and settle it.
import { randomBytes } from "node:crypto";
import type { Ruleset } from "../rules";
import { Session } from "../ssh";
import { confirmListing, digestOf, generationOf, withListedChains } from "./confirm-listing";
import { outputOf, rulesetOf, rulesetsOf, rulesetsScript } from "./facts";
import type { Facts } from "./facts";
import { familiesOf, linesOf } from "./plan";
import type { Plan } from "./plan";
import { iptables, limitsFor } from "./protocol";
import type { Family, Limits, Sections } from "./protocol";
import { restoreStep } from "./restore";
import type { ChangeRequest, ChangeResult } from "./types";

export type Outcome = { result: ChangeResult } | { error: Error };

export interface Op {
  req: ChangeRequest;
  rollbackAfter: number;
  done: (o: Outcome) => void;
}

/** Parsed listings, per family. */
export type Rulesets = ReadonlyMap<Family, Ruleset>;

/** How far a transaction got: what a failure may have left on the host. */
export type Phase = "listing" | "applying" | "committing" | "committed";

/** Opens a new SSH connection (not the pooled one) for a confirmation that must prove new ones work. */
export type FreshSession = (args: Session["args"], log: Session["log"]) => Session;
export const freshSession: FreshSession = (args, log) => new Session(args, log);

export class Batch {
  /** The transaction's id on the host (its rollback's directory). */
  readonly id = randomBytes(6).toString("hex");
  readonly target: string;
  readonly limits: Limits;
  readonly families: Family[];
  readonly outcomes = new Map<Op, Outcome>();
  phase: Phase = "listing";
  /** A rollback of this batch is armed on the host (and not yet confirmed or cancelled). */
  armed = false;
  private inFlight: Op[];
  private planned: { plans: Map<ChangeRequest, Plan>; expected: Rulesets } = { plans: new Map(), expected: new Map() };

  constructor(
    readonly session: Session,
    readonly facts: Facts,
    readonly table: string,
    ops: Op[],
    readonly fresh: FreshSession,
  ) {
    this.target = session.target;
    this.inFlight = ops;
    this.families = familiesOf(ops.map((op) => op.req));
    const rollbackAfter = Math.max(...ops.map((op) => op.rollbackAfter));
    this.limits = limitsFor(session.args.perDialTimeout, rollbackAfter);
  }

  /** The operations that have no outcome yet. */
  get live(): readonly Op[] {
    return this.inFlight;
  }

  reqs(): ChangeRequest[] {
    return this.inFlight.map((op) => op.req);
  }

  /** The rulesets per family the plans lead to. */
  get expected(): Rulesets {
    return this.planned.expected;
  }

  planOf(req: ChangeRequest): Plan {
    return this.planned.plans.get(req) ?? {};
  }

  /** The plans of these requests (by default the live ones). */
  plansOf(reqs = this.reqs()): Map<ChangeRequest, Plan> {
    return new Map(reqs.map((r) => [r, this.planOf(r)]));
  }

  /** Takes the batch's plans (planning), and the rulesets they lead to. */
  plan(plans: Map<ChangeRequest, Plan>, expected: Rulesets): void {
    this.planned = { plans, expected };
  }

  /** Takes plans a review revised (where the rules are, or were moved to). */
  revise(plans: ReadonlyMap<ChangeRequest, Plan>): void {
    this.planned = { plans: new Map([...this.planned.plans, ...plans]), expected: this.planned.expected };
  }

  succeed(op: Op, result: ChangeResult): void {
    this.outcomes.set(op, { result });
  }

  fail(op: Op, error: Error): void {
    this.outcomes.set(op, { error });
    this.inFlight = this.inFlight.filter((o) => o !== op);
  }

  failWhere(pred: (req: ChangeRequest) => boolean, error: Error): void {
    for (const op of this.inFlight.filter((o) => pred(o.req))) this.fail(op, error);
  }

  /** The section that restores `lines` in this batch's table. */
  restore(f: Family, lines: string[]): string {
    return restoreStep(f, this.table, lines, this.limits);
  }

  /** The restores that undo these plans, one per family that has undo lines (of `families`). */
  undoSteps(plans: ReadonlyMap<ChangeRequest, Plan>, families: readonly Family[] = this.families): string[] {
    return families.flatMap((f) => {
      const lines = linesOf(plans, f).undo;
      return lines.length ? [this.restore(f, lines)] : [];
    });
  }

  /** The script that lists this batch's rulesets. */
  listRulesets(): string {
    return rulesetsScript(this.families, this.table);
  }

  /** The chains the batch's requests edit. */
  chains(): string[] {
    return [...new Set(this.reqs().map((r) => r.chain))];
  }

  /** The listing that confirms the batch after `restores` restores: `chains`, and the generation (on
   * nf_tables) or a digest of the rest of the copies `before` (the whole table where the rest changed),
   * see confirm-listing.ts. */
  confirmListing(before: Rulesets, chains: readonly string[], restores: number): string {
    const nft = this.facts.iptables?.backend === "nf_tables";
    return this.families
      .map((f) => {
        const b = before.get(f);
        const gen = b && generationOf(b);
        const expect = nft && gen !== undefined ? gen + restores : undefined;
        // Where the generation is expected, the digest (an md5 of the rest of the copy's whole listing: 37 ms
        // of the provider's CPU on a 20,000-rule host) is only for another writer: then the whole table is listed.
        const digest = b && expect === undefined ? digestOf(b, chains) : undefined;
        return confirmListing(f, this.table, chains, digest, nft ? { expect } : undefined);
      })
      .join("\n");
  }

  /** The rulesets an answer of confirmListing shows (`before` with the chains as listed, or the whole table). */
  confirmedIn(answer: Sections, before: Rulesets, chains: readonly string[]): Rulesets {
    return new Map(
      this.families.map((f) => {
        const b = before.get(f);
        const listed = b && withListedChains(b, answer, f, this.table, chains);
        if (listed) return [f, listed] as const;
        // The whole table where the host listed it; otherwise what failed says why.
        if (!answer[`save${f}`]) {
          outputOf(answer, `digest${f}`, `${iptables(f)}-save`, this.target);
          outputOf(answer, `chains${f}`, `${iptables(f)} -S`, this.target);
        }
        return [f, rulesetOf(answer, f, this.target)] as const;
      }),
    );
  }

  /** The rulesets an answer of listRulesets holds. */
  rulesetsIn(answer: Sections): Rulesets {
    return rulesetsOf(answer, this.families, this.target);
  }
}
