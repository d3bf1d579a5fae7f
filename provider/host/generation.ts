// The nf_tables generation: a counter the kernel keeps per network namespace and raises by exactly one
// with every ruleset transaction committed there (any table, any family, any writer: iptables-nft,
// nft, firewalld). A copy of a table listed after the generation was read as G is the table at G
// (had anything been committed in between, the generation would be past G for good). So after a batch's
// n restores, a generation of G + n proves that nobody else changed anything since the copy was listed:
// the copy with the edited chains as listed now is the table, with no digest of the rest (which costs
// an iptables-save of the whole table: 0.14 s on a host with 20,000 rules, where this costs 4 ms).
// iptables-legacy changes do not touch it: the provider uses it only where iptables is nf_tables.
//
// No stock tool prints it (nft reads it for itself), so a constant Perl line asks the kernel
// (NFT_MSG_GETGEN over a netfilter netlink socket) and prints NFTA_GEN_ID; perl-base is part of every
// Debian and Ubuntu. Where Perl is missing or the answer is not the expected one, nothing is printed
// and the digest is used, as before.
import { section } from "./protocol";
import type { Sections } from "./protocol";

/** Prints the generation (a decimal number) and exits 0; prints nothing and exits 2 otherwise.
 * AF_NETLINK 16, SOCK_RAW 3, NETLINK_NETFILTER 12; NFT_MSG_GETGEN (10 << 8 | 16) with NLM_F_REQUEST,
 * answered by NFT_MSG_NEWGEN (10 << 8 | 15) whose first attribute is NFTA_GEN_ID (type 1, big-endian u32). */
const GETGEN =
  `command -v perl >/dev/null 2>&1 || exit 2; perl -e 'alarm 5; socket(my $s, 16, 3, 12) or exit 2; ` +
  `send($s, pack("LSSLLCCn", 20, 2576, 1, 1, 0, 0, 0, 0), 0) or exit 2; defined(recv($s, my $b, 8192, 0)) or exit 2; ` +
  `length($b) >= 28 && (unpack("LS", $b))[1] == 2575 && join(",", unpack("SS", substr($b, 20, 4))) eq "8,1" or exit 2; ` +
  `print unpack("N", substr($b, 24, 4)), "\\n"'`;

/** The section `name` that prints the generation; with `expect`, it exits 0 only where the generation
 * is `expect` (1 where it is another, 2 where it cannot be read). */
export function generationSection(name: string, expect?: number): string {
  if (expect === undefined) return section(name, { script: GETGEN });
  return section(name, { script: `g=$(${GETGEN}) || exit 2\necho "$g"\n[ "$g" = ${expect} ] || exit 1` });
}

/** The generation a section printed; undefined where it was not read. */
export function generationIn(answer: Sections, name: string): number | undefined {
  const s = answer[name];
  const text = s?.out.trim() ?? "";
  return s && s.code !== 2 && /^[0-9]{1,10}$/.test(text) ? Number(text) : undefined;
}

/** The generation read before a family's table was listed in `answer`: by a confirming listing
 * (sections same<f>, gen<f>) or by the listing that took the lock (section gen). */
export const listedGeneration = (answer: Sections, f: number): number | undefined =>
  generationIn(answer, `same${f}`) ?? generationIn(answer, `gen${f}`) ?? generationIn(answer, "gen");
