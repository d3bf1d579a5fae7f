// A comment-only change, planned (pure): the rule with its new comment goes in where the recorded rule is,
// with its counters, and the recorded rule goes out by its exact text, in one restore (plan.ts swapLines).
import { findRule, ruleText } from "../rules";
import type { Ruleset } from "../rules";
import { HostError } from "./errors";
import { swapLines } from "./restore-lines";
import type { Family } from "./protocol";
import { withDeleted, withInserted } from "./ruleset-text";
import type { InsertRequest, Placement } from "./types";

/**
 * Plans request `req` (an insert that `rewrites` a recorded rule) in family `f`: the rule listed with
 * exactly the recorded text is swapped for the new text at its line, counters kept; the undo swaps it
 * back, with the same counters. Nothing to do where the new text is listed already and the old one is
 * not (an earlier try did it); refused where neither is listed.
 */
export function planRewrite(
  req: InsertRequest & { rewrites: Partial<Record<Family, string>> },
  f: Family,
  rs: Ruleset,
  ctx: { target: string },
): { planned?: Placement & { apply: string[]; undo: string[] }; next: Ruleset } {
  const { table, chain } = req;
  const from = req.rewrites[f]!;
  const to = ruleText(chain, req.specs[f]!);
  const found = findRule(rs, table, chain, from);
  if (!found) {
    if (findRule(rs, table, chain, to)) return { next: rs };
    throw new HostError(`the rule ${from} is not on ${ctx.target} (run pulumi refresh)`, {
      kind: "refusal",
      target: ctx.target,
    });
  }
  const counters = { packets: found.counters?.packets ?? 0n, bytes: found.counters?.bytes ?? 0n };
  const { line } = found;
  return {
    planned: {
      line,
      reason: `comment updated in place, counters kept (${counters.packets} packets, ${counters.bytes} bytes)`,
      rule: to,
      apply: swapLines(from, to, line, counters),
      undo: swapLines(to, from, line, counters),
    },
    next: withInserted(withDeleted(rs, table, chain, line), table, chain, line, to),
  };
}
