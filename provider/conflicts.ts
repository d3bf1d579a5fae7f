// Conflicts between the PortRules of one run: two rules on one host whose packets overlap with
// different verdicts, where nothing says which of them wins (whichever up inserted second would go
// above the other and decide their common packets, so the outcome would change from run to run).
// Found in Check, before anything changes: the engine checks every PortRule of the program in this
// one provider process, and each check compares the rule with the ones checked before it.
import { isUnknown, mayOverlap, parseSpec, renderRule, strictlyWithin } from "./rules";
import type { Family, Position, RuleInputs } from "./rules";
import { familyName } from "./host";
import { families } from "./state";

/** Process-wide: per host, each PortRule's latest checked inputs, by its identity (a replaced or updated
 * rule's new inputs take the place of its old ones: its old state never conflicts with its new self). */
const checked = new Map<string, Map<string, RuleInputs>>();

const hostOf = (r: RuleInputs) => `${r.connection.host}:${r.connection.port}`;
const idOf = (r: RuleInputs) => JSON.stringify(r.identity);

/** Where an explicit position puts a rule among the others: "top" is line 1, "bottom" after every line;
 * undefined for "auto" (placed by what the chain holds when it goes in). */
const rank = (p: Position): number | undefined =>
  p === "auto" ? undefined : p === "top" ? 1 : p === "bottom" ? Number.POSITIVE_INFINITY : p;

/**
 * The rule of the two that ends up above the other whichever of them goes in first; undefined when
 * that depends on the order. Either one's source lies strictly inside the other's (or the other has
 * none), the narrower is placed "auto" or "top" and the broader "auto" or "bottom": placement keeps a
 * rule that names a source above a broader one and never moves the broader above it; or both give
 * explicit, different positions ("top" = 1 < 2 < ... < "bottom"): the lower number is above.
 */
export function winnerOf(a: RuleInputs, b: RuleInputs): RuleInputs | undefined {
  const narrower = (x: RuleInputs, y: RuleInputs) =>
    strictlyWithin(x.source, y.source) &&
    (x.position === "auto" || x.position === "top") &&
    (y.position === "auto" || y.position === "bottom");
  if (narrower(a, b)) return a;
  if (narrower(b, a)) return b;
  const [ra, rb] = [rank(a.position), rank(b.position)];
  if (ra === undefined || rb === undefined || ra === rb) return undefined;
  return ra < rb ? a : b;
}

/** The families in which the two rules (of one host) may match a common packet with different verdicts. */
export function clashes(a: RuleInputs, b: RuleInputs): Family[] {
  if (a.action === b.action || a.table !== b.table || a.chain !== b.chain) return [];
  const theirs = families(b.ipVersion);
  return families(a.ipVersion).filter(
    (f) => theirs.includes(f) && mayOverlap(parseSpec(renderRule(a, f)), parseSpec(renderRule(b, f))),
  );
}

const described = (r: RuleInputs) =>
  `PortRule "${r.identity?.name}" (${r.action} ${r.protocol} ${r.ports}` +
  `${r.source ? ` from ${r.source}` : ""}${r.inInterface ? ` on ${r.inInterface}` : ""}, position ${r.position})`;

/** What a conflict says: both rules, in the same words whichever was checked first. */
export function conflictMessage(a: RuleInputs, b: RuleInputs, fams: Family[]): string {
  const [x, y] = [a, b].sort((p, q) => String(p.identity?.name).localeCompare(String(q.identity?.name)));
  return (
    `${described(x)} and ${described(y)} match the same packets on ${x.connection.host} ` +
    `(${x.table} ${x.chain}, ${fams.map(familyName).join(" and ")}) with different verdicts, and neither says ` +
    `which wins: whichever pulumi up inserted second would go above the other and decide those packets. ` +
    `Say which wins: give the exception a source inside the other's (it goes above it, for that source; ` +
    `position "auto" or "top" for it, "auto" or "bottom" for the other), or give both explicit, different ` +
    `positions ("top" = line 1 < 2 < ... < "bottom": the smaller one is above), or remove one of them`
  );
}

/**
 * Records a checked rule for this run, and says how it conflicts with a rule checked before it on the
 * same host, if it does. Rules with values still unknown (preview) are left out.
 */
export function conflictOf(inputs: RuleInputs): string | undefined {
  if (!inputs.identity || isUnknown(inputs)) return undefined;
  const host = hostOf(inputs);
  const rules = checked.get(host) ?? new Map<string, RuleInputs>();
  checked.set(host, rules);
  rules.set(idOf(inputs), inputs);
  for (const [id, other] of rules) {
    if (id === idOf(inputs)) continue;
    const fams = clashes(inputs, other);
    if (fams.length && !winnerOf(inputs, other)) return conflictMessage(inputs, other, fams);
  }
  return undefined;
}
