/**
 * Following the ordinary packets through a table: which chains reach which, and every way the packets
 * can go from the top of a built-in chain (both branches of a match that may go either way), with the
 * rule being judged in place. Which rule or policy decides them, along which path.
 */
import { DECIDING, NON_TERMINATING, VERDICTS } from "./flags";
import { matchShare, type Ordinary } from "./match";
import { BUILTIN_CHAINS } from "./names";
import { ALL, NONE, portRanges } from "./ordinary";
import { PartialListingError } from "./parse";
import type { Chain, Rule, Table } from "./parse";

/** One step of a packet's path: a rule (`INPUT:2`), or the end of a chain (`TCP-IN:end`, no rule). */
export interface Hop {
  chain: string;
  line: number;
  rule?: Rule;
}

/** What happens to the packets on one branch: a verdict (or RETURN out of the start chain, or another target). */
export interface Outcome {
  verdict: string;
  hops: Hop[];
  /** Decided by the rule being judged. */
  ours?: true;
  /** Decided by the chain's policy, not by a rule. */
  policy?: string;
}

/** A chain's answer for packets entering it at the top: what it decides, and the first way out, if any. */
interface ChainResult {
  decided: Outcome[];
  leave?: Hop[];
}

/** The rule being judged, as if inserted before rule `index` (0-based) of `chain`. */
export interface Judged {
  chain: string;
  index: number;
  verdict: string;
}

interface Walk {
  table: Table;
  o: Ordinary;
  at: Judged;
  memo: Map<string, ChainResult>;
  /** The packets without their ports (JSON): with each chain's port class, the key of its shared results. */
  packet: string;
  active: Set<string>;
}

/** A table's walk caches: results of chains that cannot reach the judged rule (per port class), reach sets. */
interface Caches {
  /** Per chain, per packet class (portClass): what the chain decides for packets entering it at the top. */
  shared: Map<string, Map<string, ChainResult>>;
  /** Per chain: the chains it can reach by jumps and gotos (itself included). */
  reach: Map<string, Set<string>>;
  /** Per chain: where the port ranges of the rules of the chains it reaches begin and end (one past), sorted. */
  cuts: Map<string, number[]>;
}

/**
 * What a chain that cannot reach the judged rule's chain does to some ordinary packets does not
 * depend on where the rule is judged: such results are kept per table (a Table is read-only: an edit
 * makes a new one) and per packet, so placing a rule walks a Kubernetes node's
 * thousands of KUBE-* rules once, not once per line tried, and judging a batch's rules shares them.
 * Ports that no port range of the chains a chain reaches tells apart share its results (portClass).
 * An edited copy starts from the caches of the table it was made from (editedFrom), keeping every
 * entry of a chain whose reach holds no chain the edit changed: the same chain objects, the same answers.
 */
const caches = new WeakMap<Table, Caches>();
const parents = new WeakMap<Table, Table>();

/** Records that `table` is `from` with some chains replaced (none added or removed), and returns it. */
export function editedFrom(table: Table, from: Table): Table {
  if (table !== from) parents.set(table, from);
  return table;
}

function cachesOf(table: Table): Caches {
  let c = caches.get(table);
  if (!c) {
    c = inherited(table);
    caches.set(table, c);
  }
  return c;
}

/** The names of the chains `table` holds as other objects than `from`; undefined when the names differ. */
function changedChains(table: Table, from: Table): string[] | undefined {
  if (table.name !== from.name || table.chains.size !== from.chains.size) return undefined;
  const changed: string[] = [];
  for (const [name, chain] of table.chains) {
    const was = from.chains.get(name);
    if (!was) return undefined;
    if (was !== chain) changed.push(name);
  }
  return changed;
}

/** The parent's cache entries of the chains whose reach no edit touched (none without a parent). */
function inherited(table: Table): Caches {
  const fresh: Caches = { shared: new Map(), reach: new Map(), cuts: new Map() };
  const parent = parents.get(table);
  parents.delete(table);
  const changed = parent && changedChains(table, parent);
  if (!parent || !changed) return fresh;
  const from = cachesOf(parent);
  const kept = (name: string) => {
    const set = from.reach.get(name);
    return set !== undefined && !changed.some((c) => set.has(c));
  };
  // A kept chain reaches the same chain objects in both tables: its entries hold for both, and are shared.
  for (const key of ["reach", "cuts", "shared"] as const)
    for (const [name, v] of from[key]) if (kept(name)) (fresh[key] as Map<string, typeof v>).set(name, v);
  return fresh;
}

/** Where the port ranges of a chain's rules begin and end (one past), per chain (a Chain is read-only:
 * an edit makes a new one). */
const chainCuts = new WeakMap<Chain, number[]>();
export function cutsOf(chain: Chain): number[] {
  let out = chainCuts.get(chain);
  if (!out) {
    out = [];
    for (const r of chain.rules)
      for (const m of [r.match.dport, r.match.dports, r.match.ports, r.match.ctorigdstport])
        for (const [a, b] of (m && portRanges(m.value)) ?? []) out.push(a, b + 1);
    chainCuts.set(chain, out);
  }
  return out;
}

/**
 * The class of the packets' ports for chain `name`: how many cuts of the chains it reaches lie at or
 * below each port. The rules match ports only through those ranges (./match, dportShare), so packets
 * that differ only in ports of one class meet the same decisions there.
 */
function portClass(w: Walk, name: string): string {
  const all = cachesOf(w.table).cuts;
  let cuts = all.get(name);
  if (!cuts) {
    reaches(w.table, name, name);
    const set = cachesOf(w.table).reach.get(name)!;
    cuts = [...set].flatMap((c) => cutsOf(w.table.chains.get(c)!)).sort((a, b) => a - b);
    all.set(name, cuts);
  }
  return `${atOrBelow(cuts, w.o.dport)},${atOrBelow(cuts, w.o.origDport)}`;
}

/** How many of the sorted `cuts` are at or below `port` ("-" for no port). */
function atOrBelow(cuts: number[], port: number | undefined): string {
  if (port === undefined) return "-";
  let [lo, hi] = [0, cuts.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cuts[mid] <= port) lo = mid + 1;
    else hi = mid;
  }
  return String(lo);
}

function sharedOf(w: Walk, name: string): Map<string, ChainResult> {
  const all = cachesOf(w.table).shared;
  return all.get(name) ?? all.set(name, new Map()).get(name)!;
}

function reaches(table: Table, from: string, to: string): boolean {
  const byChain = cachesOf(table).reach;
  let set = byChain.get(from);
  if (!set) {
    set = new Set([from]);
    const todo = [from];
    while (todo.length) {
      for (const r of table.chains.get(todo.pop()!)?.rules ?? [])
        if (r.target && table.chains.has(r.target) && !set.has(r.target)) {
          set.add(r.target);
          todo.push(r.target);
        }
    }
    byChain.set(from, set);
  }
  return set.has(to);
}

const prefixed = (hop: Hop, outs: Outcome[]) => outs.map((d) => ({ ...d, hops: [hop, ...d.hops] }));

/** What a matching rule's target does: decides, lets the packet go on, or leaves the chain. */
function target(w: Walk, rule: Rule): { decided: Outcome[]; cont: boolean; leave?: Hop[] } {
  const t = rule.target;
  if (t === undefined || NON_TERMINATING.has(t)) return { decided: [], cont: true };
  if (VERDICTS.has(t) && !rule.goto) return { decided: [{ verdict: t, hops: [] }], cont: false };
  if (t === "RETURN" && !rule.goto) return { decided: [], cont: false, leave: [] };
  if (w.table.chains.has(t)) {
    if (w.active.has(t)) return { decided: [], cont: true }; // a loop: the kernel refuses such a ruleset
    const r = walkChain(w, t);
    // -j comes back here; -g goes back to the caller's caller (or the policy) when X falls through
    return rule.goto ? { decided: r.decided, cont: false, leave: r.leave } : { decided: r.decided, cont: !!r.leave };
  }
  return { decided: [{ verdict: t, hops: [] }], cont: false }; // DECIDING, and what no list names: decide otherwise
}

function walkChain(w: Walk, name: string): ChainResult {
  const memo = w.memo.get(name);
  if (memo) return memo;
  const independent = !reaches(w.table, name, w.at.chain);
  const key = independent ? `${portClass(w, name)} ${w.packet}` : "";
  const known = independent ? sharedOf(w, name).get(key) : undefined;
  if (known) return known;
  const chain = w.table.chains.get(name)!;
  w.active.add(name);
  const decided: Outcome[] = [];
  let leave: Hop[] | undefined;
  let live = true;
  for (let i = 0; live && i <= chain.rules.length; i++) {
    if (w.at.chain === name && w.at.index === i) {
      decided.push({ verdict: w.at.verdict, hops: [{ chain: name, line: i + 1 }], ours: true });
      live = false;
      break;
    }
    const rule = chain.rules[i];
    const t = rule ? matchShare(rule, w.o) : NONE;
    if (t === NONE) continue;
    const hop = { chain: name, line: i + 1, rule };
    const r = target(w, rule);
    decided.push(...prefixed(hop, r.decided));
    if (r.leave && !leave) leave = [hop, ...r.leave];
    if (t === ALL && !r.cont) live = false;
  }
  if (live && !leave) leave = [{ chain: name, line: chain.rules.length + 1 }];
  w.active.delete(name);
  const result = { decided, leave };
  w.memo.set(name, result);
  if (independent) sharedOf(w, name).set(key, result);
  return result;
}

/** The targets that are no chain: placement knows what each does (target below). */
export const KNOWN_TARGETS: ReadonlySet<string> = new Set([...VERDICTS, "RETURN", ...NON_TERMINATING, ...DECIDING]);

/** Does every rule of the listed chains (or of `only` of them) jump or go only to listed chains or known
 * targets? Then a packet walked from any of them never leaves what was listed (see Table.closed). */
export function closedListing(table: Table, only?: readonly string[]): boolean {
  const chains = only ? only.map((c) => table.chains.get(c)) : [...table.chains.values()];
  return chains.every((chain) =>
    (chain?.rules ?? []).every((r) => !r.target || table.chains.has(r.target) || KNOWN_TARGETS.has(r.target)),
  );
}

/** Can packets be judged from `start` on this table: a whole listing, or one closed from it. */
const judgeable = (table: Table, start: string) => !table.partial || (!!table.closed && table.chains.has(start));

/** Every way the ordinary packets can go from the top of `start`, with the judged rule in place. */
export function outcomes(table: Table, start: string, o: Ordinary, at: Judged): Outcome[] {
  if (!judgeable(table, start)) throw new PartialListingError(table.name);
  const packet = JSON.stringify({ ...o, dport: undefined, origDport: undefined });
  const w: Walk = { table, o, at, memo: new Map(), packet, active: new Set() };
  const r = walkChain(w, start);
  const policy = table.chains.get(start)!.policy;
  if (!r.leave) return r.decided;
  return [...r.decided, policy ? { verdict: policy, hops: r.leave, policy } : { verdict: "RETURN", hops: r.leave }];
}

/** The built-in chains of the table from which packets can reach `chain` (itself, if it is one). */
export function entryChains(table: Table, chain: string): string[] {
  const builtins = (BUILTIN_CHAINS[table.name] ?? []).filter((b) => table.chains.has(b));
  // A listing in part shows what a built-in chain reaches, not which built-in chains reach another.
  if (builtins.includes(chain) && judgeable(table, chain)) return [chain];
  if (table.partial) throw new PartialListingError(table.name);
  return builtins.filter((b) => reaches(table, b, chain));
}
