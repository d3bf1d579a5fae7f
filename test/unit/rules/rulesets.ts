/** Rulesets and rules written the way the tools write them, for the placement tests (match, walk, place). */
import { parseRuleset, placeRule, type Position, type Ruleset } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";

export const tcp = (port: string, verdict: string, ...extra: string[]) => {
  const multi = port.includes(",");
  return [
    ...extra,
    "-p",
    "tcp",
    "-m",
    multi ? "multiport" : "tcp",
    multi ? "--dports" : "--dport",
    port,
    "-j",
    verdict,
  ];
};

/** An iptables-save text of the filter table: policies first, then chains and rules. */
export function save(policy: { INPUT?: string; FORWARD?: string }, chains: string[], rules: string[]): Ruleset {
  return parseRuleset(
    [
      "*filter",
      `:INPUT ${policy.INPUT ?? "ACCEPT"} [0:0]`,
      `:FORWARD ${policy.FORWARD ?? "ACCEPT"} [0:0]`,
      ":OUTPUT ACCEPT [0:0]",
      ...chains.map((c) => `:${c} - [0:0]`),
      ...rules,
      "COMMIT",
      "",
    ].join("\n"),
    { family: 4 },
  );
}

export const place = (rs: Ruleset, rule: string[], position?: Position, chain = "INPUT") =>
  placeRule(rs, { table: "filter", chain, rule, position });

/** The captured ufw ruleset (default deny, allow 22/tcp) with `ufw deny 8080/tcp` added the way ufw adds it. */
export function ufwWithDeny(family: 4 | 6): Ruleset {
  const u = family === 4 ? "ufw" : "ufw6";
  const text = readFamilyFile("nf_tables", family, "ufw/save.txt").replace(
    `-A ${u}-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n`,
    `-A ${u}-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n-A ${u}-user-input -p tcp -m tcp --dport 8080 -j DROP\n`,
  );
  return parseRuleset(text);
}

/** The ruleset back as iptables-save text (for re-parsing after edits). */
export function rulesText(rs: Ruleset): string {
  const out: string[] = [];
  for (const t of rs.tables.values()) {
    out.push(`*${t.name}`);
    for (const c of t.chains.values()) out.push(`:${c.name} ${c.policy ?? "-"} [0:0]`);
    for (const c of t.chains.values()) for (const r of c.rules) out.push(r.text);
    out.push("COMMIT");
  }
  return `${out.join("\n")}\n`;
}
