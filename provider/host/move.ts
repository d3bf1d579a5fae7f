// Where a rule that drifted out of effect would decide its packets again (pure): the line position
// "auto" chooses now for the listed rule, judged in the chain without it (plan.ts, planMove, moves it).
import { placeRule } from "../rules";
import type { Rule, Ruleset } from "../rules";
import { withDeleted } from "./ruleset-text";

/** Where position "auto" would put the listed rule `found` now, and what would still shadow it there. */
export function placeableOf(rs: Ruleset, table: string, found: Rule): { line: number; shadowedBy?: string } {
  const without = withDeleted(rs, table, found.chain, found.line);
  const p = placeRule(without, { table, chain: found.chain, rule: found, position: "auto" });
  return p.shadowedBy ? { line: p.line, shadowedBy: p.shadowedBy.why } : { line: p.line };
}
