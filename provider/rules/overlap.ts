/**
 * Could two rules (or a rule and a packet) match a common packet? One comparison per match dimension
 * (addresses, interfaces, protocol, ports, states); values the model cannot read compare as "don't
 * know", which counts as "may".
 */
import ipaddr from "ipaddr.js";
import type { MatchKey, Neg } from "./flags";
import { portRanges, protocolName } from "./ordinary";
import type { RuleSpec } from "./parse";

/** How to compare two values of one match dimension. Unreadable values compare as "don't know". */
export interface Dim {
  /** Every value `inner` matches, `outer` matches too. */
  contains(outer: string, inner: string): boolean;
  /** No value matches both. */
  disjoint(a: string, b: string): boolean;
}

/** @internal An address or network as ipaddr.js reads it (a bare address is its /32 or /128); undefined if it is neither. */
export function cidr(v: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined {
  try {
    return ipaddr.parseCIDR(v.includes("/") ? v : `${v}/${v.includes(":") ? 128 : 32}`);
  } catch {
    return undefined;
  }
}

/** Source and destination addresses. */
export const address: Dim = {
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
export const iface: Dim = {
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

const protocol: Dim = {
  contains: (outer, inner) => protocolName(outer) === "all" || protocolName(outer) === protocolName(inner),
  disjoint: (a, b) => protocolName(a) !== protocolName(b) && protocolName(a) !== "all" && protocolName(b) !== "all",
};

/** Port lists and ranges (`--dport`, `--dports`). */
export const ports: Dim = {
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

/** Is network `inner` strictly inside `outer` (undefined: every address of the family)? */
export function strictlyWithin(inner: string | undefined, outer: string | undefined): boolean {
  if (inner === undefined) return false;
  return outer === undefined || (inner !== outer && address.contains(outer, inner));
}
