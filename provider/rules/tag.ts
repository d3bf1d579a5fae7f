// The identity tag a created rule carries in its comment: how it is made, and how a listed rule's is read.
import type { RuleSpec } from "./parse";

/** The identity tag's fixed prefix. */
export const TAG_PREFIX = "pulumi-iptables:";
/** A tag never exceeds this many bytes (project/stack/name are shortened to fit). */
export const MAX_TAG_BYTES = 128;
/** iptables keeps at most 255 bytes of comment; the user's part shares them with a space and the tag. */
export const MAX_COMMENT_BYTES = 255 - 1 - MAX_TAG_BYTES;

const SAFE = /[^A-Za-z0-9._-]/g;

/**
 * The identity tag of one created rule: `pulumi-iptables:<project>/<stack>/<name>/<unique>`.
 * Each part is reduced to `[A-Za-z0-9._-]` (others become `_`), and the longest parts are cut
 * until the tag fits in MAX_TAG_BYTES. `unique` is the part fixed at create (the resource id): not
 * random, but a hash of the rule's identity, host and defining inputs, or one of its successors
 * (provider/lineage.ts: uniqueOf, successorOf, lineage).
 * @example makeTag({ project: "web", stack: "prod", name: "allow-ssh" }, "k3x9q2ab")
 *   // "pulumi-iptables:web/prod/allow-ssh/k3x9q2ab"
 */
export function makeTag(identity: { project: string; stack: string; name: string }, unique: string): string {
  if (!/^[A-Za-z0-9]{4,32}$/.test(unique))
    throw new Error(`tag unique part must be 4-32 letters or digits, got ${JSON.stringify(unique)}`);
  const parts = [identity.project, identity.stack, identity.name].map((p) =>
    (p.replace(SAFE, "_") || "_").slice(0, MAX_TAG_BYTES),
  );
  const budget = MAX_TAG_BYTES - TAG_PREFIX.length - 3 - unique.length;
  while (parts.reduce((n, p) => n + p.length, 0) > budget) {
    const longest = parts.reduce((a, p, i) => (p.length > parts[a].length ? i : a), 0);
    parts[longest] = parts[longest].slice(0, -1);
  }
  return `${TAG_PREFIX}${parts.join("/")}/${unique}`;
}

/**
 * The identity tag in a listed rule's comment, or undefined for a rule we did not make.
 * @example tagOf(parseRuleset(save).tables.get("filter")!.chains.get("INPUT")!.rules[0])
 */
export function tagOf(rule: Pick<RuleSpec, "match">): string | undefined {
  return rule.match.comment?.value.split(" ").find((w) => w.startsWith(TAG_PREFIX));
}
