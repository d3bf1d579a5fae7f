// Explicit positions across the batches of one run: `position: N` is line N of the chain as the run's
// rules with lower explicit positions leave it, whatever order the engine creates them in. host/order.ts
// orders the rules of one batch; a create whose rule has an explicit position first waits (bounded) for
// the creates of this run's rules above it on the same host and chain, registered when they were checked
// (new rules) or diffed (replacements): this process serves every PortRule of the run.
import { setTimeout as sleep } from "node:timers/promises";
import { isUnknown } from "./rules";
import type { RuleInputs } from "./rules";

/** How long a create waits for the creates of rules above it: they may never come (a dependsOn in the
 * other direction, a failed dependency, `--target`), and then it goes in without them. */
export const WAIT_FOR_ABOVE_MS = 30_000;

interface Expected {
  where: string;
  rank: number;
  name: string;
  position: RuleInputs["position"];
  done: Promise<void>;
  settle: () => void;
}

/** Process-wide: the run's rules with an explicit position whose create is expected, by identity; and
 * those created already. */
const expected = new Map<string, Expected>();
const created = new Map<string, Expected>();

/** The rule's identity, the same in check and in create (where the engine hands the keys back sorted). */
const idOf = (r: RuleInputs) => {
  const i = r.identity;
  return i?.urn ?? `${i?.project}/${i?.stack}/${i?.name}`;
};
const whereOf = (r: RuleInputs) => `${r.connection.host}:${r.connection.port} ${r.table} ${r.chain}`;
/** "top" is line 1; undefined for "auto" and "bottom" (placed by what the chain holds). */
const rankOf = (p: RuleInputs["position"]) => (p === "top" ? 1 : typeof p === "number" ? p : undefined);

/** Registers a rule of this run whose create will come (a new rule, or a replacement), if it has an
 * explicit position. */
export function expectCreate(inputs: RuleInputs): void {
  const rank = rankOf(inputs.position);
  if (rank === undefined || !inputs.identity || isUnknown(inputs)) return;
  let settle = () => {};
  const done = new Promise<void>((r) => {
    settle = r;
  });
  const name = String(inputs.identity.name);
  expected.get(idOf(inputs))?.settle();
  expected.set(idOf(inputs), { where: whereOf(inputs), rank, name, position: inputs.position, done, settle });
}

/** The rule's create finished (`made`: it went in) or failed: rules below it wait no longer. */
export function createSettled(inputs: RuleInputs, made = false): void {
  const e = expected.get(idOf(inputs));
  expected.delete(idOf(inputs));
  if (e && made) created.set(idOf(inputs), e);
  e?.settle();
}

/**
 * What to say when this rule went in above rules of this run created before it with a lower explicit
 * position (rules registered later than they were created: a dependsOn of this rule held it back), each
 * now one line lower than its position said; nothing otherwise.
 */
export function movedDown(inputs: RuleInputs): string | undefined {
  const rank = rankOf(inputs.position);
  if (rank === undefined || !inputs.identity) return undefined;
  const [where, name] = [whereOf(inputs), String(inputs.identity.name)];
  const below = [...created.entries()]
    .filter(
      ([id, e]) => id !== idOf(inputs) && e.where === where && (e.rank > rank || (e.rank === rank && e.name > name)),
    )
    .map(([, e]) => e);
  if (!below.length) return undefined;
  return (
    `went in above this run's ${named(below)}, created before this rule was registered (a dependsOn held it ` +
    `back): each of them is one line lower than its position says now; give them dependsOn on this rule to ` +
    `keep every position`
  );
}

/** The run's expected rules that go above this one on its chain: lower explicit positions, and equal
 * ones with a lower name (host/order.ts: within a batch, equal lines by tag). */
const above = (inputs: RuleInputs): Expected[] => {
  const rank = rankOf(inputs.position);
  if (rank === undefined || !inputs.identity) return [];
  const [where, name] = [whereOf(inputs), String(inputs.identity.name)];
  return [...expected.entries()]
    .filter(([id, e]) => id !== idOf(inputs) && e.where === where)
    .map(([, e]) => e)
    .filter((e) => e.rank < rank || (e.rank === rank && e.name < name));
};

const named = (es: Expected[]) => es.map((e) => `"${e.name}" (position ${e.position})`).join(", ");

/**
 * Waits until the creates of the run's rules above this one are done, at most `ms`. Returns what the
 * placement should add: which rules it waited for, or which it stopped waiting for (those then go in
 * later, above it, and move it down); nothing when none was expected.
 */
export async function awaitAbove(inputs: RuleInputs, ms = WAIT_FOR_ABOVE_MS): Promise<string | undefined> {
  const first = above(inputs);
  if (!first.length) return undefined;
  const timer = new AbortController();
  const late = sleep(ms, "late" as const, { signal: timer.signal }).catch(() => "late" as const);
  const all = Promise.all(first.map((e) => e.done)).then(() => "done" as const);
  const outcome = await Promise.race([all, late]);
  timer.abort();
  if (outcome === "done") return `placed after this run's ${named(first)} went in`;
  const missing = first.filter((e) => [...expected.values()].includes(e));
  return (
    `did not wait longer than ${ms / 1000}s for this run's ${named(missing)} to go in (a dependsOn the other way, ` +
    `or its create did not come): when it goes in later, above this rule, this rule moves down`
  );
}
