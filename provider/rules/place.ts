/**
 * Where a rule goes: the line where it decides its ordinary packets (./match, ./walk), and what keeps
 * a rule at a line from deciding them (shadowing).
 */
import { VERDICTS } from "./flags";
import { shown } from "./identity";
import { arrivalsOf, distinctInterfaces, type Ordinary, ordinaryOf } from "./match";
import { destinationsOf, distinctAddresses } from "./destinations";
import { BUILTIN_CHAINS, HOOKS } from "./names";
import { portRanges } from "./ordinary";
import { chainOf, parseSpec, type Chain, type Rule, type RuleSpec, type Ruleset, type Table } from "./parse";
import type { Position } from "./types";
import { type Both, type OtherBackend, withOther } from "./backends";
import { type Ending, endings, type Nat } from "./prerouting";
import { cutsOf, entryChains, type Hop, type Outcome } from "./walk";

/** A placement request that cannot be honoured (missing chain, line out of range). */
export class PlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlacementError";
  }
}

// ---------------------------------------------------------------- judging a rule at a line

/** What of the host beside the rule's table its placement is judged with. */
export interface HostContext {
  /**
   * The host's non-loopback interfaces (ordinary packets arrive on each of them, each judged on its
   * own, and rules that name one, exactly or by `eth+`, match it); left out, or empty, where they are
   * not known: then ordinary packets arrive on an interface that no rule names.
   */
  interfaces?: readonly string[];
  /**
   * The host's own addresses of the rule's family (not loopback, not link-local): ordinary packets are
   * addressed to each of them, and rules that name one (`-d`) match those packets; a DNAT to one of them
   * stays on the host. Left out where they are not known: then ordinary packets go to an address no rule names.
   */
  addresses?: readonly string[];
  /** The same family's nat table (PREROUTING and the chains it reaches), for rules on filter INPUT:
   * a port DNAT-ed elsewhere goes through FORWARD, a REDIRECT is judged under its new port. */
  nat?: Ruleset;
  /** The same family's tables in the other iptables backend, which the kernel applies as well. */
  other?: OtherBackend;
}

/** The host a judgement is made with, and the one of its addresses judged when only the packets to it
 * count (the lockout guard: the address the SSH connection reached; tests that probe one address). */
export type Scope = HostContext & { to?: string };

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

const hopText = (h: Hop) => (h.rule ? `${h.chain}:${h.line}` : `${h.chain}:end`);

/** What decides some packets, when nat PREROUTING translated them on the way: the DNAT that sends them
 * elsewhere (with what to write instead), or the REDIRECT and then what decides their new port. */
function shadowAfter(table: Table, start: string, e: Ending, packets: string): Shadow {
  if (!e.via) return shadowOf(table, start, e.out, packets);
  const { rule, path, backend } = e.via;
  const chains = `${backend ? `the ${backend} tables' ` : ""}nat ${[...new Set(path.map((h) => h.chain))].join(" -> ")}`;
  const head = `${chains}: ${shown(rule.text)}`;
  const natPath = `nat ${path.map(hopText).join(" -> ")}`;
  if (e.via.kind === "away") {
    const port = e.o.dport;
    const why =
      `${head} (sends ${packets} to ${e.via.to} through FORWARD: they never reach ${start}; write the rule in ` +
      `FORWARD, DOCKER-USER on a Docker host, or the chain of the tool that made the DNAT, matching the port ` +
      `the client asked for: -m conntrack --ctorigdstport ${port} --ctdir ORIGINAL)`;
    return { ...rule, path: natPath, verdict: "FORWARD", packets, why };
  }
  const inner = shadowOf(table, start, e.out, [e.o.protocol, e.o.dport].join(" "));
  const why = `${head} (sends ${packets} to port ${e.o.dport}); then ${inner.why}`;
  return { ...inner, path: `${natPath} -> ${inner.path}`, why };
}

/** Each ending with what the other backend's tables do to its packets (not to those sent through FORWARD). */
function finals(table: Table, start: string, ends: Ending[], host: HostContext): { e: Ending; b: Both }[] {
  return ends.flatMap((e) =>
    (e.via?.kind === "away" ? [{ verdict: e.out.verdict }] : withOther(e.out, table.name, start, e.o, host.other)).map(
      (b) => ({ e, b }),
    ),
  );
}

/** What decides the packets of one final outcome: a rule of the other backend, or as shadowAfter says. */
function decider(table: Table, start: string, f: { e: Ending; b: Both }, packets: string, host: HostContext): Shadow {
  if (!f.b.other || !host.other) return shadowAfter(table, start, f.e, packets);
  const s = shadowOf(host.other.ruleset.tables.get(table.name)!, start, f.b.other, packets);
  return { ...s, why: `the ${host.other.backend} tables (the kernel applies them too): ${s.why}` };
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

/** Splits the rule's ports where any rule of `tables` (the table, and the nat and other backend's tables
 * the packets meet too) starts or ends a port range: one port per piece. */
function portPieces(tables: readonly (Table | undefined)[], spec: RuleSpec): (number | undefined)[] {
  const own = spec.match.dport ?? spec.match.dports ?? spec.match.ctorigdstport;
  const ranges = own && !own.negated ? portRanges(own.value) : undefined;
  if (!ranges) return [undefined];
  const out: number[] = [];
  for (const [lo, hi] of ranges) {
    out.push(lo);
    // A single port is one piece; a range is cut where any rule's ports begin or end.
    if (hi > lo)
      for (const table of tables)
        for (const chain of table?.chains.values() ?? [])
          for (const c of cutsOf(chain)) if (c > lo && c <= hi) out.push(c);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

/** One kind of the ordinary packets of a rule: a piece of its ports, the interface they arrive on, their destination. */
interface Piece {
  port: number | undefined;
  arrival: string | undefined;
  to: string | undefined;
}

/** The ordinary packets of `spec` entering on built-in chain `start`: one per port piece, interface they
 * arrive on and destination. `named`: their destination is worth naming (the rules tell the host's
 * addresses apart). */
function piecesOf(table: Table, spec: RuleSpec, start: string, host: Scope): { pieces: Piece[]; named: boolean } {
  const hook = HOOKS[start] ?? "in";
  const tables = [table, ...natOf(host).tables.map((t) => t.table), host.other?.ruleset.tables.get(table.name)];
  const arrivals = arrivalsOf(spec, hook, distinctInterfaces(host.interfaces, spec, tables));
  const addresses = distinctAddresses(host.addresses, spec, tables);
  const tos = host.to === undefined ? destinationsOf(spec, hook, addresses) : [host.to];
  const pieces = portPieces(tables, spec).flatMap((port) =>
    arrivals.flatMap((arrival) => tos.map((to) => ({ port, arrival, to }))),
  );
  return { pieces, named: (addresses?.length ?? 0) > 1 };
}

/** The ordinary packets of `spec` from built-in chain `start`, one per piece (piecesOf), with their text. */
function packetsOf(table: Table, spec: RuleSpec, start: string, host: Scope) {
  const hook = HOOKS[start] ?? "in";
  const { pieces, named } = piecesOf(table, spec, start, host);
  return pieces.map(({ port, arrival, to }) => {
    const o = ordinaryOf(spec, hook, port, arrival, table, to);
    return { o, text: packetsText(o, port, host.interfaces, named) };
  });
}

/** Both backends' nat tables (the one iptables uses first) and the host's addresses, for nat PREROUTING. */
function natOf(host: HostContext): Nat {
  const mine = host.nat?.tables.get("nat");
  const theirs = host.other?.ruleset.tables.get("nat");
  return {
    tables: [
      ...(mine ? [{ table: mine }] : []),
      ...(theirs && host.other ? [{ table: theirs, backend: host.other.backend }] : []),
    ],
    local: host.addresses ?? [],
  };
}

/** "tcp 8080", "on eth0" when the host's interfaces are judged one by one, "to 198.18.1.2" when its addresses are. */
function packetsText(
  o: Ordinary,
  port: number | undefined,
  host: readonly string[] | undefined,
  named: boolean,
): string {
  const on = host?.length && o.inInterface ? ` on ${o.inInterface}` : "";
  const to = named && o.destination ? ` to ${o.destination}` : "";
  return ([o.protocol ?? "", port ?? ""].join(" ").trim() || "its packets") + on + to;
}

/**
 * Is `spec` effective as rule `line` of `chain`: does every ordinary packet of every one of its ports,
 * from every built-in chain that leads there (or from the top of `chain` when `local`), get its verdict?
 */
function judge(table: Table, chain: string, spec: RuleSpec, line: number, host: Scope, local = false): Judgement {
  const verdict = spec.target ?? "";
  const starts = local ? [chain] : entryChains(table, chain);
  if (!starts.length) {
    const text = `no rule of ${(BUILTIN_CHAINS[table.name] ?? []).join(", ")} jumps to ${chain}`;
    const rule = pseudoRule(table.name, chain, `-A ${chain}`);
    const shadow = { ...rule, text, path: "", verdict: "", packets: "", why: `no packet reaches ${chain}: ${text}` };
    return { effective: false, decides: false, shadow, first: shadow };
  }
  let first: Shadow | undefined;
  const nat = local ? undefined : natOf(host);
  for (const start of starts)
    for (const { o, text: packets } of packetsOf(table, spec, start, host)) {
      const ends = finals(table, start, endings(table, start, o, { chain, index: line - 1, verdict }, spec, nat), host);
      // Packets DNAT-ed elsewhere are admitted (to another host) by an ACCEPT: the same verdict.
      const against = ends.find(
        ({ e, b }) => b.verdict !== verdict && !(e.via?.kind === "away" && verdict === "ACCEPT"),
      );
      if (against) {
        const shadow = decider(table, start, against, packets, host);
        return { effective: false, decides: false, shadow, first: first ?? shadow };
      }
      const other = ends.find(({ e, b }) => !e.out.ours || b.other);
      if (other && !first) first = decider(table, start, other, packets, host);
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
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; line: number } & Scope,
): { port?: number; arrival?: string; to?: string; verdicts: string[]; ours: boolean; others: boolean }[] {
  const { table } = lookup(ruleset, request.table, request.chain);
  const spec = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const starts = entryChains(table, request.chain);
  const { pieces } = piecesOf(table, spec, starts[0] ?? request.chain, request);
  return pieces.map(({ port, arrival, to }) => {
    const at = { chain: request.chain, index: request.line - 1, verdict: spec.target ?? "" };
    const nat = natOf(request);
    const outs = (starts.length ? starts : [request.chain]).flatMap((start) =>
      finals(
        table,
        start,
        endings(table, start, ordinaryOf(spec, HOOKS[start] ?? "in", port, arrival, table, to), at, spec, nat),
        request,
      ),
    );
    return {
      port,
      ...(arrival !== undefined && { arrival }),
      ...(to !== undefined && { to }),
      verdicts: [...new Set(outs.map((o) => o.b.verdict))],
      ours: outs.some((o) => o.e.out.ours),
      others: outs.some((o) => !o.e.out.ours || o.b.other),
    };
  });
}

/** The lowest line of the chain where the rule decides its packets (that only shrinks going down). */
function lowest(table: Table, chain: Chain, spec: RuleSpec, host: HostContext, local: boolean): number {
  let [lo, hi] = [1, chain.rules.length + 1]; // the rule decides at lo
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (judge(table, chain.name, spec, mid, host, local).decides) lo = mid;
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
  request: { table: string; chain: string; rule: RuleSpec | readonly string[]; position?: Position } & HostContext,
): Placement {
  const host: HostContext = request;
  const { table, chain } = lookup(ruleset, request.table, request.chain);
  const spec = Array.isArray(request.rule) ? parseSpec(request.rule as string[]) : (request.rule as RuleSpec);
  const position = request.position ?? "auto";
  const end = chain.rules.length + 1;
  const ruleAt = (line: number) => `line ${line} (${shown(chain.rules[line - 1].text)})`;
  if (position === "auto") {
    if (!spec.target || !VERDICTS.has(spec.target) || spec.goto)
      return { line: end, reason: "end of chain: the rule gives no verdict of its own", effective: true };
    const first = judge(table, chain.name, spec, 1, host);
    if (!first.decides) {
      // Only in a user chain: its packets are decided before they reach it, or never reach it.
      const line = lowest(table, chain, spec, host, true);
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
    const line = lowest(table, chain, spec, host, false);
    if (line === end) return { line, reason: "end of chain: it decides its packets there", effective: true };
    const below = judge(table, chain.name, spec, line + 1, host);
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
      ? judge(table, chain.name, spec, line, host)
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
export function shadowing(
  ruleset: Ruleset,
  at: { table: string; chain: string; line: number } & Scope,
): Shadow | undefined {
  const { table, chain } = lookup(ruleset, at.table, at.chain);
  const ours = chain.rules[at.line - 1];
  if (!ours) throw new PlacementError(`${chain.name} has no line ${at.line} (it has ${chain.rules.length} rules)`);
  if (!ours.target || !VERDICTS.has(ours.target) || ours.goto) return undefined;
  return judge(table, chain.name, ours, at.line, at).shadow;
}
