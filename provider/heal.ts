// Healing drift (pure): whether `pulumi up` moves a rule that a refresh found out of effect back where
// it decides its packets, or only says why it does not. The same state gives the same words every run.
import { TAG_PREFIX } from "./rules";
import type { FamilyName } from "./rules";
import type { PortRuleState } from "./state";

/** What up does about a rule out of effect: move these families (and why), or only report why not. */
export type Heal = { move: FamilyName[]; reason: string } | { report: string };

/** A shadowing rule's owner, in words: the PortRule that carries `tag` (this stack's or another's). */
function ownerOf(tag: string, s: PortRuleState): string {
  const [project, stack, name] = tag.slice(TAG_PREFIX.length).split("/");
  const ours = project === s.identity?.project && stack === s.identity?.stack;
  return ours ? `PortRule "${name}" of this stack` : `PortRule "${name}" of stack ${project}/${stack}`;
}

/**
 * What up does about `s`, the state after a refresh; undefined when the rule is in effect in every family
 * (or a family is missing: up replaces it then). Moved: a position "auto" rule with heal on, per family
 * where a line of its chain makes it effective now and the rule that shadows it is not a PortRule's.
 * Reported: explicit positions, heal: false, a rule shadowed by another PortRule's (not fought over),
 * and families where no line makes it effective (Docker's DNAT, an nft chain, a chain nothing reaches).
 */
export function healOf(s: PortRuleState): Heal | undefined {
  const shadowed = Object.entries(s.shadowedBy ?? {}) as [FamilyName, string][];
  if (!shadowed.length || s.missing?.length) return undefined;
  const who = `${s.identity?.name ?? s.tag}: ${s.chain} of ${s.host} (${s.action} ${s.protocol} ${s.ports})`;
  const why = (n: FamilyName, by: string) => `${by} above it (${n})`;
  if (s.position !== "auto")
    return {
      report: `${who} is not in effect: ${shadowed.map(([n, by]) => why(n, by)).join("; ")}; not moved: position ${s.position} is the program's`,
    };
  const move: FamilyName[] = [];
  const said: string[] = [];
  for (const [n, by] of shadowed) {
    const tag = s.shadowTag?.[n];
    const to = s.placeable?.[n];
    if (tag) said.push(`${why(n, by)}: that rule belongs to ${ownerOf(tag, s)}, not fought over`);
    else if (!s.placeable)
      said.push(`${why(n, by)}: where it would go is not in state yet (run pulumi refresh, or up --refresh)`);
    else if (!to || to.shadowedBy)
      said.push(`${why(n, by)}: no line of ${s.chain} makes it effective (${to?.shadowedBy ?? by})`);
    else {
      move.push(n);
      said.push(`${why(n, by)}: up puts it at line ${to.line}`);
    }
  }
  if (move.length && s.heal !== false) return { move, reason: `${who} moves: ${said.join("; ")}` };
  const off = move.length ? "; not moved: heal is false" : "; not moved";
  return { report: `${who} is not in effect: ${said.join("; ")}${off}` };
}
