// Confirming a batch from what changed, not from a listing of the whole table: after the restore the
// host lists only the chains the batch edited (`iptables -v -S CHAIN`) and a digest of the rest of
// the table (every other chain and rule, counters left out), which it compares with the digest of
// the rest as the provider's copy of the table holds it. Where they are equal, nothing outside the
// edited chains changed since the copy was listed, and the copy with the edited chains as listed is
// the table now. Where they differ (another writer, an unknown digest, no md5sum), the same step
// prints the whole table as before. On a Kubernetes node the rest is 20,000 rules: this keeps the
// 3 MB listing (and its parse) to the first step of a conversation. On nf_tables the generation
// (generation.ts) proves the rest unchanged without the digest where nobody else committed anything;
// the digest is the fallback where somebody did, or where the generation cannot be read.
import { createHash } from "node:crypto";
import { closedListing, KNOWN_TARGETS, parseRuleset } from "../rules";
import type { Ruleset } from "../rules";
import { shellQuote } from "../ssh";
import { generationSection, listedGeneration } from "./generation";
import { iptables, section } from "./protocol";
import type { Family, Sections } from "./protocol";

/** What the provider knows of a copy: the full listing's text it was parsed from (and the digest of
 * its rest without `chains`, once computed), or the copy `from` whose rest without `chains` it shares;
 * and the nf_tables generation read before it was listed. Keyed weakly: a copy never changes. */
const rests = new WeakMap<Ruleset, { text?: string; from?: Ruleset; chains?: string; digest?: string; gen?: number }>();

/** Drops comments, counters and the rules of `skip`, as the host's awk does (DIGEST_AWK). */
function restLines(text: string, skip: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    if (raw.startsWith("#")) continue;
    const line = raw.replace(/^\[[0-9]+:[0-9]+\] /, "");
    const f = line.replace(/^[ \t]+/, "").split(/[ \t]+/);
    if (f[0] === "-A" && skip.has(f[1])) continue;
    out.push(line.startsWith(":") ? line.replace(/ \[[0-9]+:[0-9]+\]$/, "") : line);
  }
  // awk prints each record with its newline; the text's last newline ends the last record.
  if (out.at(-1) === "") out.pop();
  return out;
}

/** md5 (hex) of an iptables-save listing without comments, counters and the rules of `chains`: what
 * the host's digest section prints for the same table. */
export function restDigest(text: string, chains: readonly string[]): string {
  const lines = restLines(text, new Set(chains));
  return createHash("md5")
    .update(lines.map((l) => `${l}\n`).join(""))
    .digest("hex");
}

const key = (chains: readonly string[]) => [...chains].sort().join(" ");

/** Records the full listing text a copy was parsed from (its rest's digest is known for any chains),
 * and the generation read before it was listed, where it was. */
export function listedFrom(rs: Ruleset, text: string, gen?: number): void {
  rests.set(rs, { text, gen });
}

/** Records the generation read before a copy listed in part (some chains of its table) was listed. */
export function listedInPart(rs: Ruleset, gen?: number): void {
  rests.set(rs, { gen });
}

/** The nf_tables generation read before the copy was listed, where it was. */
export const generationOf = (rs: Ruleset): number | undefined => rests.get(rs)?.gen;

/** The digest of the copy's rest without `chains`, where the provider knows it. */
export function digestOf(rs: Ruleset, chains: readonly string[]): string | undefined {
  const r = rests.get(rs);
  const k = key(chains);
  if (r?.text !== undefined) {
    if (r.chains !== k) Object.assign(r, { chains: k, digest: restDigest(r.text, chains) });
    return r.digest;
  }
  if (r?.chains !== k) return undefined;
  r.digest ??= r.from && digestOf(r.from, chains);
  return r.digest;
}

/** The whole table of one family, with counters (section save<f>): what every listing falls back to. */
export const wholeTable = (f: Family, table: string) => section(`save${f}`, [`${iptables(f)}-save`, "-c", "-t", table]);

/** awk that drops comments, counters and the rules of the chains in -v skip (space separated). */
const DIGEST_AWK = String.raw`BEGIN { n = split(skip, a, " "); for (i = 1; i <= n; i++) s[a[i]] = 1 }
/^#/ { next }
{ sub(/^\[[0-9]+:[0-9]+\] /, "") }
$1 == "-A" && ($2 in s) { next }
/^:/ { sub(/ \[[0-9]+:[0-9]+\]$/, "") }
{ print }`;

/**
 * The listing that confirms a batch in one family: the digest of the rest of `table` without
 * `chains`, compared on the host with `digest` (exit 1 where it differs or is not known); then the
 * whole table (section save<f>) where it differs, or else the edited chains (section chains<f>), and
 * the whole table where they cannot be listed (legacy's `iptables -S` waits for the xtables lock,
 * iptables-save does not). A digest that fails otherwise (killed at its deadline) lists nothing more.
 * With `gen` (nf_tables), the generation is read first (section gen<f>); where `gen.expect` is given
 * (the copy's generation plus the batch's restores) and the host is at it (section same<f> exits 0),
 * the edited chains alone, with no digest.
 */
export function confirmListing(
  f: Family,
  table: string,
  chains: readonly string[],
  digest?: string,
  gen?: { expect?: number },
): string {
  const save = `${iptables(f)}-save`;
  const d = `d=$(${save} -t ${shellQuote(table)} | awk -v skip=${shellQuote(chains.join(" "))} ${shellQuote(DIGEST_AWK)} | md5sum)`;
  const compare = digest === undefined ? "exit 1" : `[ "$d" = ${shellQuote(digest)} ]`;
  const whole = wholeTable(f, table);
  const edited = [chainsOrWhole(f, table, chains)];
  const byDigest = [
    section(`digest${f}`, { script: `${d}\nd=\${d%% *}; echo "$d"\n${compare}` }),
    `if [ "$c" = 1 ]; then`,
    whole,
    `elif [ "$c" = 0 ]; then`,
    ...edited,
    "fi",
  ];
  if (gen?.expect === undefined) return [...(gen ? [generationSection(`gen${f}`)] : []), ...byDigest].join("\n");
  return [
    generationSection(`same${f}`, gen.expect),
    `if [ "$c" = 0 ]; then`,
    ...edited,
    "else",
    ...byDigest,
    "fi",
  ].join("\n");
}

/** `chains` of `table` (section chains<f>, `iptables -v -S`), and the whole table (section save<f>)
 * where they cannot be listed. */
export function chainsOrWhole(f: Family, table: string, chains: readonly string[]): string {
  const list = chains.map((c) => `${iptables(f)} -w 5 -t ${shellQuote(table)} -v -S ${shellQuote(c)}`).join(" && ");
  return [section(`chains${f}`, { script: list }), `if [ "$c" != 0 ]; then`, wholeTable(f, table), "fi"].join("\n");
}

/** The targets no listing tries as a chain: every one placement knows is not one (KNOWN_TARGETS). */
const NOT_CHAINS = [...KNOWN_TARGETS].join("|");

/** At most this many chains are listed one by one (a few ms each, where the whole table of a host with
 * many small chains costs as much as one): beyond, the whole table. A Kubernetes node's INPUT reaches 5. */
export const REACH_CHAINS = 6;

/**
 * `roots` of `table` and every chain their rules jump or go to, however deep (section reach<f>, each
 * chain's `iptables -v -S`), and the whole table (section save<f>) where a root cannot be listed or they
 * reach more than REACH_CHAINS chains: what placement walks from those chains. A name a rule jumps to that
 * cannot be listed is skipped (an extension target, which iptables versions refuse in different words):
 * the provider takes the listing as closed only where every name its rules jump to is listed or a known
 * target (closedListing). Chain names read from the host stay data (shell variables, quoted arguments),
 * never script.
 */
export function reachOrWhole(f: Family, table: string, roots: readonly string[]): string {
  const list = (c: string) => `${iptables(f)} -w 5 -t ${shellQuote(table)} -v -S "${c}"`;
  const script = [
    `set -f; todo=${shellQuote(roots.join(" "))}; roots=" $todo "; seen=" "; n=0`,
    `while [ -n "$todo" ]; do`,
    `  set -- $todo; c=$1; shift; todo="$*"`,
    `  case "$seen" in *" $c "*) continue ;; esac`,
    `  seen="$seen$c "; n=$((n + 1))`,
    `  [ "$n" -le ${REACH_CHAINS} ] || { echo "more than ${REACH_CHAINS} chains: the whole table instead" >&2; exit 1; }`,
    `  if ! o=$(${list("$c")}); then`,
    `    case "$roots" in *" $c "*) exit 1 ;; esac`,
    "    continue",
    "  fi",
    `  printf '%s\\n' "$o"`,
    `  for t in $(printf '%s\\n' "$o" | awk '{ for (i = 1; i < NF; i++) if ($i == "-j" || $i == "-g") print $(i + 1) }'); do`,
    `    case "$t" in ${NOT_CHAINS}) ;; *) todo="$todo $t" ;; esac`,
    "  done",
    "done",
  ].join("\n");
  return [section(`reach${f}`, { script }), `if [ "$c" != 0 ]; then`, wholeTable(f, table), "fi"].join("\n");
}

/**
 * The copy `before` with `chains` as the answer lists them, where the generation or the digest showed
 * the rest unchanged (no section save<f>); undefined where the answer holds the whole table instead.
 * The copy it returns shares its rest's digest with `before`, and carries the generation this answer read.
 */
export function withListedChains(
  before: Ruleset,
  answer: Sections,
  f: Family,
  table: string,
  chains: readonly string[],
): Ruleset | undefined {
  const s = answer[`chains${f}`];
  if (answer[`save${f}`] || s?.code !== 0) return undefined;
  // Nobody else committed anything since the copy was listed (the generation), or the rest is as the copy has it.
  const same = answer[`same${f}`]?.code === 0;
  if (!same && (digestOf(before, chains) === undefined || answer[`digest${f}`]?.code !== 0)) return undefined;
  const listed = parseRuleset(s.out, { table }).tables.get(table);
  const t = before.tables.get(table);
  if (!listed || !t) return undefined;
  const chainsNow = new Map(t.chains);
  for (const c of chains) {
    const l = listed.chains.get(c);
    if (!l) return undefined;
    chainsNow.set(c, l);
  }
  // A copy closed from its built-in chains stays closed only where the chains listed now jump nowhere new.
  const now = { ...t, chains: chainsNow };
  const rs: Ruleset = {
    tables: new Map(before.tables).set(table, t.closed ? { ...now, closed: closedListing(now, chains) } : now),
  };
  rests.set(rs, { from: before, chains: key(chains), gen: listedGeneration(answer, f) });
  return rs;
}
