// What a refresh found changed on the host, in words: the rule gone (or one family of it), moved, not in
// effect and why, and its counters. Pure: the lifecycle (readRule) says it through the log.
import { familyName } from "./host";
import { families } from "./state";
import type { PortRuleState } from "./state";

/** What to tell the operator after a refresh: warnings, and what changed but is no cause for concern. */
export interface Drift {
  warnings: string[];
  info: string[];
}

/** The resource (its name in the program) and its rule, as each message starts. */
const subject = (s: PortRuleState) =>
  `${s.identity?.name ?? s.tag}: the rule on ${s.chain} of ${s.host} (${s.action} ${s.protocol} ${s.ports})`;

/** The families whose rule a refresh found gone, when it is gone from every family (`now` undefined). */
const allNames = (s: PortRuleState) => families(s.ipVersion).map(familyName);

/**
 * What changed between the state before a refresh (`before`) and what it records (`now`; undefined when
 * the rule is gone and refresh drops it from state).
 */
export function driftOf(before: PortRuleState, now: PortRuleState | undefined): Drift {
  const what = subject(before);
  if (!now)
    return {
      warnings: [
        `${what} is gone (${allNames(before).join(", ")}): deleted by hand or by another tool. ` +
          "Refresh drops it from state; the next pulumi up creates it again",
      ],
      info: [],
    };
  const warnings: string[] = [];
  if (now.missing.length)
    warnings.push(
      `${what} is missing in ${now.missing.join(", ")}: deleted by hand or by another tool. ` +
        "The next pulumi up replaces the rule",
    );
  for (const [name, line] of Object.entries(now.line)) {
    const was = before.line?.[name as keyof PortRuleState["line"]];
    if (was !== undefined && was !== line)
      warnings.push(
        `${what} moved from line ${was} to line ${line} (${name}): rules above it were inserted or deleted ` +
          `(inserted at line ${now.insertedAt[name as keyof PortRuleState["insertedAt"]]}: ${now.placement[name as keyof PortRuleState["placement"]]})`,
      );
  }
  for (const [name, by] of Object.entries(now.shadowedBy))
    warnings.push(`${what} is not in effect (${name}): ${by}; its packets are decided there, not by this rule`);
  return { warnings, info: countersChange(what, before, now) };
}

/** The counters' change since the state before, if any (they go back when the ruleset is reloaded); none
 * when a family is missing (its warning says why the totals fell). */
function countersChange(what: string, before: PortRuleState, now: PortRuleState): string[] {
  if (now.missing.length || (now.packets === before.packets && now.bytes === before.bytes)) return [];
  const total = `${now.packets} packets, ${now.bytes} bytes in all`;
  const delta = now.packets - (before.packets ?? 0);
  return [
    delta >= 0
      ? `${what} counted ${delta} packets since the last refresh: ${total}`
      : `${what} has fewer packets than at the last refresh (counters reset, or the ruleset reloaded): ${total}`,
  ];
}
