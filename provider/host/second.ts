// The other iptables backend's filter and nat tables, which the kernel applies beside those iptables uses
// (Debian 12 with ferm on legacy and fail2ban on nf_tables: iptables-nft-save then warns "iptables-legacy
// tables present"). Listed in the same round trip, without loading or creating anything.
import { parseRuleset } from "../rules";
import type { Backend, OtherBackend } from "../rules";
import { iptables, section } from "./protocol";
import type { Family, Sections } from "./protocol";

/**
 * Per family: on an nf_tables host the legacy filter and nat tables where the kernel has them loaded
 * (/proc/net/ip*_tables_names; listing another would load it), on a legacy host the tables
 * iptables-nft has (its -save lists only those that exist). Nothing where the tool is missing.
 */
export const secondScript = (families: readonly Family[]): string =>
  families
    .map((f) => {
      const p = iptables(f);
      return section(`second${f}`, {
        script: `if iptables --version 2>/dev/null | grep -q nf_tables; then
  command -v ${p}-legacy-save >/dev/null 2>&1 || exit 0
  for t in filter nat; do
    if grep -qx "$t" /proc/net/${f === 4 ? "ip" : "ip6"}_tables_names 2>/dev/null; then ${p}-legacy-save -t "$t" || exit 1; fi
  done
elif command -v ${p}-nft-save >/dev/null 2>&1; then exec ${p}-nft-save; fi
exit 0`,
      });
    })
    .join("\n");

/** The other backend's tables per family, where the listing found a filter or nat table there. */
export function secondOf(s: Sections, backend: Backend): Partial<Record<Family, OtherBackend>> | undefined {
  const other: Backend = backend === "nf_tables" ? "legacy" : "nf_tables";
  const found = ([4, 6] as const).flatMap((f) => {
    const out = s[`second${f}`];
    const ruleset = out?.code === 0 && /^\*(filter|nat)$/m.test(out.out) ? parseRuleset(out.out) : undefined;
    return ruleset ? [[f, { backend: other, ruleset }] as const] : [];
  });
  return found.length ? Object.fromEntries(found) : undefined;
}
