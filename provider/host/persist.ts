// Persistence with the host's own mechanism, as remote shell text (pure): which mechanism a host
// has, who owns its firewall policy, and the save that writes the live ruleset to the rules files.
// Rules created with `persist: false` are kept out of the files: their tags are listed in a file
// under /run, which disappears at reboot together with the rules themselves. A hand-made rule adopted
// with `persist: false` is lent to its PortRule for the runtime only: the files go on holding it as
// the hand-made rule it was (untagged), as a save before the adoption would have written it, so
// adopting never takes a rule out of the boot files (destroy gives it back: plan.ts, giveBack).
import type { Ruleset } from "../rules";
import { shellQuote } from "../ssh";
import { FAMILIES, heredoc, iptables, section } from "./protocol";
import type { Family } from "./protocol";

export type Mechanism = "netfilter-persistent" | "iptables-services" | "iptables-save";

export interface Persistence {
  mechanism: Mechanism;
  /** Rules files: IPv4, IPv6 (a family's is `fileOf`). */
  files: [string, string];
}

/** The rules file of a family. */
export const fileOf = (files: Persistence["files"], f: Family) => files[f === 4 ? 0 : 1];

/** Tags of live rules that must not be saved (persist: false). */
export const TRANSIENT = "/run/pulumi-iptables.transient";

/** Rules adopted with persist: false, one a line: the tagged rule, a tab, the hand-made rule the
 * files hold in its place. */
export const ADOPTED = "/run/pulumi-iptables.adopted";

/** The boot files as they were before the last save, put back when that save is refused. */
export const PREVIOUS = "/run/pulumi-iptables.previous";

/** An adopted rule (as `iptables -S` prints it, tagged) and the hand-made rule it was. */
export interface HandMade {
  rule: string;
  handMade: string;
}

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
elif command -v nft >/dev/null 2>&1 && nft list chains 2>/dev/null | grep -q '^table inet firewalld '; then echo firewalld
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
  /** Tags to add to / remove from the transient list (and, for `persistent`, the adopted list). */
  transient: string[];
  persistent: string[];
  /** Rules adopted with persist: false, for the adopted list. */
  handMade?: HandMade[];
  /** Save the ruleset (otherwise only the list is updated). */
  save: boolean;
  /** Tags each of the families' saved files must hold, and tags no saved file may hold. */
  present: { tag: string; families: Family[] }[];
  absent: string[];
}

export function saveScript(p: Persistence, change: PersistChange, readBack?: Family): string {
  const list = (tags: string[]) => heredoc(tags.join("\n"));
  const lines: string[] = [`T=${TRANSIENT}`, `touch "$T"`];
  if (change.save || change.handMade?.length || change.persistent.length) lines.push(`A=${ADOPTED}`, `touch "$A"`);
  // Every list update is checked: a list cut short (a full /run) would let other stacks' persist: false
  // rules into the boot files. grep exits 1 when it keeps no line, which is no error here.
  const without = (file: string, grep: string) =>
    `{ ${grep} -f /dev/stdin "${file}" > "${file}.new" ${list(change.persistent)}\n[ $? -le 1 ]; } && mv -f "${file}.new" "${file}" || exit 1`;
  const appended = (file: string, items: string[]) => `cat >> "${file}" ${list(items)}\n[ $? = 0 ] || exit 1`;
  if (change.transient.length) lines.push(appended("$T", change.transient));
  if (change.handMade?.length)
    lines.push(
      appended(
        "$A",
        change.handMade.map((h) => `${h.rule}\t${h.handMade}`),
      ),
    );
  if (change.persistent.length) lines.push(without("$T", "grep -vxF"), without("$A", "grep -vF"));
  // In a subshell: its `exit` ends the save, not the conversation (and its lock).
  const script = () => section("persist", { script: `(\n${lines.join("\n")}\n)` });
  if (!change.save) return script();
  const [v4, v6] = p.files.map(shellQuote);
  // The files as they were, for a save that is refused (unsaveScript).
  lines.push(
    `P=${PREVIOUS}; rm -rf "$P" && mkdir -p "$P" || exit 1`,
    `[ ! -e ${v4} ] || cp -p ${v4} "$P/4" || exit 1`,
    `[ ! -e ${v6} ] || cp -p ${v6} "$P/6" || exit 1`,
  );
  // The transient list keeps only tags of rules that are live: a persist: false rule removed by hand
  // must not keep a later rule with its tag out of the files.
  lines.push(`live=$(mktemp) || exit 1
if { iptables-save; ip6tables-save; } > "$live" 2>/dev/null; then
  while IFS= read -r t; do [ -z "$t" ] || ! grep -qF -- "$t" "$live" || printf '%s\\n' "$t"; done < "$T" > "$T.new" && mv -f "$T.new" "$T" || exit 1
  awk -F '\t' 'NR == FNR { live[$0]; next } $1 in live' "$live" "$A" > "$A.new" && mv -f "$A.new" "$A" || exit 1
fi
rm -f "$live"`);
  // write FILE COMMAND: COMMAND's output, without transient rules, atomically into FILE, with the
  // mode and owner of the file it replaces (cp -p: POSIX, unlike chmod/chown --reference).
  lines.push(`write() {
  d=$(dirname "$1"); mkdir -p "$d" || return 1
  tmp=$(mktemp "$d/.pulumi-iptables.XXXXXX") || return 1
  if [ -n "$2" ]; then $2 > "$tmp.all" || { rm -f "$tmp" "$tmp.all"; return 1; }; else cp "$1" "$tmp.all" || { rm -f "$tmp" "$tmp.all"; return 1; }; fi
  # An adopted rule with persist: false goes in as the hand-made rule it was (before the transient
  # filter, which would drop it with the tag of its other family's inserted rule).
  if [ -s "$A" ]; then awk -F '\t' 'NR == FNR { m[$1] = $2; next } $0 in m { $0 = m[$0] } { print }' "$A" "$tmp.all" > "$tmp.map" && mv -f "$tmp.map" "$tmp.all"; fi || { rm -f "$tmp" "$tmp.all" "$tmp.map"; return 1; }
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
      lines.push(
        `grep -qF ${shellQuote(tag)} ${shellQuote(fileOf(p.files, f))} 2>/dev/null || { echo "${fileOf(p.files, f)} does not hold the ${iptables(f)} rule ${tag}" >&2; exit 1; }`,
      );
    }
  for (const tag of change.absent)
    lines.push(
      `! grep -qF ${shellQuote(tag)} ${v4} ${v6} 2>/dev/null || { echo "the rules files still hold ${tag}" >&2; exit 1; }`,
    );
  const read = readBack && section("boot", ["sed", "-n", "/^\\*filter/,/^COMMIT/p", fileOf(p.files, readBack)]);
  return read ? `${script()}\nif [ "$c" = 0 ]; then\n${read}\nfi` : script();
}

/** Puts the boot files back as they were before the last save (absent if they were absent). */
export function unsaveScript(p: Persistence): string {
  const put = FAMILIES.map((f) => {
    const file = fileOf(p.files, f);
    return `if [ -e "$P/${f}" ]; then cp -p "$P/${f}" ${shellQuote(`${file}.pulumi-iptables`)} && mv -f ${shellQuote(`${file}.pulumi-iptables`)} ${shellQuote(file)}; else rm -f ${shellQuote(file)}; fi || exit 1`;
  });
  return section("unsave", { script: [`P=${PREVIOUS}`, `[ -d "$P" ] || exit 1`, ...put].join("\n") });
}
