// Finding the provider's own rules in a listing (pure). The provider acts on a listed rule only when
// its text is exactly the text it rendered and recorded (the identity tag included): a rule that
// merely carries the tag (an operator's copy, a forgery, a rule with control characters in its
// comment) is never the provider's, and is only named, escaped, in a warning.
import { PartialListingError } from "./parse";
import type { Chain, Rule, Ruleset } from "./parse";
import { TAG_PREFIX, tagOf } from "./tag";

/** Each chain's rules by exact text (the first of equal ones), per chain (an edit makes a new chain). */
// Process-wide, keyed weakly: a parsed chain is never edited in place, so its index stays true and goes with it.
const textIndex = new WeakMap<Chain, Map<string, Rule>>();
function byText(chain: Chain): Map<string, Rule> {
  let index = textIndex.get(chain);
  if (!index) {
    index = new Map();
    for (const r of chain.rules) if (!index.has(r.text)) index.set(r.text, r);
    textIndex.set(chain, index);
  }
  return index;
}

/**
 * The first rule of `chain` whose text is exactly `text` (as `ruleText` renders it, tag included).
 * @example findRule(rs, "filter", "INPUT", '-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "pulumi-iptables:web/prod/ssh/0123456789ab" -j ACCEPT')?.line
 */
export function findRule(ruleset: Ruleset, table: string, chain: string, text: string): Rule | undefined {
  const t = ruleset.tables.get(table);
  const c = t?.chains.get(chain);
  if (!c && t?.partial) throw new PartialListingError(table);
  return c && byText(c).get(text);
}

/**
 * The first rule carrying this identity tag: looked up in `chain` first, then in every chain of the
 * table. For reports only: what the provider acts on is found by `findRule`.
 * @example findByTag(rs, "filter", "INPUT", "pulumi-iptables:web/prod/allow-ssh/k3x9q2ab")?.counters
 */
export function findByTag(ruleset: Ruleset, table: string, chain: string, tag: string): Rule | undefined {
  const chains = [...(ruleset.tables.get(table)?.chains.values() ?? [])].sort(
    (a, b) => Number(b.name === chain) - Number(a.name === chain),
  );
  for (const c of chains) {
    const found = c.rules.find((r) => carries(r, tag));
    if (found) return found;
  }
  return undefined;
}

/** Does the rule's comment carry this tag (anywhere, in any form)? */
const carries = (r: Rule, tag: string) => tagOf(r) === tag || !!r.match.comment?.value.includes(tag);

/** Each chain's rules whose comment holds a tag's prefix (every rule that carries a tag), per chain. */
const taggedIndex = new WeakMap<Chain, readonly Rule[]>();
function taggedIn(c: Chain): readonly Rule[] {
  const known = taggedIndex.get(c);
  if (known) return known;
  const rules = c.rules.filter((r) => !!r.match.comment?.value.includes(TAG_PREFIX));
  taggedIndex.set(c, rules);
  return rules;
}

/** Rules of the table that carry `tag` but are not exactly `text`: never acted on, named in warnings. */
export function impostors(ruleset: Ruleset, table: string, tag: string, text: string): Rule[] {
  const chains = [...(ruleset.tables.get(table)?.chains.values() ?? [])];
  return chains.flatMap((c) => taggedIn(c).filter((r) => r.text !== text && carries(r, tag)));
}

/**
 * Listed text as a message may show it: control characters (a newline in a comment, an escape
 * sequence) written as \n, \u001b, so a listing can neither forge lines of a message nor hide them.
 * @example shown('-A INPUT -m comment --comment "a\nb"') // '-A INPUT -m comment --comment "a\\nb"'
 */
export function shown(text: string): string {
  const short: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  const control = (n: number) => n < 0x20 || (n >= 0x7f && n <= 0x9f) || n === 0x2028 || n === 0x2029;
  let out = "";
  for (const c of text) {
    const n = c.codePointAt(0)!;
    out += control(n) ? (short[c] ?? `\\u${n.toString(16).padStart(4, "0")}`) : c;
  }
  return out;
}
