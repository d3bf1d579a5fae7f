// Adopting a rule made by hand (pure): the untagged twin of a rule in its chain (plan.ts swapLines
// tags it in place, keeping its line and its counters).
import { chainOf, tagOf } from "../rules";
import type { Ruleset } from "../rules";

/** An untagged rule that is exactly the rule being created, as the listing shows it. */
export interface Twin {
  line: number;
  /** As `iptables -S` prints it. */
  rule: string;
  /** Its counters, exact (64-bit). */
  packets: bigint;
  bytes: bigint;
}

/**
 * The first rule of `chain` whose text is exactly `twin` (the rule without its tag) and that carries
 * no identity tag: a rule made by hand, or by another tool.
 * @example findTwin(rs, "filter", "INPUT", "-A INPUT -p tcp -m tcp --dport 8080 -j DROP")
 *   // { line: 1, rule: "-A INPUT -p tcp -m tcp --dport 8080 -j DROP", packets: 3n, bytes: 180n }
 */
export function findTwin(rs: Ruleset, table: string, chain: string, twin: string): Twin | undefined {
  const r = chainOf(rs, table, chain)?.rules.find((x) => x.text === twin && !tagOf(x));
  return r && { line: r.line, rule: r.text, packets: r.counters?.packets ?? 0n, bytes: r.counters?.bytes ?? 0n };
}
