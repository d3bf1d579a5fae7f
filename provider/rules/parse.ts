import type { Backend, Family } from "./types";
import { MODELED_MODULES, lookupFlag, type RuleMatch } from "./flags";

/** Packet and byte counters (`[pkts:bytes]` in `iptables-save -c`, `-c pkts bytes` in `-S -v`): 64-bit, exact. */
export interface Counters {
  packets: bigint;
  bytes: bigint;
}

/** A rule spec read through the flag table: what it matches and what it does. */
export interface RuleSpec {
  match: RuleMatch;
  /** `-m` modules in the order they appear. */
  modules: string[];
  /** `-j` target or `-g` chain; undefined for a rule without one (counts packets only). */
  target?: string;
  /** True for `-g CHAIN` (goto), false for `-j`. */
  goto: boolean;
  /** Everything after the target, verbatim (e.g. `["--reject-with", "tcp-reset"]`). */
  targetArgs: string[];
  /** Match tokens the table does not model, in order (a rule with any is a partial overlap). */
  opaque: string[];
  /** The same unmodeled match options, each with its `-m` module (or protocol), negation and values. */
  options: MatchOption[];
  counters?: Counters;
}

/** A match option the flag table does not model: `-m addrtype --dst-type LOCAL`, `! --syn`. */
export interface MatchOption {
  /** The `-m` module it follows (the protocol for `-p tcp --syn` without `-m tcp`), or "" when none. */
  module: string;
  /** The option token (`--dst-type`), or "" for a `-m` module given without options. */
  option: string;
  negated: boolean;
  values: string[];
}

/** One rule of a listed chain. */
export interface Rule extends RuleSpec {
  table: string;
  chain: string;
  /** 1-based line number in its chain, as `iptables -L --line-numbers` counts. */
  line: number;
  /** The rule as `iptables -S` prints it, without counters: `-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT`. */
  text: string;
  /** The unquoted tokens after `-A CHAIN` (counters removed). */
  tokens: string[];
}

/** A listed chain. Read-only: caches key on chains, tables and rulesets (an edit makes a new one). */
export interface Chain {
  readonly name: string;
  /** ACCEPT/DROP for a built-in chain, undefined for a user chain. */
  readonly policy?: string;
  readonly counters?: Counters;
  readonly rules: readonly Rule[];
}

export interface Table {
  readonly name: string;
  /** The address family, when the caller said which tool listed it (iptables-save or ip6tables-save). */
  readonly family?: Family;
  readonly chains: ReadonlyMap<string, Chain>;
  /** The listing held only some of the table's chains (`iptables -S CHAIN`): a rule is looked up only in
   * them, and no packet is judged on the table (both throw PartialListingError otherwise), unless it is
   * `closed`. */
  readonly partial?: boolean;
  /** A listing in part that holds every chain its rules jump or go to (closedListing in walk.ts): packets
   * are judged from a built-in chain it holds (what they meet is all listed), never which built-in chains
   * reach another chain. */
  readonly closed?: boolean;
}

export interface Ruleset {
  readonly tables: ReadonlyMap<string, Table>;
}

/** A chain, table and ruleset while parseRuleset builds them. */
type ChainDraft = { -readonly [K in keyof Chain]: Chain[K] } & { rules: Rule[] };
interface TableDraft {
  name: string;
  family?: Family;
  chains: Map<string, ChainDraft>;
}
interface RulesetDraft {
  tables: Map<string, TableDraft>;
}

/** A line of iptables output that the parser cannot read at all. */
export class RulesetParseError extends Error {
  constructor(
    readonly lineNumber: number,
    readonly lineText: string,
    readonly why: string,
  ) {
    super(`cannot read line ${lineNumber} of the iptables listing (${why}): ${JSON.stringify(lineText)}`);
    this.name = "RulesetParseError";
  }
}

/** A judgement or lookup that a table listed only in part cannot answer: the whole table is needed. */
export class PartialListingError extends Error {
  constructor(readonly table: string) {
    super(`the ${table} table was listed only in part (a bug where it reaches a user: it is listed whole first)`);
    this.name = "PartialListingError";
  }
}

/** A line's tokens: `values` unquoted, `raws` as written (the same array when nothing is quoted). */
interface Tokens {
  values: string[];
  raws: string[];
}

/**
 * Splits a line the way iptables-restore does: spaces, double quotes, backslash escapes in quotes.
 * Linear in the line, and tokens are slices of it: a listing of 20,000 rules is read in one pass.
 */
function tokenize(line: string): Tokens {
  if (!line.includes('"') && !line.includes("\t")) {
    const values = line.split(" ").filter((t) => t !== "");
    return { values, raws: values };
  }
  const values: string[] = [];
  const raws: string[] = [];
  const n = line.length;
  const blank = (c: number) => c === 32 || c === 9; // space, tab
  let i = 0;
  while (i < n) {
    if (blank(line.charCodeAt(i))) {
      i++;
      continue;
    }
    const start = i;
    if (line.charCodeAt(i) !== 34 /* " */) {
      while (i < n && !blank(line.charCodeAt(i))) i++;
      values.push(line.slice(start, i));
      raws.push(line.slice(start, i));
      continue;
    }
    let value = "";
    let from = ++i;
    while (i < n && line.charCodeAt(i) !== 34) {
      if (line.charCodeAt(i) === 92 /* \\ */ && i + 1 < n) {
        value += line.slice(from, i);
        from = ++i; // the escaped character is kept, whatever it is
      }
      i++;
    }
    if (i >= n) throw new Error("unterminated quote");
    values.push(value + line.slice(from, i++));
    raws.push(line.slice(start, i));
  }
  return { values, raws };
}

const isOption = (t: string) => t.startsWith("-") && !/^-\d/.test(t);
const COUNT = /^\d+$/;

/**
 * Reads a rule spec (the argv after `-A CHAIN`) through the flag table.
 * Never fails: what the table does not model ends up in `opaque`.
 */
export function parseSpec(tokens: readonly string[]): RuleSpec {
  const spec: RuleSpec = { match: {}, modules: [], goto: false, targetArgs: [], opaque: [], options: [] };
  let module: string | undefined;
  let negated = false;
  for (let i = 0; i < tokens.length; ) {
    const t = tokens[i];
    if (t === "!") {
      negated = true;
      i++;
      continue;
    }
    if ((t === "-c" || t === "--set-counters") && COUNT.test(tokens[i + 1] ?? "") && COUNT.test(tokens[i + 2] ?? "")) {
      spec.counters = { packets: BigInt(tokens[i + 1]), bytes: BigInt(tokens[i + 2]) };
      i += 3;
      continue;
    }
    if (t === "-j" || t === "--jump" || t === "-g" || t === "--goto") {
      spec.target = tokens[i + 1];
      spec.goto = t === "-g" || t === "--goto";
      spec.targetArgs = tokens.slice(i + 2);
      break;
    }
    if ((t === "-m" || t === "--match") && i + 1 < tokens.length) {
      module = tokens[i + 1];
      spec.modules.push(module);
      if (!MODELED_MODULES.has(module)) {
        spec.opaque.push(t, module);
        spec.options.push({ module, option: "", negated: false, values: [] });
      }
      i += 2;
      negated = false;
      continue;
    }
    const flag = lookupFlag(t, module, spec.match.protocol?.value);
    i++;
    if (flag) {
      if (flag.arity === 1 && tokens[i] === "!") {
        negated = true; // the old position: `-s ! 198.18.0.1`
        i++;
      }
      const value = flag.arity === 1 ? tokens[i++] : "";
      if (value === undefined) spec.opaque.push(t);
      else spec.match[flag.key] = { value: flag.key === "protocol" ? value.toLowerCase() : value, negated };
    } else {
      if (negated) spec.opaque.push("!");
      spec.opaque.push(t);
      const values: string[] = [];
      while (i < tokens.length && !isOption(tokens[i]) && tokens[i] !== "!") values.push(tokens[i++]);
      spec.opaque.push(...values);
      spec.options.push({ module: module ?? spec.match.protocol?.value ?? "", option: t, negated, values });
    }
    negated = false;
  }
  return spec;
}

function newChain(table: TableDraft, name: string, policy?: string, counters?: Counters): ChainDraft {
  const chain: ChainDraft = { name, policy, counters, rules: [] };
  table.chains.set(name, chain);
  return chain;
}

function tableOf(ruleset: RulesetDraft, name: string, family: Family | undefined): TableDraft {
  let table = ruleset.tables.get(name);
  if (!table) {
    table = { name, chains: new Map(), ...(family && { family }) };
    ruleset.tables.set(name, table);
  }
  return table;
}

/**
 * Splits a listing into lines the way iptables prints them: a newline inside a quoted comment
 * (iptables prints comment bytes as they are, only `"` and `\\` escaped) does not end the line.
 */
export function listingLines(text: string): string[] {
  if (!text.includes('"')) return text.split("\n");
  // Linear: lines are slices of the text, found by one scan for newlines outside quotes.
  const out: string[] = [];
  const n = text.length;
  let start = 0;
  let quoted = false;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 10 /* \n */ && !quoted) {
      out.push(text.slice(start, i));
      start = ++i;
    } else if (i === start && c === 35 /* # */) {
      // `# Generated by ...`: no quoting, up to the newline
      const nl = text.indexOf("\n", i);
      i = nl < 0 ? n : nl;
    } else if (quoted && c === 92 /* \\ */ && i + 1 < n) i += 2;
    else {
      if (c === 34 /* " */) quoted = !quoted;
      i++;
    }
  }
  out.push(text.slice(start));
  return out;
}

const BRACKET_COUNTERS = /^\[(\d+):(\d+)\]$/;

function bracketCounters(raw: string | undefined): Counters | undefined {
  const m = BRACKET_COUNTERS.exec(raw ?? "");
  return m ? { packets: BigInt(m[1]), bytes: BigInt(m[2]) } : undefined;
}

/**
 * Parses `iptables-save` / `ip6tables-save` output (with or without `-c`), or `iptables -S [-v]`
 * output (which names no table: `options.table`, default "filter"). `options.family`: the family of the
 * tool that listed it (its tables carry it).
 * Comment lines (`# Generated by...`, `# Warning: iptables-legacy tables present...`) are skipped.
 * @throws RulesetParseError for a line it cannot read at all.
 * @example
 * const rs = parseRuleset("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n");
 * rs.tables.get("filter")!.chains.get("INPUT")!.rules[0].target; // "ACCEPT"
 */
export function parseRuleset(text: string, options: { table?: string; family?: Family } = {}): Ruleset {
  const ruleset: RulesetDraft = { tables: new Map() };
  let table: TableDraft | undefined;
  listingLines(text).forEach((rawLine, index) => {
    const line = rawLine.replace(/\r$/, "").trim();
    const fail = (why: string) => new RulesetParseError(index + 1, rawLine, why);
    if (line === "" || line.startsWith("#") || /^warning:/i.test(line)) return;
    if (line.startsWith("*")) {
      table = tableOf(ruleset, line.slice(1), options.family);
      return;
    }
    if (line === "COMMIT") {
      if (!table) throw fail("COMMIT outside a table");
      table = undefined;
      return;
    }
    let tokens: Tokens;
    try {
      tokens = tokenize(line);
    } catch (e) {
      throw fail((e as Error).message);
    }
    const { values, raws } = tokens;
    const current = table ?? tableOf(ruleset, options.table ?? "filter", options.family);
    if (line.startsWith(":")) {
      // `:INPUT ACCEPT [0:0]` or `:DOCKER - [0:0]`
      const [name, policy] = [values[0].slice(1), values[1]];
      if (!name || !policy) throw fail("chain line without a name and policy");
      newChain(current, name, policy === "-" ? undefined : policy, bracketCounters(raws[2]));
      return;
    }
    const counters = bracketCounters(raws[0]);
    const at = counters ? 1 : 0;
    const [command, chainName] = [values[at], values[at + 1]];
    if (!chainName || !["-P", "-N", "-A"].includes(command)) throw fail("not a chain, policy or rule line");
    if (command === "-N") {
      if (!current.chains.has(chainName)) newChain(current, chainName);
      return;
    }
    const rest = values.slice(at + 2);
    const chain = current.chains.get(chainName) ?? newChain(current, chainName);
    if (command === "-P") {
      const spec = parseSpec(rest.slice(1));
      chain.policy = rest[0];
      chain.counters = spec.counters ?? chain.counters;
      if (!chain.policy) throw fail("policy line without a policy");
      return;
    }
    // Drop `-c pkts bytes` (iptables -S -v) from the text; the spec parser reads it.
    const c = rest.findIndex((t, j) => t === "-c" && COUNT.test(rest[j + 1] ?? "") && COUNT.test(rest[j + 2] ?? ""));
    const keep = (xs: string[]) => (c < 0 ? xs : [...xs.slice(0, c), ...xs.slice(c + 3)]);
    const spec = parseSpec(rest);
    chain.rules.push({
      match: spec.match,
      modules: spec.modules,
      target: spec.target,
      goto: spec.goto,
      targetArgs: spec.targetArgs,
      opaque: spec.opaque,
      options: spec.options,
      counters: counters ?? spec.counters,
      table: current.name,
      chain: chainName,
      line: chain.rules.length + 1,
      text: ["-A", chainName, ...keep(raws.slice(at + 2))].join(" "),
      tokens: keep(rest),
    });
  });
  return ruleset;
}

/** The chain of a ruleset, or undefined. */
export function chainOf(ruleset: Ruleset, table: string, chain: string): Chain | undefined {
  return ruleset.tables.get(table)?.chains.get(chain);
}

export interface IptablesVersion {
  version: string;
  backend: Backend;
}

/**
 * Reads `iptables --version` output. Before 1.8 there was no backend suffix: that is legacy.
 * @example parseVersion("iptables v1.8.9 (nf_tables)") // { version: "1.8.9", backend: "nf_tables" }
 * @throws RulesetParseError when no version line is found.
 */
export function parseVersion(text: string): IptablesVersion {
  const m = /^ip6?tables(?:-\w+)? v(\d+(?:\.\d+)+)(?: \((nf_tables|legacy)\))?/m.exec(text);
  if (!m) throw new RulesetParseError(1, text.split("\n")[0] ?? "", "not an iptables --version line");
  return { version: m[1], backend: m[2] === "nf_tables" ? "nf_tables" : "legacy" };
}
