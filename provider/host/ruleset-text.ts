// Edits of a parsed listing, so that a batch plans every operation with one parse of each listing:
// each edit returns a new Ruleset sharing every table and chain it does not touch (the listing of a
// Kubernetes node is not copied per operation); the edited chain is copied and renumbered.
import { editedFrom, parseRuleset } from "../rules";
import type { Chain, Rule, Ruleset } from "../rules";

/** The ruleset with `chain` of `table` replaced by `rules` (renumbered from 1). */
function withRules(rs: Ruleset, table: string, chain: Chain, rules: Rule[]): Ruleset {
  const t = rs.tables.get(table)!;
  const renumbered = rules.map((r, i) => (r.line === i + 1 ? r : { ...r, line: i + 1 }));
  const chains = new Map(t.chains).set(chain.name, { ...chain, rules: renumbered });
  return { tables: new Map(rs.tables).set(table, editedFrom({ ...t, chains }, t)) };
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
