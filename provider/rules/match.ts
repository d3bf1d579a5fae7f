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

/** The ordinary packets of one port of a rule. An undefined value: one that no rule names. */
export interface Ordinary {
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

const newState = (m: Neg) => negate(m.value.split(",").includes("NEW") ? ALL : NONE, m);

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
  if (m.ctorigdstport)
    parts.push(negate(dportShare(m.ctorigdstport.value, o.translated ? o.origDport : o.dport), m.ctorigdstport));
  if (m.ctdir) parts.push(negate(m.ctdir.value === "ORIGINAL" ? ALL : NONE, m.ctdir));
  if (m.icmpType || m.icmpv6Type) parts.push(SOME); // the protocol match has already said no to tcp/udp
  if (m.ctstate) parts.push(newState(m.ctstate));
  if (m.state) parts.push(newState(m.state));
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

/** Address types: ours come from a remote unicast address, to a local one (INPUT), a remote one (FORWARD, OUTPUT). */
function addrtypeShare(o: Ordinary, option: string, values: string[]): Share {
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
function optionShare(opt: MatchOption, o: Ordinary): Share {
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
        return addrtypeShare(o, option, values);
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

/** Modules whose every option optionShare reads (given without options, they match everything). */
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

/** How much of the ordinary packets the rule matches: every match must take them. */
export function matchShare(rule: RuleSpec, o: Ordinary): Share {
  return both(fieldsShare(rule.match, o), ...(rule.options ?? []).map((opt) => optionShare(opt, o)));
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
 * on `arrival` (one of arrivalsOf). */
export function ordinaryOf(spec: RuleSpec, hook: Hook, dport: number | undefined, arrival?: string): Ordinary {
  const positive = (n: Neg | undefined) => (n && !n.negated ? n.value : undefined);
  const p = positive(spec.match.protocol);
  const translated = !spec.match.dport && !spec.match.dports && !!positive(spec.match.ctorigdstport);
  return {
    hook,
    protocol: p && protocolName(p) !== "all" ? protocolName(p) : undefined,
    ...(translated ? { translated, origDport: dport } : { dport }),
    source: positive(spec.match.source),
    destination: positive(spec.match.destination),
    inInterface: arrival ?? positive(spec.match.inInterface),
    outInterface: positive(spec.match.outInterface),
  };
}
