// Adopting a rule made by hand (pure): the untagged twin of a rule in its chain, and the
// iptables-restore lines that tag it in place, keeping its line and its counters.
import { chainOf, tagOf } from "../rules";
import type { Ruleset } from "../rules";

/** An untagged rule that is exactly the rule being created, as the listing shows it. */
export interface Twin {
  line: number;
  /** As `iptables -S` prints it. */
  rule: string;
  packets: number;
  bytes: number;
}

/**
 * The first rule of `chain` whose text is exactly `twin` (the rule without its tag) and that carries
 * no identity tag: a rule made by hand, or by another tool.
 * @example findTwin(rs, "filter", "INPUT", "-A INPUT -p tcp -m tcp --dport 8080 -j DROP")
 *   // { line: 1, rule: "-A INPUT -p tcp -m tcp --dport 8080 -j DROP", packets: 3, bytes: 180 }
 */
export function findTwin(rs: Ruleset, table: string, chain: string, twin: string): Twin | undefined {
  const r = chainOf(rs, table, chain)?.rules.find((x) => x.text === twin && !tagOf(x));
  return r && { line: r.line, rule: r.text, packets: r.counters?.packets ?? 0, bytes: r.counters?.bytes ?? 0 };
}

/** `-A CHAIN spec` → `-R CHAIN line -c packets bytes spec`: replaces rule `line` and sets its counters. */
export const asReplace = (text: string, line: number, c: { packets: number; bytes: number }) =>
  text.replace(/^-A (\S+) /, `-R $1 ${line} -c ${c.packets} ${c.bytes} `);

/** The restore line that tags the twin in place, and the one that undoes it. */
export function adoptLines(twin: Twin, tagged: string): { apply: string; undo: string } {
  return { apply: asReplace(tagged, twin.line, twin), undo: asReplace(twin.rule, twin.line, twin) };
}
