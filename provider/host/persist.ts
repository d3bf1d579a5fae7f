// Persistence with the host's own mechanism, as remote shell text (pure): which mechanism a host
// has, who owns its firewall policy, and the save that writes the live ruleset to the rules files.
// Rules created with `persist: false` are kept out of the files: their tags are listed in a file
// under /run, which disappears at reboot together with the rules themselves.
import type { Ruleset } from "../rules";
import { shellQuote } from "../ssh";
import { heredoc, iptables, section } from "./protocol";
import type { Family } from "./protocol";

export type Mechanism = "netfilter-persistent" | "iptables-services" | "iptables-save";

export interface Persistence {
  mechanism: Mechanism;
  /** Rules files: IPv4, IPv6. */
  files: [string, string];
}

/** Tags of live rules that must not be saved (persist: false). */
export const TRANSIENT = "/run/pulumi-iptables.transient";

/** Prints "<mechanism> <v4 file> <v6 file>": netfilter-persistent with its iptables plugins
 * (Debian, Ubuntu); the iptables-services layout (RHEL and relatives); otherwise the distribution's
 * rules files, written with iptables-save. */
export const DETECT = section("persistence", {
  script: `if command -v netfilter-persistent >/dev/null 2>&1 && ls /usr/share/netfilter-persistent/plugins.d 2>/dev/null | grep -q ip4tables; then
  echo netfilter-persistent /etc/iptables/rules.v4 /etc/iptables/rules.v6
elif [ -e /etc/sysconfig/iptables-config ] || [ -e /usr/libexec/iptables/iptables.init ]; then
  echo iptables-services /etc/sysconfig/iptables /etc/sysconfig/ip6tables
else
  id=$( . /etc/os-release 2>/dev/null; echo "$ID $ID_LIKE")
  case "$id" in
    *arch*) echo iptables-save /etc/iptables/iptables.rules /etc/iptables/ip6tables.rules ;;
    *alpine*) echo iptables-save /etc/iptables/rules-save /etc/iptables/rules6-save ;;
    *) echo iptables-save /etc/iptables/rules.v4 /etc/iptables/rules.v6 ;;
  esac
fi`,
});

/** Prints the name of a firewall manager that owns the policy, if one is active. */
export const OWNER = section("owner", {
  script: `if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then echo ufw
elif command -v firewall-cmd >/dev/null 2>&1 && [ "$(firewall-cmd --state 2>/dev/null)" = running ]; then echo firewalld
elif command -v nft >/dev/null 2>&1 && nft list tables 2>/dev/null | grep -q 'inet firewalld'; then echo firewalld
fi; true`,
});

export function parsePersistence(out: string): Persistence {
  const [mechanism, v4, v6] = out.trim().split(/\s+/);
  return { mechanism: mechanism as Mechanism, files: [v4, v6] };
}

/** The firewall manager that owns the policy: active (OWNER's answer) or present by its chains. */
export function ownerOf(ownerOut: string, rulesets: Ruleset[]): string | undefined {
  if (ownerOut.trim()) return ownerOut.trim();
  for (const rs of rulesets) {
    const chains = [...(rs.tables.get("filter")?.chains.keys() ?? [])];
    if (chains.some((c) => c.startsWith("ufw-") || c.startsWith("ufw6-"))) return "ufw";
    if (chains.some((c) => /^(INPUT_direct|IN_public|FWDI_public)$/.test(c))) return "firewalld";
  }
  return undefined;
}

export function ownerError(owner: string, target: string): string {
  const how =
    owner === "ufw"
      ? "add the rule with `ufw allow`/`ufw deny` (ufw saves it), or keep persist false for a runtime-only rule"
      : "add the rule with `firewall-cmd --permanent` (firewalld saves it), or keep persist false for a runtime-only rule";
  return `${owner} owns the firewall policy on ${target}: persist: true would make pulumi-iptables a second owner writing its rules files behind ${owner}'s back; ${how}`;
}

/**
 * Updates the list of transient tags, then (if `save`) saves the live ruleset with the host's
 * mechanism and checks the files: every `present` tag is in them, no `absent` one is. The files are written
 * atomically (temp file in the same directory, mode kept, rename).
 */
export interface PersistChange {
  /** Tags to add to / remove from the transient list. */
  transient: string[];
  persistent: string[];
  /** Save the ruleset (otherwise only the list is updated). */
  save: boolean;
  /** Tags each of the families' saved files must hold, and tags no saved file may hold. */
  present: { tag: string; families: Family[] }[];
  absent: string[];
}

export function saveScript(p: Persistence, change: PersistChange): string {
  const list = (tags: string[]) => heredoc(tags.join("\n"));
  const lines: string[] = [`T=${TRANSIENT}`, `touch "$T"`];
  if (change.transient.length) lines.push(`cat >> "$T" ${list(change.transient)}`);
  if (change.persistent.length)
    lines.push(`grep -vxF -f /dev/stdin "$T" > "$T.new" ${list(change.persistent)}`, `mv -f "$T.new" "$T"`);
  // In a subshell: its `exit` ends the save, not the conversation (and its lock).
  const script = () => section("persist", { script: `(\n${lines.join("\n")}\n)` });
  if (!change.save) return script();
  const [v4, v6] = p.files.map(shellQuote);
  // The transient list keeps only tags of rules that are live: a persist: false rule removed by hand
  // must not keep a later rule with its tag out of the files.
  lines.push(`live=$(mktemp) || exit 1
if { iptables-save; ip6tables-save; } > "$live" 2>/dev/null; then
  while IFS= read -r t; do [ -z "$t" ] || ! grep -qF -- "$t" "$live" || printf '%s\\n' "$t"; done < "$T" > "$T.new" && mv -f "$T.new" "$T"
fi
rm -f "$live"`);
  // write FILE COMMAND: COMMAND's output, without transient rules, atomically into FILE, with the
  // mode and owner of the file it replaces (cp -p: POSIX, unlike chmod/chown --reference).
  lines.push(`write() {
  d=$(dirname "$1"); mkdir -p "$d" || return 1
  tmp=$(mktemp "$d/.pulumi-iptables.XXXXXX") || return 1
  if [ -n "$2" ]; then $2 > "$tmp.all" || { rm -f "$tmp" "$tmp.all"; return 1; }; else cp "$1" "$tmp.all" || { rm -f "$tmp" "$tmp.all"; return 1; }; fi
  if [ -e "$1" ]; then cp -p "$1" "$tmp"; else chmod 0640 "$tmp"; fi || { rm -f "$tmp" "$tmp.all"; return 1; }
  # grep exits 1 when it selects no line (an empty ruleset, e.g. no ip6tables rules at all): not an error.
  if [ -s "$T" ]; then grep -vF -f "$T" "$tmp.all" > "$tmp"; [ $? -le 1 ]; else cat "$tmp.all" > "$tmp"; fi || { rm -f "$tmp" "$tmp.all"; return 1; }
  rm -f "$tmp.all"
  mv -f "$tmp" "$1" || { rm -f "$tmp"; return 1; }
}`);
  if (p.mechanism === "netfilter-persistent") {
    // netfilter-persistent exits 0 even when a plugin fails: the checks below are what count.
    lines.push(`netfilter-persistent save >&2`, `write ${v4} "" && write ${v6} ""`);
  } else {
    lines.push(`write ${v4} iptables-save && write ${v6} ip6tables-save`);
  }
  lines.push(`rc=$?; [ $rc -eq 0 ] || { echo "writing ${p.files.join(" and ")} failed" >&2; exit $rc; }`);
  // Each family's file must hold the rule of that family: one file holding it is not enough.
  for (const { tag, families } of change.present)
    for (const f of families) {
      const file = f === 4 ? v4 : v6;
      lines.push(
        `grep -qF ${shellQuote(tag)} ${file} 2>/dev/null || { echo "${p.files[f === 4 ? 0 : 1]} does not hold the ${iptables(f)} rule ${tag}" >&2; exit 1; }`,
      );
    }
  for (const tag of change.absent)
    lines.push(
      `! grep -qF ${shellQuote(tag)} ${v4} ${v6} 2>/dev/null || { echo "the rules files still hold ${tag}" >&2; exit 1; }`,
    );
  return script();
}
