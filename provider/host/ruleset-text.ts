// Edits of iptables-save text, so that a batch can plan each insert and delete against the ruleset
// as the earlier operations of the same batch leave it. Pure. Lines are the listing's own lines: a
// newline inside a quoted comment does not end one.
import { listingLines, parseRuleset } from "../rules";
import type { Chain, Rule, Ruleset } from "../rules";

const ruleLine = (line: string) => line.replace(/^\[\d+:\d+\] /, "");
/** `-A CHAIN ...`, or a bare `-A CHAIN` (a rule with no match and no target, which counts packets). */
const isRuleOf = (line: string, chain: string) => line === `-A ${chain}` || line.startsWith(`-A ${chain} `);

/** Index (in lines) of the rules of `chain` in `table`, and where a new chain line would go. */
function locate(lines: string[], table: string, chain: string): { rules: number[]; commit: number } {
  let inTable = false;
  const rules: number[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.startsWith("*")) inTable = l.slice(1).trim() === table;
    else if (inTable && l.trim() === "COMMIT") return { rules, commit: i };
    else if (inTable && isRuleOf(ruleLine(l), chain)) rules.push(i);
  }
  throw new Error(`table ${table} is not in the listing`);
}

/** Inserts `-A chain spec` so that it becomes rule number `line` (1-based) of the chain. */
export function insertRuleText(save: string, table: string, chain: string, line: number, text: string): string {
  const lines = listingLines(save);
  const { rules, commit } = locate(lines, table, chain);
  const at = line <= rules.length ? rules[line - 1] : rules.length ? rules[rules.length - 1] + 1 : commit;
  lines.splice(at, 0, `[0:0] ${text}`);
  return lines.join("\n");
}

/** Removes rule number `line` (1-based) of the chain. */
export function deleteRuleText(save: string, table: string, chain: string, line: number): string {
  const lines = listingLines(save);
  const { rules } = locate(lines, table, chain);
  if (line < 1 || line > rules.length) throw new Error(`${chain} has no rule ${line}`);
  lines.splice(rules[line - 1], 1);
  return lines.join("\n");
}

// Edits of a parsed listing, so that a batch plans every operation with one parse of each listing:
// each edit returns a new Ruleset sharing every table and chain it does not touch (the listing of a
// Kubernetes node is not copied per operation); the edited chain is copied and renumbered.

/** The ruleset with `chain` of `table` replaced by `rules` (renumbered from 1). */
function withRules(rs: Ruleset, table: string, chain: Chain, rules: Rule[]): Ruleset {
  const t = rs.tables.get(table)!;
  const renumbered = rules.map((r, i) => (r.line === i + 1 ? r : { ...r, line: i + 1 }));
  const chains = new Map(t.chains).set(chain.name, { ...chain, rules: renumbered });
  return { tables: new Map(rs.tables).set(table, { name: table, chains }) };
}

function chainIn(rs: Ruleset, table: string, chain: string): Chain {
  const t = rs.tables.get(table);
  if (!t) throw new Error(`table ${table} is not in the listing`);
  return t.chains.get(chain) ?? { name: chain, rules: [] };
}

/** `rs` with `-A chain spec` inserted so that it becomes rule number `line` (1-based) of the chain. */
export function withInserted(rs: Ruleset, table: string, chain: string, line: number, text: string): Ruleset {
  const c = chainIn(rs, table, chain);
  const parsed = parseRuleset(`*${table}\n[0:0] ${text}\nCOMMIT\n`).tables.get(table)!.chains.get(chain)!.rules[0];
  const at = Math.min(Math.max(line, 1), c.rules.length + 1) - 1;
  return withRules(rs, table, c, [...c.rules.slice(0, at), parsed, ...c.rules.slice(at)]);
}

/** `rs` without rule number `line` (1-based) of the chain. */
export function withDeleted(rs: Ruleset, table: string, chain: string, line: number): Ruleset {
  const c = chainIn(rs, table, chain);
  if (line < 1 || line > c.rules.length) throw new Error(`${chain} has no rule ${line}`);
  return withRules(rs, table, c, [...c.rules.slice(0, line - 1), ...c.rules.slice(line)]);
}
