// Edits of iptables-save text, so that a batch can plan each insert and delete against the ruleset
// as the earlier operations of the same batch leave it. Pure. Lines are the listing's own lines: a
// newline inside a quoted comment does not end one.
import { listingLines } from "../rules";

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
