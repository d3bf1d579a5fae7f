/**
 * The host's own nftables tables, beside iptables: a packet must be accepted by every base chain on
 * its hook, so an iptables ACCEPT does not open a port that an nft table (the distribution's
 * `table inet filter` with policy drop, firewalld's `table inet firewalld`) drops.
 *
 * Judges, from what ./nft-parse read of `nft -j list ruleset`, for every base chain on the input hook outside iptables'
 * own tables, what it does with the ordinary packets of a rule (README.md, `placeRule`):
 * the first packet of a new connection of the rule's protocol to each of its ports, addressed to a
 * local unicast address, from an arbitrary source, on a non-loopback interface. A rule whose matches
 * the model cannot read matches "some" of them; anything that can drop some ordinary packet makes
 * the chain's answer "may drop".
 */
import { TABLES } from "./names";
import { asArray, isObject, key, type Json, type NftChain, type NftRule, type NftRuleset } from "./nft-parse";
import { ALL, both, NONE, not, portRanges, protocolName, type PortSpan, type Share, SOME } from "./ordinary";
import type { Family, Protocol } from "./types";

/** What one base chain does with the ordinary packets of a rule. */
export interface NftJudgement {
  /** "inet filter" (family and name). */
  table: string;
  chain: string;
  hook: string;
  verdict: "accepts" | "drops" | "may drop";
  /** In words, naming the rule (in nft's JSON, shortened) or the policy that decides. */
  why: string;
}

/** The rule's ordinary packets, as far as nft matches go. */
export interface NftPackets {
  family: Family;
  protocol: Protocol;
  /** As iptables prints them: "8080", "8000:8100", "53,80,8000:8100". */
  ports: string;
}

/** Tables iptables-nft keeps (what iptables-save lists): judged by the iptables model instead. */
const IPTABLES_TABLES: ReadonlySet<string> = new Set(TABLES);
/** nft families whose hooks see packets of an IP family. */
const FAMILIES: Record<Family, readonly string[]> = { 4: ["ip", "inet"], 6: ["ip6", "inet"] };

// ---------------------------------------------------------------- matching

/** The port values of a match's right side; undefined when they are not plain numbers. */
function portValues(right: Json, sets: (name: string) => Json[] | undefined): PortSpan[] | undefined {
  if (typeof right === "number") return [[right, right]];
  if (typeof right === "string" && right.startsWith("@")) {
    const elems = sets(right.slice(1));
    return elems && portValues({ set: elems }, sets);
  }
  if (isObject(right) && Array.isArray(right.range) && right.range.every((n) => typeof n === "number"))
    return [[right.range[0] as number, right.range[1] as number]];
  if (isObject(right) && Array.isArray(right.set)) {
    const out: PortSpan[] = [];
    for (const e of right.set) {
      const r = portValues(e, sets);
      if (!r) return undefined;
      out.push(...r);
    }
    return out;
  }
  return undefined;
}

/** Which share of `ours` lies in `theirs`. */
function portShare(ours: PortSpan[], theirs: PortSpan[]): Share {
  const inside = (p: number) => theirs.some(([a, b]) => a <= p && p <= b);
  let any = false;
  let every = true;
  for (const [lo, hi] of ours) {
    // the edges of their ranges split ours into pieces that are wholly in or out
    const cuts = new Set([lo, hi]);
    for (const [a, b] of theirs) for (const c of [a - 1, a, b, b + 1]) if (c >= lo && c <= hi) cuts.add(c);
    for (const c of cuts) {
      if (inside(c)) any = true;
      else every = false;
    }
  }
  return every ? ALL : any ? SOME : NONE;
}

/** The string values of a match's right side ("new", ["established","related"], {set: [...]}). */
function words(right: Json): string[] | undefined {
  if (typeof right === "string") return [right];
  const list = Array.isArray(right) ? right : isObject(right) && Array.isArray(right.set) ? right.set : undefined;
  return list?.every((w) => typeof w === "string") ? (list as string[]) : undefined;
}

/** A share from whether ordinary packets' one value is among the match's values. */
function valueShare(op: string, hit: boolean | undefined): Share {
  return hit === undefined ? SOME : opShare(op, hit ? ALL : NONE);
}

/** The share `==` (or `in`) takes is `s`; `!=` takes the rest; other operators (`<`, `&`...) some. */
const opShare = (op: string, s: Share): Share => (op === "!=" ? not(s) : op === "==" || op === "in" ? s : SOME);

/** One `match` expression against the ordinary packets. */
function matchShare(m: Record<string, Json>, p: NftPackets, sets: (name: string) => Json[] | undefined): Share {
  const op = typeof m.op === "string" ? m.op : "";
  const left = isObject(m.left) ? m.left : {};
  const right = m.right;
  const payload = isObject(left.payload) ? left.payload : undefined;
  const meta = isObject(left.meta) ? left.meta : undefined;
  const ct = isObject(left.ct) ? left.ct : undefined;
  const fib = isObject(left.fib) ? left.fib : undefined;
  const oneOf = (value: string) => valueShare(op, words(right)?.map(protocolName).includes(value));
  if (payload) {
    const proto = String(payload.protocol);
    const field = String(payload.field);
    if (proto === "tcp" || proto === "udp" || proto === "th") {
      if (proto !== "th" && proto !== p.protocol) return NONE; // the payload match implies its protocol
      if (field !== "dport") return SOME;
      const theirs = portValues(right, sets);
      if (!theirs) return SOME;
      const ours = portRanges(p.ports);
      // ports that are not numbers (never from iptables -S) are among none of theirs
      return opShare(op, ours ? portShare(ours, theirs) : NONE);
    }
    if (proto === "ip" || proto === "ip6") {
      if ((proto === "ip") !== (p.family === 4)) return NONE;
      if (field === "protocol" || field === "nexthdr") return oneOf(p.protocol);
      // A named address is an exception: ordinary packets come from (and to) no address a rule names.
      if (field === "saddr" || field === "daddr") return op === "!=" ? ALL : op === "==" ? NONE : SOME;
      return SOME;
    }
    if (["icmp", "icmpv6", "arp", "vlan", "sctp", "dccp", "udplite", "ah", "esp", "comp"].includes(proto)) return NONE;
    return SOME;
  }
  if (meta) {
    switch (String(meta.key)) {
      case "l4proto":
        return oneOf(p.protocol);
      case "nfproto":
        return oneOf(p.family === 4 ? "ipv4" : "ipv6");
      case "protocol":
        return oneOf(p.family === 4 ? "ip" : "ip6");
      case "iifname":
      case "iif": {
        // Ordinary packets arrive on some non-loopback interface no rule names.
        if (op === "!=") return ALL;
        return op === "==" || op === "in" ? NONE : SOME;
      }
      case "iiftype":
        return oneOf("ether");
      case "pkttype":
        return oneOf("host");
      default:
        return SOME;
    }
  }
  if (ct) {
    switch (String(ct.key)) {
      case "state":
        return oneOf("new");
      case "status": {
        // An ordinary packet carries no status bit a rule asks for (not DNATed, not expected...).
        return op === "!=" ? ALL : op === "==" || op === "in" ? NONE : SOME;
      }
      case "direction":
        return oneOf("original");
      default:
        return SOME;
    }
  }
  if (fib && String(fib.result) === "type" && asArray(fib.flags).join(",") === "daddr") return oneOf("local");
  return SOME;
}

// ---------------------------------------------------------------- walking a chain

/** nft statements that let the packet go on (the iptables targets that do: NON_TERMINATING in flags.ts). */
const PASSING_STATEMENTS = new Set(["counter", "log", "mangle", "notrack", "set", "ct helper", "meter", "dup", "flow"]);
/** Statements that match a share of packets (rate limits, quotas) or that nobody can read from here. */
const PARTIAL = new Set(["limit", "quota", "xt", "ct count", "synproxy", "secmark"]);

type Outcome =
  | { kind: "accept" | "drop"; by: string }
  | { kind: "return" }
  /** A terminal statement the model cannot judge (queue, a verdict map...). */
  | { kind: "unknown"; by: string };

interface Walk {
  outcome: Outcome;
  /** The first rule that may drop some of the packets the definite path does not. */
  doubt?: string;
}

function describe(c: NftChain, r: NftRule): string {
  const text = JSON.stringify(r.expr);
  return `${c.family} ${c.table} ${c.name} rule${r.handle === undefined ? "" : ` (handle ${r.handle})`} ${text.length > 160 ? `${text.slice(0, 157)}...` : text}`;
}

function walk(rs: NftRuleset, chain: NftChain, p: NftPackets, depth: number): Walk {
  const sets = (name: string) => rs.sets.get(key(chain.family, chain.table, name));
  let doubt: string | undefined;
  const doubtful = (why: string) => {
    doubt ??= why;
  };
  if (depth > 16) return { outcome: { kind: "unknown", by: `${chain.name}: jumps nested more than 16 deep` } };
  for (const rule of chain.rules) {
    let share: Share = ALL;
    let verdict: { kind: string; target?: string } | undefined;
    for (const e of rule.expr) {
      if (!isObject(e)) {
        share = both(share, SOME);
        continue;
      }
      const [name, body] = Object.entries(e)[0] ?? ["", undefined];
      if (name === "match" && isObject(body)) share = both(share, matchShare(body, p, sets));
      else if (name === "vmap" && isObject(body)) {
        const v = vmapVerdict(body, p, sets);
        share = both(share, v.share);
        verdict = v.verdict;
      } else if (VERDICT_NAMES.has(name)) verdict = verdictOf(e);
      else if (PARTIAL.has(name)) share = both(share, SOME);
      else if (!PASSING_STATEMENTS.has(name)) verdict = { kind: "unknown" };
      if (verdict || share === NONE) break;
    }
    if (share === NONE || !verdict) continue;
    const by = describe(chain, rule);
    const all = share === ALL;
    switch (verdict.kind) {
      case "accept":
        if (all) return { outcome: { kind: "accept", by }, doubt };
        break;
      case "drop":
      case "reject":
        if (all) return { outcome: { kind: "drop", by }, doubt };
        doubtful(by);
        break;
      case "return":
        if (all) return { outcome: { kind: "return" }, doubt };
        doubtful(by);
        break;
      case "jump":
      case "goto": {
        const target = rs.chains.find(
          (c) => c.family === chain.family && c.table === chain.table && c.name === verdict.target,
        );
        const sub: Walk = target
          ? walk(rs, target, p, depth + 1)
          : { outcome: { kind: "unknown", by: `${by}: no chain ${verdict.target}` } };
        if (sub.doubt) doubtful(sub.doubt);
        if (all) {
          if (sub.outcome.kind !== "return" || verdict.kind === "goto") return { outcome: sub.outcome, doubt };
        } else if (sub.outcome.kind !== "return" && sub.outcome.kind !== "accept") doubtful(sub.outcome.by);
        break;
      }
      default:
        if (all) return { outcome: { kind: "unknown", by }, doubt };
        doubtful(by);
    }
  }
  return { outcome: { kind: "return" }, doubt };
}

const VERDICT_NAMES = new Set(["accept", "drop", "reject", "return", "jump", "goto"]);

/** A verdict statement ({"accept": null}, {"jump": {"target": "web"}}); unknown for anything else. */
function verdictOf(e: Json): { kind: string; target?: string } {
  const [name, body] = isObject(e) ? (Object.entries(e)[0] ?? ["", undefined]) : ["", undefined];
  if (!VERDICT_NAMES.has(name)) return { kind: "unknown" };
  return isObject(body) && body.target !== undefined ? { kind: name, target: String(body.target) } : { kind: name };
}

/**
 * A verdict map (`ct state vmap { established : accept, invalid : drop }`, `tcp dport vmap { 22 :
 * accept }`): the entry that holds all of the packets gives the verdict; entries holding some of them
 * leave it unknown; none, and the rule does not match.
 */
function vmapVerdict(
  body: Record<string, Json>,
  p: NftPackets,
  sets: (name: string) => Json[] | undefined,
): { share: Share; verdict?: { kind: string; target?: string } } {
  const data = isObject(body.data) ? body.data.set : undefined;
  if (!Array.isArray(data)) return { share: SOME, verdict: { kind: "unknown" } };
  let partial = false;
  for (const entry of data) {
    if (!Array.isArray(entry) || entry.length !== 2) return { share: SOME, verdict: { kind: "unknown" } };
    const share = matchShare({ op: "==", left: body.key, right: entry[0] }, p, sets);
    if (share === ALL) return { share, verdict: verdictOf(entry[1]) };
    if (share === SOME) partial = true;
  }
  return partial ? { share: SOME, verdict: { kind: "unknown" } } : { share: NONE };
}

/** What one base chain does with the packets: its definite path, and the doubts on the way. */
function judge(rs: NftRuleset, chain: NftChain, p: NftPackets): NftJudgement {
  const where = { table: `${chain.family} ${chain.table}`, chain: chain.name, hook: chain.hook ?? "" };
  const { outcome, doubt } = walk(rs, chain, p, 0);
  const policy = chain.policy ?? "accept";
  const end =
    outcome.kind === "return"
      ? { kind: policy === "drop" ? "drop" : "accept", by: `the chain's policy ${policy}` }
      : outcome;
  const packets = `new ${p.protocol} connections to port ${p.ports.replaceAll(":", "-")}`;
  if (end.kind === "drop") return { ...where, verdict: "drops", why: `${end.by} drops ${packets}` };
  if (end.kind === "unknown")
    return { ...where, verdict: "may drop", why: `${end.by} decides ${packets} in a way this provider cannot read` };
  if (doubt)
    return {
      ...where,
      verdict: "may drop",
      why: `${doubt} may drop some ${packets} (accepted otherwise by ${end.by})`,
    };
  return { ...where, verdict: "accepts", why: `${end.by} accepts ${packets}` };
}

/**
 * Every base chain on `hook` outside iptables' own tables that sees packets of the family, in the
 * order the kernel runs them (priority), with what it does with the rule's ordinary packets.
 * `iptablesNft`: iptables is iptables-nft, so `ip filter` etc. are its tables (with iptables-legacy
 * they are someone's own nft tables and are judged like any other).
 * @example nftVerdicts(parseNft(json), { family: 4, protocol: "tcp", ports: "8080" }, { iptablesNft: true })
 *   // [{ table: "inet filter", chain: "input", hook: "input", verdict: "drops", why: "the chain's policy drop drops ..." }]
 */
export function nftVerdicts(
  rs: NftRuleset,
  packets: NftPackets,
  options: { iptablesNft: boolean; hook?: string },
): NftJudgement[] {
  const hook = options.hook ?? "input";
  return rs.chains
    .filter((c) => c.hook === hook && FAMILIES[packets.family].includes(c.family))
    .filter((c) => !(options.iptablesNft && c.family !== "inet" && IPTABLES_TABLES.has(c.table)))
    .sort((a, b) => (a.prio ?? 0) - (b.prio ?? 0))
    .map((c) => judge(rs, c, packets));
}
