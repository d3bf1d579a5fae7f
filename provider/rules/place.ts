import { shown } from "./identity";
import ipaddr from "ipaddr.js";
import { BUILTIN_CHAINS, NON_TERMINATING, VERDICTS, type MatchKey, type Neg, type RuleMatch } from "./flags";
import {
  chainOf,
  parseSpec,
  type Chain,
  type MatchOption,
  type Rule,
  type RuleSpec,
  type Ruleset,
  type Table,
} from "./parse";
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

/** S may match some packet R matches (opaque matches count as "may"). */
export function mayOverlap(s: RuleSpec, r: RuleSpec): boolean {
  return everyDim(s, r, overlapsOne);
}

// ---------------------------------------------------------------- ordinary packets

// What a PortRule speaks for (DESIGN.md, "Where a rule goes"): the first packet of a new connection of
// its protocol to one of its ports, to one of the host's own unicast addresses, arriving on a
// non-loopback interface, from a source address, port and interface that no rule names. A match says
// of those packets that all of them match, none does, or some may (then both branches are followed).
const NONE = 0;
const SOME = 1;
const ALL = 2;
type Tri = 0 | 1 | 2;
const not = (t: Tri): Tri => (2 - t) as Tri;
const negate = (t: Tri, m: { negated: boolean }): Tri => (m.negated ? not(t) : t);

/** Which way the packets travel: to the host (INPUT), through it (FORWARD), from it (OUTPUT). */
type Hook = "in" | "forward" | "out";
const HOOKS: Record<string, Hook> = {
  INPUT: "in",
  PREROUTING: "in",
  FORWARD: "forward",
  OUTPUT: "out",
  POSTROUTING: "out",
};

/** The ordinary packets of one port of a rule. An undefined value: one that no rule names. */
interface Ordinary {
  hook: Hook;
  protocol?: string;
  dport?: number;
  /** DNAT-ed before they get here (Docker's DOCKER-USER): their port now is the container's, unknown. */
  translated?: boolean;
  /** The destination port the client asked for (`--ctorigdstport`), when translated. */
  origDport?: number;
  source?: string;
  destination?: string;
  inInterface?: string;
  outInterface?: string;
}

/** A value the packets carry, against a match that names one (`-s`, `-i`): narrower names are exceptions. */
function named(m: Neg, ours: string | undefined, contains: (o: string, i: string) => boolean, universal: boolean): Tri {
  const t = universal ? ALL : ours === undefined ? NONE : contains(m.value, ours) ? ALL : NONE;
  return negate(t, m);
}

const universalAddress = (v: string) => cidr(v)?.[1] === 0;
/** Whether the packets have that interface at all (INPUT has no output interface, OUTPUT no input). */
const hasIface = (o: Ordinary, dir: "in" | "out") => (dir === "in" ? o.hook !== "out" : o.hook !== "in");

function ifaceTri(m: Neg, o: Ordinary, dir: "in" | "out"): Tri {
  if (!hasIface(o, dir)) return negate(NONE, m);
  return named(m, dir === "in" ? o.inInterface : o.outInterface, iface.contains, m.value === "+");
}

function dportTri(value: string, port: number | undefined): Tri {
  const r = portRanges(value);
  if (!r) return SOME;
  if (port === undefined) return ports.contains(value, "1:65535") ? ALL : NONE;
  return r.some(([a, b]) => a <= port && port <= b) ? ALL : NONE;
}

/** Clients connect from unprivileged ports: a rule that names only low source ports is an exception. */
function sportTri(value: string): Tri {
  if (!portRanges(value)) return SOME;
  if (ports.contains(value, "1024:65535")) return ALL;
  return ports.disjoint(value, "1024:65535") ? NONE : SOME;
}

const newState = (m: Neg) => negate(m.value.split(",").includes("NEW") ? ALL : NONE, m);

function protocolTri(m: Neg, o: Ordinary): Tri {
  const p = proto(m.value);
  return negate(p === "all" ? ALL : o.protocol === undefined ? NONE : p === proto(o.protocol) ? ALL : NONE, m);
}

/** The flag table's fields fieldsTri reads; any other (a field added later) may go either way. */
const READ: ReadonlySet<string> = new Set([
  "source",
  "destination",
  "inInterface",
  "outInterface",
  "protocol",
  "fragment",
  "dport",
  "dports",
  "sport",
  "sports",
  "ports",
  "icmpType",
  "icmpv6Type",
  "ctstate",
  "state",
  "ctorigdstport",
  "ctdir",
  "comment",
]);

/** The port the packets carry now: unknown after DNAT (either way, unless the match takes every port). */
const nowPort = (value: string, o: Ordinary): Tri =>
  o.translated ? (ports.contains(value, "1:65535") ? ALL : SOME) : dportTri(value, o.dport);

/** The modeled matches of a rule (the flag table's fields) against the ordinary packets. */
function fieldsTri(m: RuleMatch, o: Ordinary): Tri {
  const parts: Tri[] = [];
  for (const key of Object.keys(m)) if (m[key as MatchKey] && !READ.has(key)) parts.push(SOME);
  if (m.source) parts.push(named(m.source, o.source, address.contains, universalAddress(m.source.value)));
  if (m.destination)
    parts.push(named(m.destination, o.destination, address.contains, universalAddress(m.destination.value)));
  if (m.inInterface) parts.push(ifaceTri(m.inInterface, o, "in"));
  if (m.outInterface) parts.push(ifaceTri(m.outInterface, o, "out"));
  if (m.protocol) parts.push(protocolTri(m.protocol, o));
  if (m.fragment) parts.push(negate(NONE, m.fragment)); // ordinary packets are first fragments
  // `-m tcp --dport` and `-m multiport --dports` may both be there: both must match
  for (const dport of [m.dport, m.dports]) if (dport) parts.push(negate(nowPort(dport.value, o), dport));
  for (const sport of [m.sport, m.sports]) if (sport) parts.push(negate(sportTri(sport.value), sport));
  if (m.ports) parts.push(negate(Math.max(nowPort(m.ports.value, o), sportTri(m.ports.value)) as Tri, m.ports));
  if (m.ctorigdstport)
    parts.push(negate(dportTri(m.ctorigdstport.value, o.translated ? o.origDport : o.dport), m.ctorigdstport));
  if (m.ctdir) parts.push(negate(m.ctdir.value === "ORIGINAL" ? ALL : NONE, m.ctdir));
  if (m.icmpType || m.icmpv6Type) parts.push(SOME); // the protocol match has already said no to tcp/udp
  if (m.ctstate) parts.push(newState(m.ctstate));
  if (m.state) parts.push(newState(m.state));
  return Math.min(ALL, ...parts) as Tri;
}

const TCP_FLAGS = ["SYN", "ACK", "FIN", "RST", "URG", "PSH", "ECE", "CWR"];
const flagSet = (v: string) => new Set(v === "ALL" ? TCP_FLAGS : v === "NONE" ? [] : v.split(","));

/** `--tcp-flags MASK COMP` on the first packet of a connection: only SYN set. */
function synTri(mask: string, comp: string): Tri {
  const [m, c] = [flagSet(mask), flagSet(comp)];
  const want = m.has("SYN") ? ["SYN"] : [];
  return c.size === want.length && want.every((f) => c.has(f)) ? ALL : NONE;
}

/** Address types: ours come from a remote unicast address, to a local one (INPUT), a remote one (FORWARD, OUTPUT). */
function addrtypeTri(o: Ordinary, option: string, values: string[]): Tri {
  const side =
    option === "--src-type" ? (o.hook === "out" ? "LOCAL" : "UNICAST") : o.hook === "in" ? "LOCAL" : "UNICAST";
  if (option !== "--src-type" && option !== "--dst-type") return SOME; // --limit-iface-in/out
  return (values[0] ?? "").split(",").includes(side) ? ALL : NONE;
}

const count = (v: string | undefined) => Number(v ?? "NaN");

/**
 * The matches the flag table does not model. Per-source matches single out sources that are not
 * ordinary (a set's members, a source over its rate or connection limit, one recent already saw);
 * rate limits and what the model cannot read may go either way.
 */
function optionTri(opt: MatchOption, o: Ordinary): Tri {
  const { module, option, values } = opt;
  if (EXTENSION_HEADERS.has(module)) return NONE; // needs the header, negated or not: ordinary packets have none
  const t = ((): Tri => {
    if (option === "") return KNOWN_MODULES.has(module) ? ALL : SOME;
    switch (module) {
      case "tcp":
        if (option === "--syn") return ALL;
        if (option === "--tcp-flags") return synTri(values[0] ?? "", values[1] ?? "");
        return SOME;
      case "addrtype":
        return addrtypeTri(o, option, values);
      case "set":
        return option === "--match-set" ? NONE : ALL;
      case "recent":
        if (option === "--set") return ALL; // always matches (it records the source)
        return ["--rcheck", "--update", "--remove"].includes(option) ? NONE : ALL;
      case "connlimit":
        if (option === "--connlimit-above") return count(values[0]) < 1 ? ALL : NONE;
        if (option === "--connlimit-upto") return count(values[0]) >= 1 ? ALL : NONE;
        return ALL;
      case "hashlimit":
        if (option === "--hashlimit-above") return NONE;
        return ALL; // --hashlimit-upto, --hashlimit, and the options that shape the buckets
      case "pkttype":
        return option === "--pkt-type" ? ((values[0] ?? "").toLowerCase() === "unicast" ? ALL : NONE) : SOME;
      case "iprange":
      case "mac":
        return NONE; // --src-range, --dst-range, --mac-source: named addresses
      case "rpfilter":
        return option === "--invert" ? NONE : ALL; // ordinary sources pass the reverse-path check
      case "conntrack":
        return SOME;
      case "comment":
        return ALL;
      default:
        return SOME;
    }
  })();
  return negate(t, opt);
}

/** IPv6 extension header and IPsec matches: only packets that carry that header match, whatever the options. */
const EXTENSION_HEADERS: ReadonlySet<string> = new Set(["rt", "frag", "hbh", "dst", "ah", "esp"]);

/** Modules whose every option optionTri reads (given without options, they match everything). */
const KNOWN_MODULES: ReadonlySet<string> = new Set([
  "addrtype",
  "set",
  "recent",
  "connlimit",
  "hashlimit",
  "pkttype",
  "iprange",
  "mac",
  "rpfilter",
  "comment",
]);

function matchTri(rule: RuleSpec, o: Ordinary): Tri {
  return Math.min(fieldsTri(rule.match, o), ...(rule.options ?? []).map((opt) => optionTri(opt, o))) as Tri;
}

// ---------------------------------------------------------------- following the packets

/** One step of a packet's path: a rule (`INPUT:2`), or the end of a chain (`TCP-IN:end`, no rule). */
interface Hop {
  chain: string;
  line: number;
  rule?: Rule;
}

/** What happens to the packets on one branch: a verdict (or RETURN out of the start chain, or another target). */
interface Outcome {
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

interface Walk {
  table: Table;
  o: Ordinary;
  /** The rule being judged, as if inserted before rule `index` (0-based) of `chain`. */
  at: { chain: string; index: number; verdict: string };
  memo: Map<string, ChainResult>;
  /** Results of chains that cannot reach `at.chain`, shared by every walk of this table and packet. */
  shared: Map<string, ChainResult>;
  active: Set<string>;
}

/**
 * What a chain that cannot reach the judged rule's chain does to some ordinary packets does not
 * depend on where the rule is judged: such results are kept per table (a table is never changed in
 * place: an edit makes a new one) and per packet, so placing a rule walks a Kubernetes node's
 * thousands of KUBE-* rules once, not once per line tried, and judging a batch's rules shares them.
 */
const sharedResults = new WeakMap<Table, Map<string, Map<string, ChainResult>>>();
function sharedFor(table: Table, o: Ordinary): Map<string, ChainResult> {
  const byPacket = sharedResults.get(table) ?? sharedResults.set(table, new Map()).get(table)!;
  const key = JSON.stringify(o);
  return byPacket.get(key) ?? byPacket.set(key, new Map()).get(key)!;
}

/** The chains each chain of the table can reach by jumps and gotos (itself included), per table. */
const reachable = new WeakMap<Table, Map<string, Set<string>>>();
function reaches(table: Table, from: string, to: string): boolean {
  const byChain = reachable.get(table) ?? reachable.set(table, new Map()).get(table)!;
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
  return { decided: [{ verdict: t, hops: [] }], cont: false }; // NFQUEUE, TARPIT, SYNPROXY...: decide otherwise
}

function walkChain(w: Walk, name: string): ChainResult {
  const independent = !reaches(w.table, name, w.at.chain);
  const known = w.memo.get(name) ?? (independent ? w.shared.get(name) : undefined);
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
    const t = rule ? matchTri(rule, w.o) : NONE;
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
  if (independent) w.shared.set(name, result);
  return result;
}

/** Every way the ordinary packets can go from the top of `start`, with the judged rule in place. */
function outcomes(table: Table, start: string, o: Ordinary, at: Walk["at"]): Outcome[] {
  const w: Walk = { table, o, at, memo: new Map(), shared: sharedFor(table, o), active: new Set() };
  const r = walkChain(w, start);
  const policy = table.chains.get(start)!.policy;
  if (!r.leave) return r.decided;
  return [...r.decided, policy ? { verdict: policy, hops: r.leave, policy } : { verdict: "RETURN", hops: r.leave }];
}

// ---------------------------------------------------------------- judging a rule at a line

/** The rule (or policy) that decides a rule's packets otherwise, with the path the packets take. */
export type Shadow = Rule & {
  /** `INPUT:2 -> ufw-before-input:15 -> ufw-user-input:2`; a chain's end is `CHAIN:end`. */
  path: string;
  /** What the packets get instead: ACCEPT, DROP, REJECT, RETURN (out of the chain) or another target. */
  verdict: string;
  /** Which ordinary packets: "tcp 8080". */
  packets: string;
  /** One sentence: where they go and what decides them. */
  why: string;
};

/** A rule-like record for a decision no rule makes (a policy, a chain nothing jumps to). */
function pseudoRule(table: string, chain: string, text: string, target?: string): Rule {
  const tokens = text.split(" ").slice(2);
  return { ...parseSpec(tokens), target, table, chain, line: 0, text, tokens };
}

const VERBS: Record<string, string> = { ACCEPT: "accepts", DROP: "drops", REJECT: "rejects" };

function shadowOf(table: Table, start: string, out: Outcome, packets: string): Shadow {
  const hopText = (h: Hop) => (h.rule ? `${h.chain}:${h.line}` : `${h.chain}:end`);
  const path = [...out.hops.map(hopText), ...(out.policy ? [`policy ${out.policy}`] : [])].join(" -> ");
  const last = [...out.hops].reverse().find((h) => h.rule)?.rule;
  const rule = out.policy
    ? pseudoRule(table.name, start, `-P ${start} ${out.policy}`, out.policy)
    : (last ?? { ...pseudoRule(table.name, start, `-A ${start}`, "RETURN"), text: `the end of ${start}` });
  const what = VERBS[out.verdict]
    ? `${VERBS[out.verdict]} ${packets}`
    : out.verdict === "RETURN"
      ? `returns ${packets} from ${start}`
      : `hands ${packets} to ${out.verdict}`;
  return { ...rule, path, verdict: out.verdict, packets, why: shown(`${path} (${rule.text}) ${what}`) };
}

interface Judgement {
  /** Every ordinary packet gets the rule's verdict. */
  effective: boolean;
  /** Every ordinary packet reaches the rule, which decides it (so its counters count them). */
  decides: boolean;
  /** The first decision with another verdict. */
  shadow?: Shadow;
  /** The first decision the rule does not make itself (another verdict, or the same one by another rule). */
  first?: Shadow;
}

/** Splits the rule's ports where any rule of the table starts or ends a port range: one port per piece. */
function portPieces(table: Table, spec: RuleSpec): (number | undefined)[] {
  const own = spec.match.dport ?? spec.match.dports ?? spec.match.ctorigdstport;
  const ranges = own && !own.negated ? portRanges(own.value) : undefined;
  if (!ranges) return [undefined];
  const out: number[] = [];
  for (const [lo, hi] of ranges) {
    out.push(lo);
    // A single port is one piece; a range is cut where any rule's ports begin or end.
    if (hi > lo)
      for (const chain of table.chains.values()) for (const c of cutsOf(chain)) if (c > lo && c <= hi) out.push(c);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

/** Where the port ranges of a chain's rules begin and end (one past), per chain (chains are never
 * changed in place: an edit makes a new one). */
const cuts = new WeakMap<Chain, number[]>();
function cutsOf(chain: Chain): number[] {
  let out = cuts.get(chain);
  if (!out) {
    out = [];
    for (const r of chain.rules)
      for (const m of [r.match.dport, r.match.dports, r.match.ports, r.match.ctorigdstport])
        for (const [a, b] of (m && portRanges(m.value)) ?? []) out.push(a, b + 1);
    cuts.set(chain, out);
  }
  return out;
}

function ordinaryOf(spec: RuleSpec, hook: Hook, dport: number | undefined): Ordinary {
  const positive = (n: Neg | undefined) => (n && !n.negated ? n.value : undefined);
  const p = positive(spec.match.protocol);
  const translated = !spec.match.dport && !spec.match.dports && !!positive(spec.match.ctorigdstport);
  return {
    hook,
    protocol: p && proto(p) !== "all" ? proto(p) : undefined,
    ...(translated ? { translated, origDport: dport } : { dport }),
    source: positive(spec.match.source),
    destination: positive(spec.match.destination),
    inInterface: positive(spec.match.inInterface),
    outInterface: positive(spec.match.outInterface),
  };
}

/** The built-in chains of the table from which packets can reach `chain` (itself, if it is one). */
function entries(table: Table, chain: string): string[] {
  const builtins = (BUILTIN_CHAINS[table.name] ?? []).filter((b) => table.chains.has(b));
  if (builtins.includes(chain)) return [chain];
  const reaches = (from: string, seen: Set<string>): boolean => {
    if (from === chain) return true;
    if (seen.has(from)) return false;
    seen.add(from);
    const rules = table.chains.get(from)?.rules ?? [];
    return rules.some((r) => !!r.target && table.chains.has(r.target) && reaches(r.target, seen));
  };
  return builtins.filter((b) => reaches(b, new Set()));
}

/**
 * Is `spec` effective as rule `line` of `chain`: does every ordinary packet of every one of its ports,
 * from every built-in chain that leads there (or from the top of `chain` when `local`), get its verdict?
 */
function judge(table: Table, chain: string, spec: RuleSpec, line: number, local = false): Judgement {
  const verdict = spec.target ?? "";
  const starts = local ? [chain] : entries(table, chain);
  if (!starts.length) {
    const text = `no rule of ${(BUILTIN_CHAINS[table.name] ?? []).join(", ")} jumps to ${chain}`;
    const rule = pseudoRule(table.name, chain, `-A ${chain}`);
    const shadow = { ...rule, text, path: "", verdict: "", packets: "", why: `no packet reaches ${chain}: ${text}` };
    return { effective: false, decides: false, shadow, first: shadow };
  }
  let first: Shadow | undefined;
  for (const start of starts)
    for (const port of portPieces(table, spec)) {
      const o = ordinaryOf(spec, HOOKS[start] ?? "in", port);
      const outs = outcomes(table, start, o, { chain, index: line - 1, verdict });
      const packets = [o.protocol ?? "", port ?? ""].join(" ").trim() || "its packets";
      const against = outs.find((x) => x.verdict !== verdict);
      if (against) {
        const shadow = shadowOf(table, start, against, packets);
        return { effective: false, decides: false, shadow, first: first ?? shadow };
      }
      const other = outs.find((x) => !x.ours);
      if (other && !first) first = shadowOf(table, start, other, packets);
    }
  return { effective: true, decides: !first, first };
}

/**
 * Every verdict the model allows for the ordinary packets of each port piece of `rule` inserted as
 * line `line` of `chain` (both branches of every match that may go either way), and whether the
 * rule itself decides some of them. For tests that put the model against the kernel.
 */
export function possibleVerdicts(
  ruleset: Ruleset,
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; line: number },
): { port?: number; verdicts: string[]; ours: boolean; others: boolean }[] {
  const { table } = lookup(ruleset, request.table, request.chain);
  const spec = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const starts = entries(table, request.chain);
  return portPieces(table, spec).map((port) => {
    const outs = (starts.length ? starts : [request.chain]).flatMap((start) =>
      outcomes(table, start, ordinaryOf(spec, HOOKS[start] ?? "in", port), {
        chain: request.chain,
        index: request.line - 1,
        verdict: spec.target ?? "",
      }),
    );
    return {
      port,
      verdicts: [...new Set(outs.map((o) => o.verdict))],
      ours: outs.some((o) => o.ours),
      others: outs.some((o) => !o.ours),
    };
  });
}

/** The lowest line of the chain where the rule decides its packets (that only shrinks going down). */
function lowest(table: Table, chain: Chain, spec: RuleSpec, local: boolean): number {
  let [lo, hi] = [1, chain.rules.length + 1]; // the rule decides at lo
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (judge(table, chain.name, spec, mid, local).decides) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function lookup(ruleset: Ruleset, table: string, chain: string): { table: Table; chain: Chain } {
  const c = chainOf(ruleset, table, chain);
  if (!c) throw new PlacementError(`chain ${chain} does not exist in the ${table} table`);
  return { table: ruleset.tables.get(table)!, chain: c };
}

export interface Placement {
  /** The line for `iptables -I CHAIN <line>`. */
  line: number;
  reason: string;
  /** Every ordinary packet of the rule gets its verdict there. */
  effective: boolean;
  /** When not effective: what decides its packets otherwise, and their path. */
  shadowedBy?: Shadow;
}

const redundancy = (j: Judgement) =>
  j.effective && !j.decides ? ` (redundant there: ${j.first!.why} first, with the same verdict)` : "";

/**
 * Where to insert a rule (`iptables -I CHAIN <line>`), and why.
 * `auto`: the lowest line where the rule is effective (every ordinary packet of each of its ports gets
 * its verdict), so every exception above that can stay above does; the end of the chain when it is
 * effective there. In a user chain that no packet can reach with the rule effective (nothing jumps
 * to it, or rules before the jump decide the packets), no line is: the rule goes where it decides
 * every packet that enters the chain, and the reason says why that is not enough.
 * Explicit positions are honoured, with a warning when the rule is not effective there.
 * @throws PlacementError for a missing chain or a line outside 1..rules+1.
 * @example
 * placeRule(parseRuleset(save), { table: "filter", chain: "INPUT", rule: ["-p","tcp","-m","tcp","--dport","2222","-j","ACCEPT"] })
 *   // { line: 3, reason: "end of chain: effective there", effective: true }
 */
export function placeRule(
  ruleset: Ruleset,
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; position?: Position },
): Placement {
  const { table, chain } = lookup(ruleset, request.table, request.chain);
  const spec = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const position = request.position ?? "auto";
  const end = chain.rules.length + 1;
  const ruleAt = (line: number) => `line ${line} (${shown(chain.rules[line - 1].text)})`;
  if (position === "auto") {
    if (!spec.target || !VERDICTS.has(spec.target) || spec.goto)
      return { line: end, reason: "end of chain: the rule gives no verdict of its own", effective: true };
    const first = judge(table, chain.name, spec, 1);
    if (!first.decides) {
      // Only in a user chain: its packets are decided before they reach it, or never reach it.
      const line = lowest(table, chain, spec, true);
      const at = line === end ? "the end of the chain" : `line ${line}`;
      const why = first.effective
        ? `its packets get its verdict without it: ${first.first!.why} first`
        : `no line of ${chain.name} makes it effective: ${first.shadow!.why}`;
      return {
        line,
        reason: `${why}; placed at ${at}, the lowest where it decides every packet that enters ${chain.name}`,
        effective: first.effective,
        ...(first.shadow && { shadowedBy: first.shadow }),
      };
    }
    const line = lowest(table, chain, spec, false);
    if (line === end) return { line, reason: "end of chain: it decides its packets there", effective: true };
    const below = judge(table, chain.name, spec, line + 1);
    return { line, reason: `before ${ruleAt(line)}: below it, ${below.first!.why}`, effective: true };
  }
  const line = position === "top" ? 1 : position === "bottom" ? end : position;
  if (!Number.isInteger(line) || line < 1 || line > end) {
    throw new PlacementError(
      `position ${position} is outside ${chain.name}, which has ${chain.rules.length} rules: use a line from 1 to ${end}`,
    );
  }
  const where = position === "top" ? "top of chain" : position === "bottom" ? "end of chain" : `line ${line}`;
  const j =
    spec.target && VERDICTS.has(spec.target) && !spec.goto
      ? judge(table, chain.name, spec, line)
      : { effective: true, decides: true };
  const warning = j.effective ? redundancy(j) : `; warning: not effective there: ${j.shadow!.why}`;
  return {
    line,
    reason: `${where} (position ${position})${warning}`,
    effective: j.effective,
    ...(j.shadow && { shadowedBy: j.shadow }),
  };
}

/**
 * What keeps the rule at `line` from being effective: the first rule (or policy) that decides some of
 * its ordinary packets otherwise, with their path; undefined when the rule is effective (a same-verdict
 * rule deciding its packets first makes it redundant, not shadowed) or gives no verdict of its own.
 * @example shadowing(parseRuleset(save), { table: "filter", chain: "INPUT", line: 5 })?.path // "INPUT:4"
 */
export function shadowing(ruleset: Ruleset, at: { table: string; chain: string; line: number }): Shadow | undefined {
  const { table, chain } = lookup(ruleset, at.table, at.chain);
  const ours = chain.rules[at.line - 1];
  if (!ours) throw new PlacementError(`${chain.name} has no line ${at.line} (it has ${chain.rules.length} rules)`);
  if (!ours.target || !VERDICTS.has(ours.target) || ours.goto) return undefined;
  return judge(table, chain.name, ours, at.line).shadow;
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
    options: [],
  };
  return mayOverlap(rule, spec);
}
