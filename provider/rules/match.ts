/**
 * Does a rule match the ordinary packets of a PortRule (./ordinary): all of them, none, or some (then
 * the walk follows both branches)? The flag table's fields and the match options it does not model,
 * one module at a time.
 */
import type { MatchKey, Neg, RuleMatch } from "./flags";
import type { Hook } from "./names";
import { ALL, both, either, negate, NONE, type Share, SOME, portRanges, protocolName } from "./ordinary";
import { address, cidr, iface, ports } from "./overlap";
import type { MatchOption, RuleSpec, Table } from "./parse";
import { connlimitShare, familyOfRule, familyOfTable, hashlimitShare, instanceOf } from "./limits";
import type { Family } from "./types";

/** The ordinary packets of one port of a rule. An undefined value: one that no rule names. */
export interface Ordinary {
  hook: Hook;
  protocol?: string;
  dport?: number;
  /** DNAT-ed before they get here (Docker's DOCKER-USER): their port now is the container's, unknown. */
  translated?: boolean;
  /** The destination port the client asked for (`--ctorigdstport`), when translated (DNAT, REDIRECT). */
  origDport?: number;
  source?: string;
  destination?: string;
  inInterface?: string;
  outInterface?: string;
  /** The address family, when the rule or its table shows it (a connlimit mask of 32 is one host only on IPv4). */
  family?: Family;
}

/** A value the packets carry, against a match that names one (`-s`, `-i`): narrower names are exceptions. */
function named(
  m: Neg,
  ours: string | undefined,
  contains: (o: string, i: string) => boolean,
  universal: boolean,
): Share {
  const t = universal ? ALL : ours === undefined ? NONE : contains(m.value, ours) ? ALL : NONE;
  return negate(t, m);
}

const universalAddress = (v: string) => cidr(v)?.[1] === 0;
/** Whether the packets have that interface at all (INPUT has no output interface, OUTPUT no input). */
const hasIface = (o: Ordinary, dir: "in" | "out") => (dir === "in" ? o.hook !== "out" : o.hook !== "in");

function ifaceShare(m: Neg, o: Ordinary, dir: "in" | "out"): Share {
  if (!hasIface(o, dir)) return negate(NONE, m);
  return named(m, dir === "in" ? o.inInterface : o.outInterface, iface.contains, m.value === "+");
}

function dportShare(value: string, port: number | undefined): Share {
  const r = portRanges(value);
  if (!r) return SOME;
  if (port === undefined) return ports.contains(value, "1:65535") ? ALL : NONE;
  return r.some(([a, b]) => a <= port && port <= b) ? ALL : NONE;
}

/** Clients connect from unprivileged ports: a rule that names only low source ports is an exception. */
function sportShare(value: string): Share {
  if (!portRanges(value)) return SOME;
  if (ports.contains(value, "1024:65535")) return ALL;
  return ports.disjoint(value, "1024:65535") ? NONE : SOME;
}

/** Conntrack states of a new connection: NEW, and DNAT when it was translated before (Docker's DOCKER-USER). */
function stateShare(m: Neg, o: Ordinary): Share {
  const one = (state: string): Share => {
    if (state === "NEW") return ALL;
    if (state === "DNAT") return o.translated ? ALL : NONE;
    if (state === "SNAT") return o.hook === "in" ? NONE : SOME; // a forwarded connection may be source-NAT-ed
    return NONE; // ESTABLISHED, RELATED, INVALID, UNTRACKED
  };
  return negate(either(...m.value.split(",").map(one)), m);
}

function protocolShare(m: Neg, o: Ordinary): Share {
  const p = protocolName(m.value);
  return negate(p === "all" ? ALL : o.protocol === undefined ? NONE : p === protocolName(o.protocol) ? ALL : NONE, m);
}

/** The flag table's fields fieldsShare reads; any other (a field added later) may go either way. */
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
const nowPort = (value: string, o: Ordinary): Share =>
  o.translated ? (ports.contains(value, "1:65535") ? ALL : SOME) : dportShare(value, o.dport);

/** The modeled matches of a rule (the flag table's fields) against the ordinary packets. */
function fieldsShare(m: RuleMatch, o: Ordinary): Share {
  const parts: Share[] = [];
  for (const key of Object.keys(m)) if (m[key as MatchKey] && !READ.has(key)) parts.push(SOME);
  if (m.source) parts.push(named(m.source, o.source, address.contains, universalAddress(m.source.value)));
  if (m.destination)
    parts.push(named(m.destination, o.destination, address.contains, universalAddress(m.destination.value)));
  if (m.inInterface) parts.push(ifaceShare(m.inInterface, o, "in"));
  if (m.outInterface) parts.push(ifaceShare(m.outInterface, o, "out"));
  if (m.protocol) parts.push(protocolShare(m.protocol, o));
  if (m.fragment) parts.push(negate(NONE, m.fragment)); // ordinary packets are first fragments
  // `-m tcp --dport` and `-m multiport --dports` may both be there: both must match
  for (const dport of [m.dport, m.dports]) if (dport) parts.push(negate(nowPort(dport.value, o), dport));
  for (const sport of [m.sport, m.sports]) if (sport) parts.push(negate(sportShare(sport.value), sport));
  if (m.ports) parts.push(negate(either(nowPort(m.ports.value, o), sportShare(m.ports.value)), m.ports));
  if (m.ctorigdstport) parts.push(negate(dportShare(m.ctorigdstport.value, o.origDport ?? o.dport), m.ctorigdstport));
  if (m.ctdir) parts.push(negate(m.ctdir.value === "ORIGINAL" ? ALL : NONE, m.ctdir));
  if (m.icmpType || m.icmpv6Type) parts.push(SOME); // the protocol match has already said no to tcp/udp
  if (m.ctstate) parts.push(stateShare(m.ctstate, o));
  if (m.state) parts.push(stateShare(m.state, o));
  return both(...parts);
}

const TCP_FLAGS = ["SYN", "ACK", "FIN", "RST", "URG", "PSH", "ECE", "CWR"];
const flagSet = (v: string) => new Set(v === "ALL" ? TCP_FLAGS : v === "NONE" ? [] : v.split(","));

/** `--tcp-flags MASK COMP` on the first packet of a connection: only SYN set. */
function synShare(mask: string, comp: string): Share {
  const [m, c] = [flagSet(mask), flagSet(comp)];
  const want = m.has("SYN") ? ["SYN"] : [];
  return c.size === want.length && want.every((f) => c.has(f)) ? ALL : NONE;
}

/**
 * Address types: ours come from a remote unicast address, to a local one (INPUT), a remote one (FORWARD,
 * OUTPUT). With `--limit-iface-in/out` only the addresses of that interface count as LOCAL: an ordinary
 * packet may be addressed to another interface's address, so LOCAL may go either way there.
 */
function addrtypeShare(o: Ordinary, option: string, values: string[], siblings: readonly MatchOption[]): Share {
  if (option === "--limit-iface-in" || option === "--limit-iface-out") return ALL; // they narrow the type test
  if (option !== "--src-type" && option !== "--dst-type") return SOME;
  const side =
    option === "--src-type" ? (o.hook === "out" ? "LOCAL" : "UNICAST") : o.hook === "in" ? "LOCAL" : "UNICAST";
  if (!(values[0] ?? "").toUpperCase().split(",").includes(side)) return NONE;
  const limited = siblings.some((s) => s.option === "--limit-iface-in" || s.option === "--limit-iface-out");
  return side === "LOCAL" && limited ? SOME : ALL;
}

/**
 * `-m conntrack` options beyond the flag table's: the original direction of an ordinary connection is
 * the client's packet itself (its source, its protocol, its source port; its destination unless it was
 * DNAT-ed); the reply direction, status and expiry are not read (either way).
 */
function conntrackShare(option: string, value: string, o: Ordinary): Share {
  const bare = { value, negated: false };
  switch (option) {
    case "--ctorigsrc":
      return named(bare, o.source, address.contains, universalAddress(value));
    case "--ctorigdst":
      return o.translated && !universalAddress(value)
        ? SOME
        : named(bare, o.destination, address.contains, universalAddress(value));
    case "--ctproto":
      return protocolShare(bare, o);
    case "--ctorigsrcport":
      return sportShare(value);
    default:
      return SOME;
  }
}

/** IP TOS `value[/mask]` (mask 0xff when not given): ordinary packets are unmarked (TOS 0), as a client's first packet is. */
function tosShare(value: string): Share {
  const m = /^(0x[0-9a-f]+|\d+)(?:\/(0x[0-9a-f]+|\d+))?$/i.exec(value);
  if (!m) return SOME;
  return (Number(m[1]) & Number(m[2] ?? 0xff)) === 0 ? ALL : NONE;
}

/**
 * The matches the flag table does not model. Per-source matches single out sources that are not
 * ordinary (a set's members, a source over its rate or connection limit, one recent already saw);
 * rate limits and what the model cannot read may go either way.
 */
function optionShare(opt: MatchOption, o: Ordinary, siblings: readonly MatchOption[]): Share {
  const { module, option, values } = opt;
  if (EXTENSION_HEADERS.has(module)) return NONE; // needs the header, negated or not: ordinary packets have none
  const t = ((): Share => {
    if (option === "") return KNOWN_MODULES.has(module) ? ALL : SOME;
    switch (module) {
      case "tcp":
        if (option === "--syn") return ALL;
        if (option === "--tcp-flags") return synShare(values[0] ?? "", values[1] ?? "");
        return SOME;
      case "addrtype":
        return addrtypeShare(o, option, values, siblings);
      case "set":
        return option === "--match-set" ? NONE : ALL;
      case "recent":
        if (option === "--set") return ALL; // always matches (it records the source)
        return ["--rcheck", "--update", "--remove"].includes(option) ? NONE : ALL;
      case "connlimit":
        return connlimitShare(opt, siblings, o.family);
      case "hashlimit":
        return hashlimitShare(opt, siblings);
      case "pkttype":
        return option === "--pkt-type" ? ((values[0] ?? "").toLowerCase() === "unicast" ? ALL : NONE) : SOME;
      case "iprange":
      case "mac":
        return NONE; // --src-range, --dst-range, --mac-source: named addresses
      case "rpfilter":
        return option === "--invert" ? NONE : ALL; // ordinary sources pass the reverse-path check
      case "conntrack":
        return conntrackShare(option, values[0] ?? "", o);
      case "tos":
        return option === "--tos" ? tosShare(values[0] ?? "") : SOME;
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

/** Modules whose every option optionShare reads (given without options, they match everything). */
const KNOWN_MODULES: ReadonlySet<string> = new Set([
  "addrtype",
  "set",
  "recent",
  "connlimit",
  "hashlimit",
  "tos",
  "pkttype",
  "iprange",
  "mac",
  "rpfilter",
  "comment",
]);

/** How much of the ordinary packets the rule matches: every match must take them. */
export function matchShare(rule: RuleSpec, o: Ordinary): Share {
  const options = rule.options ?? [];
  return both(fieldsShare(rule.match, o), ...options.map((opt, i) => optionShare(opt, o, instanceOf(options, i))));
}

/** The interfaces the `-i` matches of a table name, per table (a Table is read-only). */
const namedIn = new WeakMap<Table, string[]>();
function interfacesNamed(table: Table): string[] {
  let out = namedIn.get(table);
  if (!out) {
    const names = new Set<string>();
    for (const chain of table.chains.values())
      for (const r of chain.rules) if (r.match.inInterface) names.add(r.match.inInterface.value);
    out = [...names];
    namedIn.set(table, out);
  }
  return out;
}

/**
 * The host's interfaces, one for each group that every `-i` of these tables (and the rule's own)
 * treats alike: a Kubernetes node's hundred veths that no rule tells apart are judged once.
 */
export function distinctInterfaces(
  host: readonly string[] | undefined,
  spec: RuleSpec,
  tables: (Table | undefined)[],
): readonly string[] | undefined {
  if (!host || host.length < 2) return host;
  const names = [...tables.flatMap((t) => (t ? interfacesNamed(t) : [])), spec.match.inInterface?.value ?? "+"];
  const seen = new Map<string, string>();
  for (const i of host) {
    const key = names.map((n) => (iface.contains(n, i) ? "1" : "0")).join("");
    if (!seen.has(key)) seen.set(key, i);
  }
  return [...seen.values()];
}

/**
 * The interfaces the ordinary packets of `spec` arrive on, each judged on its own: the host's
 * (non-loopback) interfaces that the rule's own `-i` takes, or, where the host's are not known, one
 * that no rule names (undefined), or the rule's own `-i` as it is written. None on OUTPUT.
 */
export function arrivalsOf(spec: RuleSpec, hook: Hook, host: readonly string[] | undefined): (string | undefined)[] {
  const own = spec.match.inInterface;
  if (hook === "out") return [undefined];
  if (!host?.length) return [own && !own.negated ? own.value : undefined];
  if (!own) return [...host];
  const taken = host.filter((i) => iface.contains(own.value, i) !== own.negated);
  return taken.length ? taken : [own.negated ? undefined : own.value];
}

/** The ordinary packets of `spec` entering on `hook`, to port `dport` (one piece of its ports), arriving
 * on `arrival` (one of arrivalsOf), in `table`, addressed to `to` (one of ./destinations destinationsOf). */
export function ordinaryOf(
  spec: RuleSpec,
  hook: Hook,
  dport: number | undefined,
  arrival?: string,
  table?: Table,
  to?: string,
): Ordinary {
  const positive = (n: Neg | undefined) => (n && !n.negated ? n.value : undefined);
  const p = positive(spec.match.protocol);
  const translated = !spec.match.dport && !spec.match.dports && !!positive(spec.match.ctorigdstport);
  return {
    hook,
    protocol: p && protocolName(p) !== "all" ? protocolName(p) : undefined,
    ...(translated ? { translated, origDport: dport } : { dport }),
    source: positive(spec.match.source),
    destination: to ?? positive(spec.match.destination),
    inInterface: arrival ?? positive(spec.match.inInterface),
    outInterface: positive(spec.match.outInterface),
    family: familyOfRule(spec) ?? (table && familyOfTable(table)),
  };
}
