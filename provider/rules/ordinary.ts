/**
 * What the iptables model (./match, ./walk, ./place) and the nft model (./nft) both say about the
 * ordinary packets of a rule (README.md, `placeRule`): the first packet of a new connection
 * of its protocol to one of its ports, to one of the host's own unicast addresses, arriving on a
 * non-loopback interface, from a source address, port and interface that no rule names.
 */

/**
 * How much of the ordinary packets a match (or a rule's matches together) takes: none of them, some
 * (the model cannot tell, or only part of them), or all. Ordered, so `Math.min` is "and" and
 * `Math.max` is "or".
 */
export type Share = 0 | 1 | 2;
export const NONE: Share = 0;
export const SOME: Share = 1;
export const ALL: Share = 2;

/** The share the other packets make up: all for none, none for all, some for some. */
export const not = (s: Share): Share => (2 - s) as Share;
/** The share a match takes when it is negated (`! -s ...`, nft's `!=`), or as it is. */
export const negate = (s: Share, m: { negated: boolean }): Share => (m.negated ? not(s) : s);
/** Both matches: the smaller share. */
export const both = (...shares: Share[]): Share => Math.min(ALL, ...shares) as Share;
/** Either match: the larger share. */
export const either = (...shares: Share[]): Share => Math.max(NONE, ...shares) as Share;

/** An inclusive port range, [from, to]. */
export type PortSpan = [number, number];

/**
 * Port ranges as iptables prints them: "53,80,8000:8100" → [[53,53],[80,80],[8000,8100]]; an open end
 * ("8000:", ":1023") runs to 65535 or from 0, a reversed range is turned round. Undefined for names
 * or garbage.
 */
export function portRanges(v: string): PortSpan[] | undefined {
  const out: PortSpan[] = [];
  for (const part of v.split(",")) {
    const m = /^(\d*)(?::(\d*))?$/.exec(part);
    if (!m || (m[1] === "" && m[2] === undefined)) return undefined;
    const lo = m[1] === "" ? 0 : Number(m[1]);
    const hi = m[2] === undefined ? lo : m[2] === "" ? 65535 : Number(m[2]);
    out.push(lo <= hi ? [lo, hi] : [hi, lo]);
  }
  return out;
}

const PROTOCOL_NAMES: Readonly<Record<string, string>> = {
  "6": "tcp",
  "17": "udp",
  "1": "icmp",
  "58": "ipv6-icmp",
  icmpv6: "ipv6-icmp",
  "0": "all",
};

/** A protocol by its one name: "6" and "tcp" are tcp, "58" and "icmpv6" are ipv6-icmp, "0" is all. */
export const protocolName = (p: string): string => PROTOCOL_NAMES[p] ?? p;
