// The host's own addresses, read in the listing's round trip from /proc as busybox hosts have it (no
// `ip`): the IPv4 addresses the kernel's local routing table holds (/proc/net/fib_trie: an address line
// `|-- 198.18.0.2` followed by its `/32 host LOCAL` entry) and the IPv6 addresses of /proc/net/if_inet6.
// Only parsed: nothing of it becomes script text.
import ipaddr from "ipaddr.js";
import { section } from "./protocol";
import type { Family } from "./protocol";

/** The sed program that prints the address line of each of fib_trie's local entries: it keeps the last
 * address line and prints it at a `/32 host LOCAL` entry (POSIX sed; busybox's too). */
export const FIB_LOCAL = "/|--/h;/\\/32 host LOCAL/{x;p;}";

/** fib_trie's local addresses, then if_inet6 as it is. Read-only, constant text, the same under dash,
 * busybox ash and bash. */
export const ADDRESSES_SCRIPT = `sed -n '${FIB_LOCAL}' /proc/net/fib_trie 2>/dev/null; cat /proc/net/if_inet6 2>/dev/null; exit 0`;

/** The listing's section of the host's addresses. */
export const ADDRESSES = section("addresses", { script: ADDRESSES_SCRIPT });

const FIB_ADDRESS = /^\s*\|--\s+(\d{1,3}(?:\.\d{1,3}){3})\s*$/;
/** address, ifindex, prefix length, scope, flags, interface. */
const IF_INET6 = /^([0-9a-f]{32})\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+$/i;
/** IFA_F_DADFAILED | IFA_F_TENTATIVE: the address does not take packets (yet). */
const NOT_USABLE = 0x08 | 0x40;

function ipv6Of(line: string): string | undefined {
  const m = IF_INET6.exec(line.trim());
  // scope 0 is global (ULAs included): not loopback (0x10), not link-local (0x20)
  if (!m || Number.parseInt(m[2], 16) !== 0 || Number.parseInt(m[3], 16) & NOT_USABLE) return undefined;
  return ipaddr.parse(m[1].match(/.{4}/g)!.join(":")).toString();
}

function ipv4Of(line: string): string | undefined {
  const m = FIB_ADDRESS.exec(line);
  if (!m || !ipaddr.IPv4.isValidFourPartDecimal(m[1])) return undefined;
  return m[1].startsWith("127.") ? undefined : m[1];
}

/**
 * The host's unicast addresses per family, as the ADDRESSES section printed them: not loopback, not
 * link-local; undefined for a family none was read for.
 * @example parseAddresses("  |-- 198.18.0.2\nfd000018000000000000000000000002 02 40 00 80 eth0\n")
 *   // { 4: ["198.18.0.2"], 6: ["fd00:18::2"] }
 */
export function parseAddresses(text: string): Partial<Record<Family, string[]>> {
  const found: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
  for (const line of text.split("\n")) {
    const v4 = ipv4Of(line);
    if (v4) found[4].add(v4);
    const v6 = ipv6Of(line);
    if (v6) found[6].add(v6);
  }
  return Object.fromEntries(
    ([4, 6] as const).filter((f) => found[f].size).map((f) => [f, [...found[f]]] as const),
  ) as Partial<Record<Family, string[]>>;
}
