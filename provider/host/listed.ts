// What a listing shows of one recorded rule (pure): its line and counters, what decides its packets
// instead of it, where "auto" would put it now, and what is beside its chain.
import { shadowing, tagOf } from "../rules";
import type { Backend, HostContext, Rule, Ruleset } from "../rules";
import { judgeBeside } from "./beside";
import { placeableOf } from "./move";
import type { Family, Sections } from "./protocol";
import type { RuleState } from "./types";

/** The state of `found`, the rule listed in `rs` (family `f` of `sections`) in `table`, judged with what
 * the host has beside the table (`context`: its interfaces, nat, the other backend). */
export function listedRule(
  sections: Sections,
  f: Family,
  rs: Ruleset,
  table: string,
  found: Rule,
  context: HostContext,
  host: { backend: Backend; name: string },
): RuleState {
  const shadow = shadowing(rs, { table, chain: found.chain, line: found.line, ...context });
  const shadowTag = shadow && tagOf(shadow);
  return {
    line: found.line,
    rule: found.text,
    packets: found.counters?.packets ?? 0n,
    bytes: found.counters?.bytes ?? 0n,
    shadowedBy: shadow?.why,
    ...(shadow && { placeable: placeableOf(rs, table, found, context) }),
    ...(shadowTag && { shadowTag }),
    beside: judgeBeside(sections, f, { table, chain: found.chain, spec: found }, host),
  };
}
