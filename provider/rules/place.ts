/**
 * Where a rule goes: the line where it decides its ordinary packets (./match, ./walk), and what keeps
 * a rule at a line from deciding them (shadowing).
 */
import { VERDICTS } from "./flags";
import { shown } from "./identity";
import { ordinaryOf } from "./match";
import { BUILTIN_CHAINS, HOOKS } from "./names";
import { portRanges } from "./ordinary";
import { chainOf, parseSpec, type Chain, type Rule, type RuleSpec, type Ruleset, type Table } from "./parse";
import type { Position } from "./types";
import { entryChains, outcomes, type Hop, type Outcome } from "./walk";

/** A placement request that cannot be honoured (missing chain, line out of range). */
export class PlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlacementError";
  }
}

// ---------------------------------------------------------------- judging a rule at a line

/** The rule (or policy) that decides a rule's packets otherwise, with the path the packets take. */
export type Shadow = Rule & {
  /** `INPUT:2 -> ufw-before-input:15 -> ufw-user-input:2`; a chain's end is `CHAIN:end`. */
  path: string;
  /** What the packets get instead: ACCEPT, DROP, REJECT, RETURN (out of the chain) or another target. */
  verdict: string;
  /** Which ordinary packets: "tcp 8080". */
  packets: string;
  /** One sentence: where they go and what decides them. */
  why: string;
};

/** A rule-like record for a decision no rule makes (a policy, a chain nothing jumps to). */
function pseudoRule(table: string, chain: string, text: string, target?: string): Rule {
  const tokens = text.split(" ").slice(2);
  return { ...parseSpec(tokens), target, table, chain, line: 0, text, tokens };
}

const VERBS: Record<string, string> = { ACCEPT: "accepts", DROP: "drops", REJECT: "rejects" };

function shadowOf(table: Table, start: string, out: Outcome, packets: string): Shadow {
  const hopText = (h: Hop) => (h.rule ? `${h.chain}:${h.line}` : `${h.chain}:end`);
  const path = [...out.hops.map(hopText), ...(out.policy ? [`policy ${out.policy}`] : [])].join(" -> ");
  const last = [...out.hops].reverse().find((h) => h.rule)?.rule;
  const rule = out.policy
    ? pseudoRule(table.name, start, `-P ${start} ${out.policy}`, out.policy)
    : (last ?? { ...pseudoRule(table.name, start, `-A ${start}`, "RETURN"), text: `the end of ${start}` });
  const what = VERBS[out.verdict]
    ? `${VERBS[out.verdict]} ${packets}`
    : out.verdict === "RETURN"
      ? `returns ${packets} from ${start}`
      : `hands ${packets} to ${out.verdict}`;
  return { ...rule, path, verdict: out.verdict, packets, why: shown(`${path} (${rule.text}) ${what}`) };
}

interface Judgement {
  /** Every ordinary packet gets the rule's verdict. */
  effective: boolean;
  /** Every ordinary packet reaches the rule, which decides it (so its counters count them). */
  decides: boolean;
  /** The first decision with another verdict. */
  shadow?: Shadow;
  /** The first decision the rule does not make itself (another verdict, or the same one by another rule). */
  first?: Shadow;
}

/** Splits the rule's ports where any rule of the table starts or ends a port range: one port per piece. */
function portPieces(table: Table, spec: RuleSpec): (number | undefined)[] {
  const own = spec.match.dport ?? spec.match.dports ?? spec.match.ctorigdstport;
  const ranges = own && !own.negated ? portRanges(own.value) : undefined;
  if (!ranges) return [undefined];
  const out: number[] = [];
  for (const [lo, hi] of ranges) {
    out.push(lo);
    // A single port is one piece; a range is cut where any rule's ports begin or end.
    if (hi > lo)
      for (const chain of table.chains.values()) for (const c of cutsOf(chain)) if (c > lo && c <= hi) out.push(c);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

/** Where the port ranges of a chain's rules begin and end (one past), per chain (a Chain is read-only:
 * an edit makes a new one). */
const cuts = new WeakMap<Chain, number[]>();
function cutsOf(chain: Chain): number[] {
  let out = cuts.get(chain);
  if (!out) {
    out = [];
    for (const r of chain.rules)
      for (const m of [r.match.dport, r.match.dports, r.match.ports, r.match.ctorigdstport])
        for (const [a, b] of (m && portRanges(m.value)) ?? []) out.push(a, b + 1);
    cuts.set(chain, out);
  }
  return out;
}

/**
 * Is `spec` effective as rule `line` of `chain`: does every ordinary packet of every one of its ports,
 * from every built-in chain that leads there (or from the top of `chain` when `local`), get its verdict?
 */
function judge(table: Table, chain: string, spec: RuleSpec, line: number, local = false): Judgement {
  const verdict = spec.target ?? "";
  const starts = local ? [chain] : entryChains(table, chain);
  if (!starts.length) {
    const text = `no rule of ${(BUILTIN_CHAINS[table.name] ?? []).join(", ")} jumps to ${chain}`;
    const rule = pseudoRule(table.name, chain, `-A ${chain}`);
    const shadow = { ...rule, text, path: "", verdict: "", packets: "", why: `no packet reaches ${chain}: ${text}` };
    return { effective: false, decides: false, shadow, first: shadow };
  }
  let first: Shadow | undefined;
  for (const start of starts)
    for (const port of portPieces(table, spec)) {
      const o = ordinaryOf(spec, HOOKS[start] ?? "in", port, table);
      const outs = outcomes(table, start, o, { chain, index: line - 1, verdict });
      const packets = [o.protocol ?? "", port ?? ""].join(" ").trim() || "its packets";
      const against = outs.find((x) => x.verdict !== verdict);
      if (against) {
        const shadow = shadowOf(table, start, against, packets);
        return { effective: false, decides: false, shadow, first: first ?? shadow };
      }
      const other = outs.find((x) => !x.ours);
      if (other && !first) first = shadowOf(table, start, other, packets);
    }
  return { effective: true, decides: !first, first };
}

/**
 * Every verdict the model allows for the ordinary packets of each port piece of `rule` inserted as
 * line `line` of `chain` (both branches of every match that may go either way), and whether the
 * rule itself decides some of them. For tests that put the model against the kernel.
 */
export function possibleVerdicts(
  ruleset: Ruleset,
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; line: number },
): { port?: number; verdicts: string[]; ours: boolean; others: boolean }[] {
  const { table } = lookup(ruleset, request.table, request.chain);
  const spec = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const starts = entryChains(table, request.chain);
  return portPieces(table, spec).map((port) => {
    const outs = (starts.length ? starts : [request.chain]).flatMap((start) =>
      outcomes(table, start, ordinaryOf(spec, HOOKS[start] ?? "in", port, table), {
        chain: request.chain,
        index: request.line - 1,
        verdict: spec.target ?? "",
      }),
    );
    return {
      port,
      verdicts: [...new Set(outs.map((o) => o.verdict))],
      ours: outs.some((o) => o.ours),
      others: outs.some((o) => !o.ours),
    };
  });
}

/** The lowest line of the chain where the rule decides its packets (that only shrinks going down). */
function lowest(table: Table, chain: Chain, spec: RuleSpec, local: boolean): number {
  let [lo, hi] = [1, chain.rules.length + 1]; // the rule decides at lo
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (judge(table, chain.name, spec, mid, local).decides) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function lookup(ruleset: Ruleset, table: string, chain: string): { table: Table; chain: Chain } {
  const c = chainOf(ruleset, table, chain);
  if (!c) throw new PlacementError(`chain ${chain} does not exist in the ${table} table`);
  return { table: ruleset.tables.get(table)!, chain: c };
}

export interface Placement {
  /** The line for `iptables -I CHAIN <line>`. */
  line: number;
  reason: string;
  /** Every ordinary packet of the rule gets its verdict there. */
  effective: boolean;
  /** When not effective: what decides its packets otherwise, and their path. */
  shadowedBy?: Shadow;
}

const redundancy = (j: Judgement) =>
  j.effective && !j.decides ? ` (redundant there: ${j.first!.why} first, with the same verdict)` : "";

/**
 * Where to insert a rule (`iptables -I CHAIN <line>`), and why.
 * `auto`: the lowest line where the rule is effective (every ordinary packet of each of its ports gets
 * its verdict), so every exception above that can stay above does; the end of the chain when it is
 * effective there. In a user chain that no packet can reach with the rule effective (nothing jumps
 * to it, or rules before the jump decide the packets), no line is: the rule goes where it decides
 * every packet that enters the chain, and the reason says why that is not enough.
 * Explicit positions are honoured, with a warning when the rule is not effective there.
 * @throws PlacementError for a missing chain or a line outside 1..rules+1.
 * @example
 * placeRule(parseRuleset(save), { table: "filter", chain: "INPUT", rule: ["-p","tcp","-m","tcp","--dport","2222","-j","ACCEPT"] })
 *   // { line: 3, reason: "end of chain: effective there", effective: true }
 */
export function placeRule(
  ruleset: Ruleset,
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; position?: Position },
): Placement {
  const { table, chain } = lookup(ruleset, request.table, request.chain);
  const spec = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const position = request.position ?? "auto";
  const end = chain.rules.length + 1;
  const ruleAt = (line: number) => `line ${line} (${shown(chain.rules[line - 1].text)})`;
  if (position === "auto") {
    if (!spec.target || !VERDICTS.has(spec.target) || spec.goto)
      return { line: end, reason: "end of chain: the rule gives no verdict of its own", effective: true };
    const first = judge(table, chain.name, spec, 1);
    if (!first.decides) {
      // Only in a user chain: its packets are decided before they reach it, or never reach it.
      const line = lowest(table, chain, spec, true);
      const at = line === end ? "the end of the chain" : `line ${line}`;
      const why = first.effective
        ? `its packets get its verdict without it: ${first.first!.why} first`
        : `no line of ${chain.name} makes it effective: ${first.shadow!.why}`;
      return {
        line,
        reason: `${why}; placed at ${at}, the lowest where it decides every packet that enters ${chain.name}`,
        effective: first.effective,
        ...(first.shadow && { shadowedBy: first.shadow }),
      };
    }
    const line = lowest(table, chain, spec, false);
    if (line === end) return { line, reason: "end of chain: it decides its packets there", effective: true };
    const below = judge(table, chain.name, spec, line + 1);
    return { line, reason: `before ${ruleAt(line)}: below it, ${below.first!.why}`, effective: true };
  }
  const line = position === "top" ? 1 : position === "bottom" ? end : position;
  if (!Number.isInteger(line) || line < 1 || line > end) {
    throw new PlacementError(
      `position ${position} is outside ${chain.name}, which has ${chain.rules.length} rules: use a line from 1 to ${end}`,
    );
  }
  const where = position === "top" ? "top of chain" : position === "bottom" ? "end of chain" : `line ${line}`;
  const j =
    spec.target && VERDICTS.has(spec.target) && !spec.goto
      ? judge(table, chain.name, spec, line)
      : { effective: true, decides: true };
  const warning = j.effective ? redundancy(j) : `; warning: not effective there: ${j.shadow!.why}`;
  return {
    line,
    reason: `${where} (position ${position})${warning}`,
    effective: j.effective,
    ...(j.shadow && { shadowedBy: j.shadow }),
  };
}

/**
 * What keeps the rule at `line` from being effective: the first rule (or policy) that decides some of
 * its ordinary packets otherwise, with their path; undefined when the rule is effective (a same-verdict
 * rule deciding its packets first makes it redundant, not shadowed) or gives no verdict of its own.
 * @example shadowing(parseRuleset(save), { table: "filter", chain: "INPUT", line: 5 })?.path // "INPUT:4"
 */
export function shadowing(ruleset: Ruleset, at: { table: string; chain: string; line: number }): Shadow | undefined {
  const { table, chain } = lookup(ruleset, at.table, at.chain);
  const ours = chain.rules[at.line - 1];
  if (!ours) throw new PlacementError(`${chain.name} has no line ${at.line} (it has ${chain.rules.length} rules)`);
  if (!ours.target || !VERDICTS.has(ours.target) || ours.goto) return undefined;
  return judge(table, chain.name, ours, at.line).shadow;
}
