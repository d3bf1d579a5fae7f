/**
 * What nat PREROUTING does to the ordinary packets of a rule before filter INPUT sees them (./walk,
 * followed through every chain it jumps to): nothing, a REDIRECT or a DNAT to the host itself (then
 * INPUT judges them under the translated port), or a DNAT to another address (then they go through
 * FORWARD and never reach INPUT: Docker's, CNI portmap's, firewalld's forward-port, Shorewall's DNAT).
 */
import type { Ordinary } from "./match";
import { portRanges } from "./ordinary";
import { address } from "./overlap";
import type { Rule, RuleSpec, Table } from "./parse";
import { type Hop, type Judged, type Outcome, outcomes } from "./walk";

/** What translated the packets: the rule, the path to it, and the backend whose tables hold it when
 * that is not the one iptables uses. */
interface By {
  rule: Rule;
  path: Hop[];
  backend?: string;
}

/** One way nat PREROUTING sends the packets, with the path to the rule that translates them. */
export type Fate =
  | { kind: "kept" }
  | ({ kind: "local"; port: number; address?: string } & By)
  | ({ kind: "away"; to: string } & By);

/** A nat table whose PREROUTING the kernel runs, and its backend when it is not the one iptables uses. */
export interface NatTable {
  table: Table;
  backend?: string;
}

/** What nat PREROUTING is judged with: the nat tables of both backends, the host's own addresses. */
export interface Nat {
  tables: readonly NatTable[];
  local: readonly string[];
}

/** `--to-destination` as DNAT prints it: "172.17.0.2:80", "[fd00::2]:80", "198.18.9.2", "fd00::2", ":8081". */
function destination(arg: string): { address: string; port?: number } {
  const bracketed = /^\[([^\]]*)\](?::(\d+))?/.exec(arg);
  const [address, port] = bracketed ? [bracketed[1], bracketed[2]] : arg.split(":").length > 2 ? [arg] : arg.split(":");
  const first = (v: string | undefined) => v?.split("-")[0];
  const p = first(port);
  return { address: first(address) ?? "", port: p ? Number(p) : undefined };
}

const LOOPBACK = /^(127\.|::1$)/;
const argOf = (r: Rule, name: string) => {
  const i = r.targetArgs.indexOf(name);
  return i >= 0 ? r.targetArgs[i + 1] : undefined;
};

/** What a translating rule does to packets to `dport`: a REDIRECT or a DNAT to the host stays local. */
function fateOf(by: By, dport: number, local: readonly string[]): Fate {
  const { rule } = by;
  if (rule.target === "REDIRECT") {
    const to = argOf(rule, "--to-ports");
    return { kind: "local", port: to ? Number(to.split(/[-:]/)[0]) : dport, ...by };
  }
  const to = argOf(rule, "--to-destination") ?? "";
  const d = destination(to);
  if (d.address === "") return { kind: "local", port: d.port ?? dport, ...by };
  if (LOOPBACK.test(d.address) || local.some((a) => address.contains(a, d.address)))
    return { kind: "local", port: d.port ?? dport, address: d.address, ...by };
  return { kind: "away", to, ...by };
}

/**
 * Every way nat PREROUTING (and the chains it reaches) sends the ordinary packets `o` (both branches
 * of a match the model cannot read): kept as they are, translated to a port of the host, or sent
 * elsewhere. `local`: the host's own addresses, where a DNAT to them stays on the host.
 * @example prerouting(parseRuleset(natSave).tables.get("nat"), { hook: "in", protocol: "tcp", dport: 8080 })
 *   // [{ kind: "away", to: "172.17.0.2:80", rule: { text: "-A DOCKER ! -i docker0 ... -j DNAT ..." }, path }]
 */
export function prerouting(
  nat: Table | undefined,
  o: Ordinary,
  local: readonly string[] = [],
  backend?: string,
): Fate[] {
  if (!nat?.chains.has("PREROUTING") || o.dport === undefined) return [{ kind: "kept" }];
  const fates: Fate[] = [];
  for (const out of outcomes(nat, "PREROUTING", o, { chain: "", index: -1, verdict: "" })) {
    const rule = out.hops.at(-1)?.rule;
    if ((out.verdict === "DNAT" || out.verdict === "REDIRECT") && rule)
      fates.push(fateOf({ rule, path: out.hops, ...(backend && { backend }) }, o.dport, local));
    else fates.push({ kind: "kept" });
  }
  return fates;
}

/**
 * Every way the nat PREROUTING of both backends sends the packets `o`. The kernel runs each nat table in
 * turn until one sets up the connection's translation (one that does not, or accepts, leaves it to the
 * next), in an order the listing does not show: where both translate, either may be first.
 */
export function preroutingAll(nat: Nat, o: Ordinary): Fate[] {
  return nat.tables.reduce<Fate[]>(
    (fates, t) =>
      fates.flatMap((f) =>
        prerouting(t.table, o, nat.local, t.backend).flatMap((x) =>
          f.kind === "kept" ? [x] : x.kind === "kept" ? [f] : [f, x],
        ),
      ),
    [{ kind: "kept" }],
  );
}

/** A decision about the ordinary packets of a rule entering filter INPUT, and how nat PREROUTING sent them there. */
export interface Ending {
  out: Outcome;
  /** The translation on the way (none: the packets come as they were sent). */
  via?: Exclude<Fate, { kind: "kept" }>;
  /** The packets as INPUT sees them (their port translated). */
  o: Ordinary;
}

/** Whether the rule's own ports take `port` (a rule without a port takes every one). */
function takes(spec: RuleSpec, port: number): boolean {
  const own = spec.match.dport ?? spec.match.dports;
  const ranges = own && !own.negated ? portRanges(own.value) : undefined;
  return !ranges || ranges.some(([a, b]) => a <= port && port <= b);
}

/**
 * What becomes of the ordinary packets `o` entering built-in chain `start` of `table` with the judged
 * rule at `at`: on filter INPUT, after nat PREROUTING (a translated port is judged under its new
 * number, where the rule counts only if its ports take it; packets sent elsewhere get "FORWARD").
 */
export function endings(
  table: Table,
  start: string,
  o: Ordinary,
  at: Judged,
  spec: RuleSpec,
  nat: Nat | undefined,
): Ending[] {
  const direct = (p: Ordinary, j: Judged) => outcomes(table, start, p, j).map((out) => ({ out, o: p }));
  if (table.name !== "filter" || start !== "INPUT" || !nat?.tables.length) return direct(o, at);
  return preroutingAll(nat, o).flatMap((fate): Ending[] => {
    if (fate.kind === "kept") return direct(o, at);
    if (fate.kind === "away") return [{ out: { verdict: "FORWARD", hops: [] }, via: fate, o }];
    // conntrack keeps the port (and address) the client asked for
    const moved = { ...o, dport: fate.port, origDport: o.dport, ...(fate.address && { destination: fate.address }) };
    return direct(moved, takes(spec, fate.port) ? at : { ...at, index: -1 }).map((e) => ({ ...e, via: fate }));
  });
}
