import ipaddr from "ipaddr.js";
import { NON_TERMINATING, VERDICTS, type MatchKey, type Neg } from "./flags";
import { chainOf, parseSpec, type Chain, type Rule, type RuleSpec, type Ruleset, type Table } from "./parse";
import { tagOf } from "./render";
import type { Position } from "./types";

/** A placement request that cannot be honoured (missing chain, line out of range). */
export class PlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlacementError";
  }
}

// ---------------------------------------------------------------- match algebra

/** How to compare two values of one match dimension. Unreadable values compare as "don't know". */
interface Dim {
  /** Every value `inner` matches, `outer` matches too. */
  contains(outer: string, inner: string): boolean;
  /** No value matches both. */
  disjoint(a: string, b: string): boolean;
}

function cidr(v: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined {
  try {
    return ipaddr.parseCIDR(v.includes("/") ? v : `${v}/${v.includes(":") ? 128 : 32}`);
  } catch {
    return undefined;
  }
}

const address: Dim = {
  contains(outer, inner) {
    const [o, i] = [cidr(outer), cidr(inner)];
    return !!o && !!i && o[0].kind() === i[0].kind() && i[1] >= o[1] && i[0].match(o);
  },
  disjoint(a, b) {
    const [x, y] = [cidr(a), cidr(b)];
    if (!x || !y) return false;
    return x[0].kind() !== y[0].kind() || (!x[0].match(y) && !y[0].match(x));
  },
};

/** `eth0` is one interface, `eth+` every interface whose name starts with `eth`. */
const iface: Dim = {
  contains(outer, inner) {
    if (!outer.endsWith("+")) return outer === inner;
    return inner.startsWith(outer.slice(0, -1));
  },
  disjoint(a, b) {
    const [pa, pb] = [a.replace(/\+$/, ""), b.replace(/\+$/, "")];
    const [wa, wb] = [a.endsWith("+"), b.endsWith("+")];
    if (!wa && !wb) return a !== b;
    if (wa && wb) return !pa.startsWith(pb) && !pb.startsWith(pa);
    return wa ? !b.startsWith(pa) : !a.startsWith(pb);
  },
};

const PROTOCOL_NAMES: Record<string, string> = {
  "6": "tcp",
  "17": "udp",
  "1": "icmp",
  "58": "ipv6-icmp",
  icmpv6: "ipv6-icmp",
  "0": "all",
};
const proto = (p: string) => PROTOCOL_NAMES[p] ?? p;
const protocol: Dim = {
  contains: (outer, inner) => proto(outer) === "all" || proto(outer) === proto(inner),
  disjoint: (a, b) => proto(a) !== proto(b) && proto(a) !== "all" && proto(b) !== "all",
};

/** "53,80,8000:8100" → [[53,53],[80,80],[8000,8100]]; undefined for names or garbage. */
function portRanges(v: string): [number, number][] | undefined {
  const out: [number, number][] = [];
  for (const part of v.split(",")) {
    const m = /^(\d*)(?::(\d*))?$/.exec(part);
    if (!m || (m[1] === "" && m[2] === undefined)) return undefined;
    const lo = m[1] === "" ? 0 : Number(m[1]);
    const hi = m[2] === undefined ? lo : m[2] === "" ? 65535 : Number(m[2]);
    out.push(lo <= hi ? [lo, hi] : [hi, lo]);
  }
  return out;
}
const ports: Dim = {
  contains(outer, inner) {
    const [o, i] = [portRanges(outer), portRanges(inner)];
    if (!o || !i) return false;
    // every port of inner lies in outer: walk each inner range through outer's ranges
    return i.every(([lo, hi]) => {
      let next = lo;
      for (const [a, b] of [...o].sort((x, y) => x[0] - y[0])) if (a <= next && b >= next) next = b + 1;
      return next > hi;
    });
  },
  disjoint(a, b) {
    const [x, y] = [portRanges(a), portRanges(b)];
    return !!x && !!y && x.every(([l1, h1]) => y.every(([l2, h2]) => h1 < l2 || h2 < l1));
  },
};

const states: Dim = {
  contains: (outer, inner) => inner.split(",").every((s) => outer.split(",").includes(s)),
  disjoint: (a, b) => !a.split(",").some((s) => b.split(",").includes(s)),
};

const exact: Dim = { contains: (a, b) => a === b, disjoint: () => false };

/** Which fields of a rule constrain which dimension. The first present field of `of` is the packet side. */
const DIMS: { dim: Dim; fields: MatchKey[] }[] = [
  { dim: address, fields: ["source"] },
  { dim: address, fields: ["destination"] },
  { dim: iface, fields: ["inInterface"] },
  { dim: iface, fields: ["outInterface"] },
  { dim: protocol, fields: ["protocol"] },
  { dim: exact, fields: ["fragment"] },
  { dim: ports, fields: ["sport", "sports"] },
  { dim: ports, fields: ["dport", "dports"] },
  { dim: exact, fields: ["icmpType"] },
  { dim: exact, fields: ["icmpv6Type"] },
  { dim: states, fields: ["ctstate", "state"] },
];

function coversOne(dim: Dim, s: Neg, r: Neg | undefined): boolean {
  if (!r) return false;
  if (!s.negated && !r.negated) return dim.contains(s.value, r.value);
  if (s.negated && !r.negated) return dim.disjoint(s.value, r.value);
  if (s.negated && r.negated) return dim.contains(r.value, s.value);
  return false;
}

function overlapsOne(dim: Dim, s: Neg, r: Neg | undefined): boolean {
  if (!r || (s.negated && r.negated)) return true;
  if (!s.negated && !r.negated) return !dim.disjoint(s.value, r.value);
  return s.negated ? !dim.contains(s.value, r.value) : !dim.contains(r.value, s.value);
}

/** Applies `one` to every field of `s` in each dimension against `r`'s value there. */
function everyDim(s: RuleSpec, r: RuleSpec, one: (dim: Dim, sv: Neg, rv: Neg | undefined) => boolean): boolean {
  const packetSide = (fields: MatchKey[]) => fields.map((f) => r.match[f]).find((v) => v !== undefined);
  const multi = s.match.ports; // --ports: the source or the destination port
  if (
    multi &&
    !one(ports, multi, packetSide(["dport", "dports"])) &&
    !one(ports, multi, packetSide(["sport", "sports"]))
  )
    return false;
  return DIMS.every(({ dim, fields }) =>
    fields.every((f) => s.match[f] === undefined || one(dim, s.match[f]!, packetSide(fields))),
  );
}

/** S matches every packet R matches (as far as the model can tell; anything opaque in S says no). */
export function covers(s: RuleSpec, r: RuleSpec): boolean {
  return s.opaque.length === 0 && everyDim(s, r, coversOne);
}

/** S may match some packet R matches (opaque matches count as "may"). */
export function mayOverlap(s: RuleSpec, r: RuleSpec): boolean {
  return everyDim(s, r, overlapsOne);
}

// ---------------------------------------------------------------- shadowing

type Verdict = "accept" | "block";

const verdictOf = (spec: RuleSpec): Verdict | undefined =>
  spec.target && !spec.goto ? VERDICTS[spec.target] : undefined;
const decides = (v: Verdict) => (v === "accept" ? "accepts" : "blocks");

interface Decision {
  against: boolean;
  by?: Rule;
}

/**
 * Follows our packets through a user chain: a decision when the chain decides all of them,
 * undefined when they all come back (RETURN or end of chain). Anything partial stops the walk
 * without a verdict (conservative: no shadowing claimed).
 */
function follow(
  table: Table,
  name: string,
  ours: RuleSpec,
  v: Verdict,
  seen: ReadonlySet<string>,
): Decision | undefined {
  const chain = table.chains.get(name);
  if (!chain || seen.has(name)) return { against: false };
  const inside = new Set(seen).add(name);
  for (const rule of chain.rules) {
    if (!mayOverlap(rule, ours)) continue;
    const all = covers(rule, ours);
    const rv = verdictOf(rule);
    if (rule.target === "RETURN" && !rule.goto) return all ? undefined : { against: false };
    if (rv) {
      if (all) return { against: rv !== v, by: rule };
    } else if (rule.target !== undefined && table.chains.has(rule.target)) {
      if (!all) return { against: false };
      const d = follow(table, rule.target, ours, v, inside);
      if (d || rule.goto) return d ?? { against: false };
    } else if (rule.target !== undefined && !NON_TERMINATING.has(rule.target) && all) {
      return { against: false }; // a target we cannot judge takes all our packets
    }
  }
  return undefined;
}

interface Shadow {
  rule: Rule;
  why: string;
}

function firstShadow(table: Table, chain: Chain, above: readonly Rule[], ours: RuleSpec): Shadow | undefined {
  const v = verdictOf(ours);
  if (!v) return undefined;
  for (const s of above) {
    if (!covers(s, ours)) continue;
    const sv = verdictOf(s);
    if (sv && sv !== v) return { rule: s, why: `it ${decides(sv)} every packet this rule matches` };
    if (s.target === "RETURN" && !s.goto) {
      return { rule: s, why: `every packet this rule matches returns from ${chain.name} before reaching it` };
    }
    if (!sv && s.target !== undefined && table.chains.has(s.target)) {
      const d = follow(table, s.target, ours, v, new Set([chain.name]));
      if (d?.against && d.by) {
        return {
          rule: s,
          why: `it ${s.goto ? "goes" : "jumps"} to ${s.target}, where "${d.by.text}" ${decides(verdictOf(d.by)!)} every packet this rule matches`,
        };
      }
    }
  }
  return undefined;
}

function lookup(ruleset: Ruleset, table: string, chain: string): { table: Table; chain: Chain } {
  const c = chainOf(ruleset, table, chain);
  if (!c) throw new PlacementError(`chain ${chain} does not exist in the ${table} table`);
  return { table: ruleset.tables.get(table)!, chain: c };
}

/**
 * Where to insert a rule (`iptables -I CHAIN <line>`), and why.
 * `auto`: directly before the first rule that shadows it, else at the end of the chain.
 * @throws PlacementError for a missing chain or a line outside 1..rules+1.
 * @example
 * placeRule(parseRuleset(save), { table: "filter", chain: "INPUT", rule: ["-p","tcp","-m","tcp","--dport","2222","-j","ACCEPT"] })
 *   // { line: 3, reason: "end of chain: ..." }
 */
export function placeRule(
  ruleset: Ruleset,
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; position?: Position },
): { line: number; reason: string } {
  const { table, chain } = lookup(ruleset, request.table, request.chain);
  const ours = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const position = request.position ?? "auto";
  const end = chain.rules.length + 1;
  if (position === "auto") {
    const s = firstShadow(table, chain, chain.rules, ours);
    return s
      ? { line: s.rule.line, reason: `before line ${s.rule.line} (${s.rule.text}): ${s.why}` }
      : {
          line: end,
          reason: `end of chain: no rule in ${chain.name} matches all of this rule's packets and decides them differently`,
        };
  }
  const line = position === "top" ? 1 : position === "bottom" ? end : position;
  if (!Number.isInteger(line) || line < 1 || line > end) {
    throw new PlacementError(
      `position ${position} is outside ${chain.name}, which has ${chain.rules.length} rules: use a line from 1 to ${end}`,
    );
  }
  const s = firstShadow(table, chain, chain.rules.slice(0, line - 1), ours);
  const where = position === "top" ? "top of chain" : position === "bottom" ? "end of chain" : `line ${line}`;
  return {
    line,
    reason: `${where} (position ${position})${s ? `; warning: shadowed by line ${s.rule.line} (${s.rule.text}): ${s.why}` : ""}`,
  };
}

/**
 * The first rule above `line` that shadows the rule at `line` (it would never decide its packets),
 * or undefined when that rule is in effect.
 * @example shadowing(parseRuleset(save), { table: "filter", chain: "INPUT", line: 4 })?.text // "-A INPUT -j DROP"
 */
export function shadowing(ruleset: Ruleset, at: { table: string; chain: string; line: number }): Rule | undefined {
  const { table, chain } = lookup(ruleset, at.table, at.chain);
  const ours = chain.rules[at.line - 1];
  if (!ours) throw new PlacementError(`${chain.name} has no line ${at.line} (it has ${chain.rules.length} rules)`);
  return firstShadow(table, chain, chain.rules.slice(0, at.line - 1), ours)?.rule;
}

/**
 * The rule carrying this identity tag: looked up in `chain` first, then in every chain of the table.
 * @example findByTag(rs, "filter", "INPUT", "pulumi-iptables:web/prod/allow-ssh/k3x9q2ab")?.counters
 */
export function findByTag(ruleset: Ruleset, table: string, chain: string, tag: string): Rule | undefined {
  const chains = [...(ruleset.tables.get(table)?.chains.values() ?? [])].sort(
    (a, b) => Number(b.name === chain) - Number(a.name === chain),
  );
  for (const c of chains) {
    const found = c.rules.find((r) => tagOf(r) === tag);
    if (found) return found;
  }
  return undefined;
}

/** A packet, as far as the caller knows it; left-out fields may be anything. */
export interface Packet {
  protocol?: string;
  source?: string;
  destination?: string;
  sport?: number;
  dport?: number;
  inInterface?: string;
  outInterface?: string;
}

/**
 * Could this rule match such a packet? Errs towards yes: unknown packet fields and matches the model
 * does not read count as matching (what a lockout guard wants).
 * @example matchesPacket(rule, { protocol: "tcp", source: "198.18.0.2", dport: 22 })
 */
export function matchesPacket(rule: RuleSpec, packet: Packet): boolean {
  const is = (value: string | number | undefined) =>
    value === undefined ? undefined : { value: String(value), negated: false };
  const spec: RuleSpec = {
    match: {
      protocol: is(packet.protocol?.toLowerCase()),
      source: is(packet.source),
      destination: is(packet.destination),
      sport: is(packet.sport),
      dport: is(packet.dport),
      inInterface: is(packet.inInterface),
      outInterface: is(packet.outInterface),
    },
    modules: [],
    goto: false,
    targetArgs: [],
    opaque: [],
  };
  return mayOverlap(rule, spec);
}
