// What else on the host decides a rule's packets, beside the iptables tables placement judges (pure):
// the host's own nftables tables (every base chain on the input hook must accept a packet). The listing
// snippets (the nft tables, and the nat tables placement follows: Docker's DNAT of a published port is
// judged there, with every other DNAT), and the judgement of one rule in one family from what they printed.
import { nftVerdicts, NftParseError, parseNft } from "../rules";
import { TABLES } from "../rules";
import type { Backend, Protocol, RuleSpec } from "../rules";
import { iptables, section } from "./protocol";
import type { Family, Section, Sections } from "./protocol";

/** Each listed section is parsed once, however many rules of the batch are judged against it. */
// Process-wide, keyed weakly: a section received never changes, and its entry goes with it.
const parsed = new WeakMap<Section, unknown>();
function once<T>(section: Section, parse: (text: string) => T): T {
  if (!parsed.has(section)) parsed.set(section, parse(section.out));
  return parsed.get(section) as T;
}

/** Exit status of the nft section on a host without nft. */
const NO_NFT = 127;

/** What of the host beside iptables' filter table a listing includes. */
export interface BesideWant {
  /** The nat table (PREROUTING's DNAT and REDIRECT, Docker's among them): for rules on INPUT. */
  nat?: boolean;
  /** The nft tables: for ACCEPT rules on INPUT (a DROP or REJECT in iptables drops whatever nft says). */
  nft?: boolean;
}

/** What a batch of rules (chain and target) needs of besideListing. */
export const besideWant = (rules: { chain: string; target?: string }[]): BesideWant => ({
  nat: rules.some((r) => r.chain === "INPUT"),
  nft: rules.some((r) => r.chain === "INPUT" && r.target === "ACCEPT"),
});

/** sed expressions that turn `iptables -S` lines into iptables-save's: "-P CHAIN POLICY" and "-N CHAIN"
 * become ":CHAIN POLICY [0:0]" and ":CHAIN - [0:0]". */
const AS_SAVE = String.raw`-e 's/^-P \([^ ]*\) \([^ ]*\)$/:\1 \2 [0:0]/' -e 's/^-N \([^ ]*\)$/:\1 - [0:0]/'`;

/** iptables-nft's own tables (iptables-save lists them): on such a host nft lists only the others. */
const IPTABLES_NFT_TABLES = TABLES.flatMap((t) => [`ip:${t}`, `ip6:${t}`]);

/**
 * The listing of what is beside iptables' filter table, only as much as `want` asks for: the nft
 * tables (where nft exists; on an iptables-nft host only those that are not iptables' own, which the
 * iptables model judges and which on a Kubernetes node hold every kube-proxy rule), one JSON document
 * per line; and per family the nat table in iptables-save's form. A legacy host lists nat only if it is
 * loaded (listing would load it). The tables are named by `nft list chains` ("table FAMILY NAME {"),
 * which fetches no rules; `nft list tables` fetches them all (0.7 s on a Kubernetes node).
 */
export function besideListing(families: readonly Family[], want: BesideWant = { nat: true, nft: true }): string {
  const nat = (f: Family) => {
    const ipt = `${iptables(f)} -w 5 -t nat -S`;
    return section(`nat${f}`, {
      script: `if [ "$(${iptables(f)} --version 2>/dev/null | grep -c nf_tables)" = 1 ] || grep -qx nat /proc/net/${f === 4 ? "ip" : "ip6"}_tables_names 2>/dev/null; then
  nat=$(${ipt}) || exit 1
  { echo '*nat'; printf '%s\\n' "$nat"; echo COMMIT; } | sed ${AS_SAVE}
fi`,
    });
  };
  const skip = IPTABLES_NFT_TABLES.join("|");
  const parts: string[] = [];
  if (want.nft)
    parts.push(
      section("nft", {
        script: `if ! command -v nft >/dev/null 2>&1; then exit ${NO_NFT}; fi
if [ "$(iptables --version 2>/dev/null | grep -c nf_tables)" = 1 ]; then
  tables=$(nft list chains) || exit 1
  printf '%s\\n' "$tables" | grep '^table ' | while read -r _ fam name _; do
    case "$fam:$name" in ${skip}|:) continue ;; esac
    # A table removed since it was listed (a firewall manager reloading) is not an error.
    nft -j list table "$fam" "$name" || ! nft list chains | grep -qxF "table $fam $name {" || exit 1
  done
else nft -j list ruleset; fi`,
      }),
    );
  if (want.nat) parts.push(...families.map(nat));
  return parts.join("\n");
}

/** What the host beside the chain does to one rule in one family. */
export interface Beside {
  /** Said at create (an nft chain that does not accept the port). */
  warnings: string[];
  /** Why the rule does not decide its ordinary packets (names the nft chain), if so. */
  blockedBy?: string;
}

/** The rule's protocol and ports as its spec carries them (tcp/udp with --dport, --dports or --ctorigdstport). */
function portsOf(spec: RuleSpec): { protocol: Protocol; ports: string } | undefined {
  const protocol = spec.match.protocol?.value;
  const ports = spec.match.dport?.value ?? spec.match.dports?.value;
  if ((protocol !== "tcp" && protocol !== "udp") || ports === undefined) return undefined;
  return { protocol, ports };
}

/**
 * Judges an ACCEPT of filter INPUT in one family against the nft tables besideListing printed. Other
 * chains and tables are not judged (FORWARD and OUTPUT do not see the input hook), nor DROP and REJECT
 * (a DROP or REJECT in iptables drops whatever nft says).
 * @example judgeBeside(sections, 4, { table: "filter", chain: "INPUT", spec }, { backend: "nf_tables", host: "web1" })
 */
export function judgeBeside(
  sections: Sections,
  f: Family,
  rule: { table: string; chain: string; spec: RuleSpec },
  host: { backend: Backend; name: string },
): Beside {
  const out: Beside = { warnings: [] };
  const ours = portsOf(rule.spec);
  const action = rule.spec.target;
  if (rule.table !== "filter" || rule.chain !== "INPUT" || !ours || !action) return out;

  const nft = sections.nft;
  if (action !== "ACCEPT" || !nft || nft.code === NO_NFT) return out;
  let found: string | undefined;
  if (nft.code !== 0)
    found = `nft: listing the ruleset failed (exit ${nft.code}: ${nft.err || nft.out}), so its tables may drop these packets`;
  else {
    try {
      const rs = once(nft, parseNft);
      const not = nftVerdicts(rs, { family: f, ...ours }, { iptablesNft: host.backend === "nf_tables" }).find(
        (j) => j.verdict !== "accepts",
      );
      if (not) found = `nft ${not.table} ${not.chain} (hook ${not.hook}) ${not.verdict}: ${not.why}`;
    } catch (e) {
      if (!(e instanceof NftParseError)) throw e;
      found = `nft: ${e.message}, so its tables may drop these packets`;
    }
  }
  if (found) {
    out.blockedBy ??= found;
    out.warnings.push(
      `this ACCEPT in iptables' ${rule.chain} does not open ${ours.protocol} ${ours.ports} on ${host.name} by itself: a packet must be accepted by every base chain on the input hook, and ${found}; accept the port in that nft chain too`,
    );
  }
  return out;
}
