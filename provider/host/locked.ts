// Taking the host for a batch: `begin` opens a shell that takes the host's lock, reverts what earlier
// runs left unconfirmed and lists; `resume` goes on in a conversation a batch before kept (its shell
// still holds the lock). Either returns the locked host and its rulesets, which every later step of
// the transaction is given; `handOn` makes the conversation the next batch may resume.
import { BUILTIN_CHAINS, shown } from "../rules";
import { besideWant } from "./beside";
import type { Batch, Rulesets } from "./batch";
import { REAP } from "./commit";
import { HostError } from "./errors";
import { chainsListed, listingScript, rulesetOf, stepDeadline } from "./facts";
import type { InPart } from "./facts";
import { generationSection } from "./generation";
import { LOCK_FILE, LOCK_UNAVAILABLE, NOT_ROOT, lock, preamble } from "./protocol";
import type { Family, Sections } from "./protocol";
import { asksSave } from "./plan";
import { openShell } from "./shell";
import type { Shell } from "./shell";
import type { HostFacts, InsertRequest } from "./types";

/** What a listing was asked to include beside the rulesets. */
export interface ListingWant {
  listening: boolean;
  owner: boolean;
  nat: boolean;
  nft: boolean;
}

/** The host as a batch holds it: `shell` holds the host's lock. */
export interface LockedHost {
  readonly shell: Shell;
  readonly facts: HostFacts;
  /** The answer of the step that took the lock: what is beside the chain (Docker, nft) is judged from it. */
  readonly beside: Sections;
  /** What that answer includes. */
  readonly includes: ListingWant;
  /** When its shell took the lock (ms). */
  readonly lockedAt: number;
}

/** A conversation kept from one batch to the next: the locked host, and `rulesets` as the last
 * batch left them (confirmed). */
export interface Conversation extends LockedHost {
  readonly table: string;
  readonly families: readonly Family[];
  readonly rulesets: Rulesets;
}

/** The locked host, and its rulesets of the batch's families. */
export interface Taken {
  host: LockedHost;
  rulesets: Rulesets;
}

/** `then` runs only if every section before it succeeded ($c is the last section's status). */
export const ifOk = (then: string) => `if [ "$c" = 0 ]; then\n${then}\nfi`;

/** An insert's target (its spec's -j). */
const targetOf = (r: InsertRequest) => {
  const spec = r.specs[4] ?? r.specs[6] ?? [];
  return spec[spec.indexOf("-j") + 1];
};

/** What this batch's listing must include beside the rulesets. */
function listingWant(batch: Batch): ListingWant {
  const reqs = batch.reqs();
  const inserts = reqs.flatMap((r) => (r.kind === "insert" ? [r] : []));
  const beside = besideWant(
    batch.table === "filter" ? inserts.map((r) => ({ chain: r.chain, target: targetOf(r) })) : [],
  );
  return {
    listening: inserts.length > 0,
    owner: reqs.some((r) => r.persist && r.kind !== "delete"),
    nat: !!beside.nat,
    nft: !!beside.nft,
  };
}

/** Can this batch go on in the kept conversation (its shell alive, same table, its listing has all
 * it needs, and the lock has not been held for half of what others wait for it: they get their turn)? */
export function fits(kept: Conversation, batch: Batch): boolean {
  const want = listingWant(batch);
  return (
    !kept.shell.ended &&
    kept.table === batch.table &&
    Date.now() - kept.lockedAt < (batch.limits.lockWait * 1000) / 2 &&
    batch.families.every((f) => kept.families.includes(f)) &&
    (Object.keys(want) as (keyof ListingWant)[]).every((k) => !want[k] || kept.includes[k])
  );
}

/** Goes on where the last batch left: its lock, facts and listing (and what that listing holds). */
export function resume(kept: Conversation, batch: Batch): Taken {
  return { host: kept, rulesets: new Map(batch.families.map((f) => [f, kept.rulesets.get(f)!])) };
}

/** The conversation to hand on; families this batch did not list keep the kept listing. */
export function handOn(host: LockedHost, batch: Batch, rulesets: Rulesets, kept?: Conversation): Conversation {
  const all = new Map([...(kept?.rulesets ?? []), ...rulesets]);
  const { shell, facts, beside, includes, lockedAt } = host;
  return { shell, facts, beside, includes, lockedAt, table: batch.table, families: [...all.keys()], rulesets: all };
}

/** A new shell on the host, within the step's deadline (one that opens too late is closed). */
export async function newShell(batch: Batch): Promise<Shell> {
  const opening = openShell(batch.session, batch.limits.step);
  return stepDeadline(opening, batch.limits.step, "opening a shell", batch.target).catch((e) => {
    opening.then((s) => s.close()).catch(() => undefined);
    throw e;
  });
}

/** Lock, revert what earlier runs left unconfirmed, list. */
export async function begin(batch: Batch, shell: Shell): Promise<Taken> {
  const { target, limits, families } = batch;
  const want = listingWant(batch);
  // Nothing but taking the lock runs before the lock is held.
  const script = [
    preamble(limits) + lock(limits),
    ifOk(
      `${REAP}\n${listingScript(batch.facts.known, families, batch.table, { ...want, generation: true, part: inPart(batch) })}`,
    ),
  ];
  const answer = await shell.step("taking the lock and listing the rules", script.join("\n"));
  lockTaken(batch, answer);
  // Each line "<id> reverted" or "<id> NOT reverted: <why>" (see REAP).
  const reaped = (answer.reap?.out ?? "").split("\n").filter(Boolean);
  const reverted = reaped.filter((l) => l.endsWith(" reverted")).map((l) => l.split(" ")[0]);
  const log = batch.session.log;
  if (reverted.length) log.warn?.(`${target}: reverted unconfirmed changes of an earlier run (${reverted.join(", ")})`);
  for (const l of reaped.filter((l) => !l.endsWith(" reverted")))
    log.warn?.(`${target}: unconfirmed changes of an earlier run: ${shown(l)}`);
  const host = { shell, facts: batch.facts.of(answer, families), beside: answer, includes: want, lockedAt: Date.now() };
  const listed = (f: Family) =>
    answer[`save${f}`] ? rulesetOf(answer, f, target) : chainsListed(answer, f, batch.table, target);
  return { host, rulesets: new Map(families.map((f) => [f, listed(f)])) };
}

/** All a batch's listing needs of the table (see tablesScript): a batch of deletes, the chains it edits;
 * one that edits built-in chains of filter alone, what they reach (placement walks no further); neither
 * where it saves the boot files (a save judges the file it wrote against the whole live table). */
function inPart(batch: Batch): InPart | undefined {
  const reqs = batch.reqs();
  if (reqs.some(asksSave)) return undefined;
  const chains = batch.chains();
  if (reqs.every((r) => r.kind === "delete")) return { chains, reach: false };
  const builtins = BUILTIN_CHAINS.filter;
  return batch.table === "filter" && chains.every((c) => builtins.includes(c)) ? { chains, reach: true } : undefined;
}

/** The whole tables, in the shell that holds the lock, where a copy listed in part cannot answer the
 * plan (PartialListingError: a delete whose rule may decide the provider's SSH packets, which the
 * removal guard judges through the whole chain; a chain the listing did not include). */
export async function listedWhole(batch: Batch, host: LockedHost): Promise<Rulesets> {
  const answer = await host.shell.step("listing the rules", `${generationSection("gen")}\n${batch.listRulesets()}`);
  return batch.rulesetsIn(answer);
}

/** The lock step's answer when the shell is not root (connection.sudo not set), said first. */
function notRoot(target: string, err: string): string | undefined {
  const who = err.split("\n").find((l) => l.startsWith(NOT_ROOT));
  if (!who) return undefined;
  return (
    `${who} on ${target}, and connection.sudo is not set: iptables and the lock file ${LOCK_FILE} need root. ` +
    `Log in as root, or set connection.sudo: true (the user needs passwordless sudo for sh)`
  );
}

/** Says why the lock could not be had, if it could not. */
function lockTaken(batch: Batch, answer: Sections): void {
  const { target } = batch;
  const lockSection = answer.lock;
  if (lockSection?.code === LOCK_UNAVAILABLE)
    throw new HostError(
      notRoot(target, lockSection.err) ?? `could not take the lock on ${target}: ${lockSection.err}`,
      {
        kind: "command",
        target,
        command: "lock",
        status: lockSection.code,
        stderr: lockSection.err,
      },
    );
  if (lockSection?.code !== 0) {
    throw new HostError(
      `could not take the host's lock on ${target} within ${batch.limits.lockWait}s: another pulumi-iptables run ` +
        `(another stack or operator) holds it; try again when it is done${lockSection?.err ? ` (${lockSection.err})` : ""}`,
      {
        kind: "lock-busy",
        target,
        command: "lock",
        status: lockSection?.code,
        stderr: lockSection?.err,
      },
    );
  }
}
