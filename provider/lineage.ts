// What defines a rule on the host, and the deterministic lineage of the unique parts of its tag.
import { createHash } from "node:crypto";
import type { RuleInputs } from "./rules";

/** Inputs that define the rule on the host: a change to any of them replaces it. Its comment does not: a
 * comment-only change rewrites it in place (lifecycle.ts, updateRule), under the same tag. */
export const RULE_DEFINING = [
  "table",
  "chain",
  "protocol",
  "ports",
  "action",
  "rejectWith",
  "source",
  "inInterface",
  "ipVersion",
  "position",
] as const;

/** Inputs or outputs as the engine hands them over: not validated yet. */
export type Props = Record<string, unknown> & { connection?: Record<string, unknown> };

export const hostOf = (inputs: Props): unknown => inputs.connection?.host;

/** Do both define the same rule on the same host? */
export const sameRule = (a: Props, b: Props) =>
  hostOf(a) === hostOf(b) && RULE_DEFINING.every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]));

const hash12 = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("hex").slice(0, 12);

/** The unique part of a new rule's tag: a hash of its identity, host and what defines it (not random),
 * so preview and up agree on it. */
export function uniqueOf(inputs: RuleInputs): string {
  const { urn: _, ...identity } = inputs.identity ?? {}; // where messages go, not who owns the rule
  const owner = inputs.identity && identity;
  return hash12([owner, inputs.connection?.host, ...RULE_DEFINING.map((k) => inputs[k])]);
}

/** The next unique part of a rule's lineage: derived from the one before, so the same on every try. */
export const successorOf = (unique: string) => hash12(["replacement of", unique]);

/** How many generations of a rule's lineage a create looks for on the host. */
const LINEAGE = 4;

/** The unique parts a create may use: the derived one first, then its successors. A rule found on
 * the host with one of them and the same spec is this resource's own (left by a failed earlier try,
 * or the rule an identical replacement replaces: the engine checks a `--replace` without its old
 * inputs, so the two cannot be told apart): the create takes it over in place under the next unused
 * one. So a retry never duplicates a rule, and a replacement never shares the tag it replaces. */
export function lineage(unique: string): string[] {
  const out = [unique];
  while (out.length < LINEAGE) out.push(successorOf(out[out.length - 1]));
  return out;
}
