// What each lifecycle verb asks of the host agent: the change requests, built from a rule's inputs or
// state, with the guards that apply to them.
import { renderRule, ruleText } from "./rules";
import type { Family, RuleInputs } from "./rules";
import type { DeleteRequest, MoveRequest, PersistRequest } from "./host";
import { familyName } from "./host";
import type { Logger } from "./ssh";
import { deleteGuard, insertGuard, mayLockOut } from "./guards";
import { families, givenBack, handMadeOf, recordedRules, twinOf } from "./state";
import type { PortRuleState } from "./state";

/** What a create asks of the host: the rule, tagged `tag`, inserted in these families where placement
 * says, guarded, commit-confirmed, and saved when `persist` is set. */
export function insertRequest(inputs: RuleInputs, fams: Family[], tag: string, log: Logger) {
  return {
    kind: "insert" as const,
    table: inputs.table,
    chain: inputs.chain,
    tag,
    specs: Object.fromEntries(fams.map((f) => [f, renderRule(inputs, f, tag)])),
    position: inputs.position,
    persist: inputs.persist,
    guard: insertGuard(inputs, log),
    twins: Object.fromEntries(fams.map((f) => [f, twinOf(inputs, f)])),
    adopt: inputs.adopt,
    freshConfirm: mayLockOut(inputs, "insert"),
    rollbackAfter: inputs.rollbackAfter,
  };
}

/** What a delete asks of the host: the recorded rule removed from each of its families (an adopted one
 * given back instead), guarded, commit-confirmed, and the boot files saved when `persist` is set. */
export function deleteRequest(props: PortRuleState, log: Logger): DeleteRequest & { rollbackAfter?: number } {
  return {
    kind: "delete",
    table: props.table,
    chain: props.chain,
    families: families(props.ipVersion),
    tag: props.tag,
    rules: recordedRules(props),
    persist: props.persist,
    guard: deleteGuard(props, log),
    freshConfirm: mayLockOut(props, "delete"),
    giveBack: givenBack(props),
    rollbackAfter: props.rollbackAfter,
  };
}

/** What a changed persist flag asks of the host: the ruleset saved with the rule in (`persist`) or out. */
export function persistRequest(olds: PortRuleState, persist: boolean): PersistRequest {
  return {
    kind: "persist",
    table: olds.table,
    chain: olds.chain,
    families: families(olds.ipVersion),
    tag: olds.tag,
    rules: recordedRules(olds),
    persist,
    handMade: handMadeOf(olds),
  };
}

/** What a comment-only change asks of the host, or nothing when no family's recorded rule differs from
 * the rule rendered with the new comment under its own tag: each such rule swapped for the new one at its
 * line, counters kept, exact-text guarded, commit-confirmed (host/rewrite.ts); no lockout guard (the
 * verdict does not change). Saved as before when persist is set. */
export function rewriteRequest(state: PortRuleState, comment: string | undefined) {
  const recorded = recordedRules(state);
  const inputs = { ...state, comment };
  const specs = Object.fromEntries(families(state.ipVersion).map((f) => [f, renderRule(inputs, f, state.tag)]));
  const rewrites = Object.fromEntries(
    families(state.ipVersion).flatMap((f) =>
      recorded[f] !== undefined && recorded[f] !== ruleText(state.chain, specs[f]) ? [[f, recorded[f]]] : [],
    ),
  ) as Partial<Record<Family, string>>;
  if (!Object.keys(rewrites).length) return undefined;
  const rules = { ...state.rules };
  for (const f of families(state.ipVersion)) rules[familyName(f)] = ruleText(state.chain, specs[f]);
  return {
    kind: "insert" as const,
    table: state.table,
    chain: state.chain,
    tag: state.tag,
    specs: Object.fromEntries(Object.keys(rewrites).map((f) => [f, specs[Number(f) as Family]])),
    position: state.position,
    persist: state.persist,
    rewrites,
    // An adopted rule lent with persist: false: the boot files keep the hand-made rule in place of the new text.
    handMade: state.persist ? undefined : handMadeOf({ ...state, rules }),
    rollbackAfter: state.rollbackAfter,
  };
}

/** What healing asks of the host: the recorded rule of these families moved to where position "auto"
 * puts it now (heal.ts says which), guarded as an insert there, commit-confirmed, saved when persisted. */
export function moveRequest(
  props: PortRuleState,
  fams: Family[],
  log: Logger,
): MoveRequest & { rollbackAfter?: number } {
  const rules = recordedRules(props);
  return {
    kind: "move",
    table: props.table,
    chain: props.chain,
    families: fams,
    tag: props.tag,
    rules: Object.fromEntries(fams.map((f) => [f, rules[f]])),
    persist: props.persist,
    guard: insertGuard(props, log),
    freshConfirm: mayLockOut(props, "insert"),
    rollbackAfter: props.rollbackAfter,
  };
}
