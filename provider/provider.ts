// The PortRule lifecycle as the Pulumi engine calls it: thin methods over the rule core (pure) and
// the host agent (I/O). This module's path, `pulumi-iptables/dist/provider`, is recorded in every
// stack's state through the serialized provider: keep it and its exports loadable in later versions.
import { createHash } from "node:crypto";
import { log as pulumiLog } from "@pulumi/pulumi";
import {
  check as checkInputs,
  DOCKER_USER,
  isUnknown,
  makeTag,
  matchesPacket,
  parseSpec,
  renderRule,
  ruleText,
} from "./rules";
import type { Backend, Family, FamilyName, RuleInputs } from "./rules";
import { hostAgent } from "./host/agent";
import type {
  ChangeResult,
  HostAgent,
  DeleteRequest,
  HostFacts,
  InsertRequest,
  Placement,
  ReadResult,
} from "./host/agent";
import { familyName } from "./host/protocol";
import { addressOf, dialForeseen, foresee, pinHostKey, redactError } from "./ssh";
import type { Logger } from "./ssh";
import { lockoutOf } from "./lockout";

/** Inputs that define the rule on the host: a change to any of them replaces it. */
export const RULE_DEFINING = [
  "table",
  "chain",
  "protocol",
  "ports",
  "action",
  "rejectWith",
  "source",
  "inInterface",
  "comment",
  "ipVersion",
  "position",
] as const;

type PerFamily<T> = Partial<Record<FamilyName, T>>;

/** What a created rule records in state beyond its checked inputs: the resource's outputs. */
export interface PortRuleOutputs {
  /** Unique part of the identity tag: derived from what defines the rule (so preview shows the tag
   * that up adds), random instead when that tag was on the host already; fixed at create. */
  unique: string;
  /** The identity tag carried in the rule's comment. */
  tag: string;
  /** The host the rule is on (also inside the secret connection). */
  host: string;
  /** The rule as `iptables -S` prints it, per family. */
  rules: PerFamily<string>;
  /** The line the rule was inserted at, and why there. */
  insertedAt: PerFamily<number>;
  placement: PerFamily<string>;
  /** Where the rule is now (refresh). */
  line: PerFamily<number>;
  /** Counters (refresh); `packets`/`bytes` are the totals over the families. */
  counters: PerFamily<{ packets: number; bytes: number }>;
  packets: number;
  bytes: number;
  /** False when a rule above ours shadows it (decides its packets otherwise), when Docker DNATs its port
   * away from INPUT, or when one of the host's nft chains on the input hook does not accept what an
   * ACCEPT opens; `shadowedBy` names that rule, Docker's DNAT or the nft table and chain. */
  effective: boolean;
  shadowedBy: PerFamily<string>;
  /** Families whose rule has gone from the host (refresh); the next `up` replaces the rule. */
  missing: FamilyName[];
  backend: Backend;
  iptablesVersion: string;
  hostKeyFingerprint: string;
  /** The jump host's key fingerprint seen at create (when there is a jump host): required from then on. */
  proxyHostKeyFingerprint?: string;
  /** For ACCEPT rules: whether anything listens on the port(s) (`ss`), at create. */
  listening?: boolean;
  persisted: false | { mechanism: string; files: string[] };
  /** With `adopt` (from preview on): the untagged rule, per family, that up takes over where the chain
   * holds it. Preview cannot reach the host, so whether it is there is decided at up. */
  adopts: PerFamily<string>;
  /** What create took over: the hand-made rule per family, its line and the counters it kept. */
  adopted: PerFamily<{ line: number; rule: string; packets: number; bytes: number }>;
}

/** What a created rule records in state: its checked inputs and its outputs. */
export type PortRuleState = RuleInputs & PortRuleOutputs;

const families = (v: RuleInputs["ipVersion"]): Family[] => (v === "both" ? [4, 6] : v === "ipv6" ? [6] : [4]);

/** Pulumi's log: shown by the engine with the resource's diagnostics. */
function logger(): Logger {
  return {
    info: (m) => pulumiLog.info(m),
    warn: (m) => pulumiLog.warn(m),
    debug: (m) => pulumiLog.debug(m),
    error: (m) => pulumiLog.error(m),
  };
}

/** Inputs or outputs as the engine hands them over: not validated yet. */
type Props = Record<string, unknown> & { connection?: Record<string, unknown> };

const hostOf = (inputs: Props): unknown => inputs.connection?.host;
const sameRule = (a: Props, b: Props) =>
  hostOf(a) === hostOf(b) && RULE_DEFINING.every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]));

const perFamily = <T>(inputs: RuleInputs, value: (f: Family) => T): PerFamily<T> =>
  Object.fromEntries(families(inputs.ipVersion).map((f) => [familyName(f), value(f)]));

/** The rule as made by hand, without a tag, as `iptables -S` prints it: what `adopt` takes over. */
const twinOf = (inputs: RuleInputs, f: Family) => ruleText(inputs.chain, renderRule(inputs, f));

const hash12 = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("hex").slice(0, 12);

function uniqueOf(inputs: RuleInputs): string {
  return hash12([inputs.identity, inputs.connection?.host, ...RULE_DEFINING.map((k) => inputs[k])]);
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

/** Validates and normalizes; adds the identity tag and the exact rule text for `pulumi preview`. */
export async function check(olds: Record<string, unknown>, news: Record<string, unknown>) {
  const { inputs, failures } = checkInputs(olds, news);
  if (failures.length) return { inputs: news, failures };
  if (Object.keys(olds).length === 0) foresee(inputs.connection); // a new rule: dialled early in an up
  const keep = typeof olds.unique === "string" && sameRule(olds, inputs as unknown as Record<string, unknown>);
  // Derived from what defines the rule, so preview and up agree on the tag. A create that finds a
  // rule with this tag on the host takes it over under the tag's successor (create, below).
  const unique = keep ? (olds.unique as string) : uniqueOf(inputs);
  const out: Record<string, unknown> = { ...inputs, unique };
  if (inputs.identity && !isUnknown(inputs)) {
    const tag = makeTag(inputs.identity, unique);
    out.tag = tag;
    out.rules = Object.fromEntries(
      families(inputs.ipVersion).map((f) => [familyName(f), ruleText(inputs.chain, renderRule(inputs, f, tag))]),
    );
    out.adopts = inputs.adopt ? perFamily(inputs, (f) => twinOf(inputs, f)) : {};
    if (inputs.adopt && !keep)
      logger().info?.(
        `adopt: up takes over ${Object.values(out.adopts as PerFamily<string>).join(" and ")} where ${inputs.chain} on ` +
          `${inputs.connection.host} holds it without a tag (same line, counters kept), else inserts the rule; ` +
          `preview cannot reach the host to tell which`,
      );
  }
  return { inputs: out, failures: [] };
}

/**
 * Replace on anything that defines the rule, update credentials and persist in place. No I/O; it
 * remembers, for the rest of this run, what the old state says that a replacement's create and the old
 * rule's delete must honour: the host keys recorded (the engine checks a replacement's inputs again
 * without the old ones, and create sees only those), and whether the new inputs opt in to a lockout.
 */
export async function diff(_id: string, olds: Props, news: Props) {
  rememberPins(olds as unknown as PortRuleState);
  const replaces: string[] = RULE_DEFINING.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
  if (hostOf(olds) !== hostOf(news)) replaces.push("connection.host");
  if (Array.isArray(olds.missing) && olds.missing.length) replaces.push("missing");
  if (replaces.length && news.allowLockout === true && typeof olds.tag === "string") replacedOptIn.add(olds.tag);
  const updates = ["persist", "allowLockout", "adopt", "rollbackAfter"].filter((k) => olds[k] !== news[k]);
  const { host: _oh, ...oldConn } = olds.connection ?? {};
  const { host: _nh, ...newConn } = news.connection ?? {};
  if (JSON.stringify(oldConn) !== JSON.stringify(newConn)) updates.push("connection");
  if (replaces.length || updates.length) foresee(news.connection); // dialled early in an up
  return {
    changes: replaces.length > 0 || updates.length > 0,
    replaces,
    deleteBeforeReplace: false,
  };
}

/** Old rules (by tag) whose replacement opted in to a lockout (`allowLockout: true` in the new inputs). */
const replacedOptIn = new Set<string>();

/** Has the operator opted in to a lockout by this rule's change: its own allowLockout, or, for the old rule
 * of a replacement, the new inputs'. The guards and the choice of a fresh confirmation ask this alike. */
const optedIn = (r: RuleInputs & { tag?: string }) =>
  r.allowLockout === true || (r.tag !== undefined && replacedOptIn.has(r.tag));

/** The provider's packets arrive through INPUT (and the user chains it jumps to), not FORWARD, OUTPUT or
 * Docker's DOCKER-USER (which FORWARD jumps to). */
const reachesInput = (chain: string) => !["FORWARD", "OUTPUT", DOCKER_USER].includes(chain);

/** A lockout found with `allowLockout: true`: go ahead, and say so. */
function allowed(message: string, log: Logger): undefined {
  log.warn?.(`allowLockout is set, so this goes ahead: ${message}`);
  return undefined;
}

/** The insert guard: would this DROP/REJECT rule match the provider's own SSH session? */
function insertGuard(inputs: RuleInputs, log: Logger): InsertRequest["guard"] {
  if (inputs.action === "ACCEPT" || !reachesInput(inputs.chain)) return undefined;
  return (origin, family) => {
    if (origin.clientAddress.includes(":") !== (family === 6)) return undefined;
    const spec = parseSpec(renderRule(inputs, family, "pulumi-iptables:guard/x/x/guard"));
    if (!matchesPacket(spec, { protocol: "tcp", source: origin.clientAddress, dport: origin.serverPort }))
      return undefined;
    const message =
      `this ${inputs.action} rule on ${inputs.chain} would match the provider's own SSH connection ` +
      `(tcp from ${origin.clientAddress} to port ${origin.serverPort}) and cut it off`;
    if (optedIn(inputs)) return allowed(message, log);
    return `${message}: narrow "port" or "source", or set allowLockout: true if that is really intended`;
  };
}

/**
 * The removal guard: would the host stop accepting the provider's SSH connections without this rule?
 * It covers a rule removed from the program, and the old rule of a replacement (a changed port or
 * position: the new rule is in place by then, so the chain is judged with it).
 */
function deleteGuard(props: PortRuleState, log: Logger): DeleteRequest["guard"] {
  // Judged on the filter table, where the listing the guard gets is of the rule's own table.
  if (props.action !== "ACCEPT" || props.table !== "filter" || !reachesInput(props.chain)) return undefined;
  return (origin, family, before, after) => {
    if (origin.clientAddress.includes(":") !== (family === 6)) return undefined;
    const message = lockoutOf(
      before,
      after,
      origin,
      `removing the rule ${props.rules[familyName(family)] ?? props.tag}`,
    );
    if (!message) return undefined;
    if (optedIn(props)) return allowed(message, log);
    return (
      `${message}. Keep SSH open first (a rule that accepts it from ${origin.clientAddress}), or, if that is ` +
      `really intended, set allowLockout: true on this PortRule and run pulumi up, then remove or change it`
    );
  };
}

/** Does the rule's port list hold this port? */
function covers(inputs: RuleInputs, port: number): boolean {
  const items = Array.isArray(inputs.port) ? inputs.port : [inputs.port];
  return items.some((p) => (typeof p === "number" ? p === port : p.from <= port && port <= p.to));
}

/**
 * Could this change cut off new SSH connections from the provider, beyond what the lockout guard
 * rules out? A DROP/REJECT on INPUT (or a user chain) that covers the SSH port (the guard reads the
 * existing connection, not new ones), and the delete of an ACCEPT of the SSH port. Such changes are
 * confirmed over a fresh SSH connection, so one that locks the provider out reverts itself. Not
 * when opted in (optedIn: the old rule of a replacement by the new inputs' allowLockout): the operator has said the lockout is meant (access moves elsewhere), and the
 * change is confirmed over the transaction's own connection, so it stays.
 */
export function mayLockOut(inputs: RuleInputs & { tag?: string }, change: "insert" | "delete"): boolean {
  if (optedIn(inputs) || ["FORWARD", "OUTPUT", DOCKER_USER].includes(inputs.chain)) return false;
  const ssh = inputs.protocol === "tcp" && covers(inputs, inputs.connection.port);
  if (change === "delete") return inputs.action === "ACCEPT" && ssh;
  return inputs.action !== "ACCEPT" && ssh;
}

/** Whether anything listens on the rule's ports; undefined when the host cannot tell. */
function listeningOn(facts: HostFacts, inputs: RuleInputs): boolean | undefined {
  if (!facts.listening) return undefined;
  const listening = facts.listening;
  const items = Array.isArray(inputs.port) ? inputs.port : [inputs.port];
  return items.some((p) => {
    const [from, to] = typeof p === "number" ? [p, p] : [p.from, p.to];
    for (const entry of listening) {
      const [proto, port] = entry.split("/");
      if (proto === inputs.protocol && Number(port) >= from && Number(port) <= to) return true;
    }
    return false;
  });
}

/** The families of a rule that an insert placed (all of them at create; at an update, those it put back). */
const placedFamilies = (inputs: RuleInputs, res: ChangeResult) =>
  families(inputs.ipVersion).filter((f) => res.families[f]);

/** The state of a rule the host agent just inserted (in the families it placed). */
function createdState(inputs: RuleInputs, unique: string, tag: string, res: ChangeResult): PortRuleState {
  const fams = placedFamilies(inputs, res);
  const placed = (pick: (p: Placement) => unknown) =>
    Object.fromEntries(fams.map((f) => [familyName(f), pick(res.families[f]!)]));
  const { facts, persisted } = res;
  const listening = inputs.action === "ACCEPT" ? listeningOn(facts, inputs) : undefined;
  return {
    ...inputs,
    unique,
    tag,
    host: inputs.connection.host,
    rules: placed((p) => p.rule),
    insertedAt: placed((p) => p.line),
    placement: placed((p) => p.reason),
    line: placed((p) => p.line),
    counters: placed((p) => ({ packets: p.adopted ? p.twin!.packets : 0, bytes: p.adopted ? p.twin!.bytes : 0 })),
    packets: fams.reduce((n, f) => n + (res.families[f]!.adopted ? res.families[f]!.twin!.packets : 0), 0),
    bytes: fams.reduce((n, f) => n + (res.families[f]!.adopted ? res.families[f]!.twin!.bytes : 0), 0),
    // Not effective where placement put it (an explicit position), or because of Docker's DNAT or an nft
    // chain that does not accept: say which.
    effective: fams.every((f) => !res.families[f]!.shadowedBy && !res.beside[f]?.blockedBy),
    shadowedBy: Object.fromEntries(
      fams.flatMap((f) => {
        const why = res.families[f]!.shadowedBy ?? res.beside[f]?.blockedBy;
        return why ? [[familyName(f), why]] : [];
      }),
    ),
    missing: [],
    backend: facts.backend,
    iptablesVersion: facts.version,
    hostKeyFingerprint: facts.hostKeyFingerprint,
    // Only for ACCEPT; absent, not undefined, otherwise (the engine's wire format has no undefined).
    // Unknown (no ss on the host) stays out too: the engine's wire format refuses undefined.
    ...(listening === undefined ? {} : { listening }),
    // The save writes every family's rules: the files of each of the rule's families hold it.
    persisted: persisted
      ? { mechanism: persisted.mechanism, files: filesOf(persisted.files, families(inputs.ipVersion)) }
      : false,
    adopts: inputs.adopt ? perFamily(inputs, (f) => twinOf(inputs, f)) : {},
    adopted: Object.fromEntries(
      fams.flatMap((f) => {
        const p = res.families[f]!;
        return p.adopted && p.twin ? [[familyName(f), { ...p.twin, line: p.line }]] : [];
      }),
    ),
  };
}

/** Tells the operator where each family's rule went and why, and warns of an ACCEPT nobody answers on. */
function reportCreated(state: PortRuleState, res: ChangeResult, log: Logger): void {
  for (const f of placedFamilies(state, res)) {
    const p = res.families[f]!;
    // An adoption is a swap in one restore: the tagged rule in at the twin's line, the twin out by its text.
    const verb = `-I $1 ${p.line}`;
    log.info?.(`${p.rule.replace(/^-A (\S+)/, verb)} on ${state.host} (${familyName(f)}): ${p.reason}`);
    for (const w of res.beside[f]?.warnings ?? []) log.warn?.(`${familyName(f)}: ${w}`);
    if (p.twin && !p.adopted)
      log.warn?.(
        `${state.chain} on ${state.host} (${familyName(f)}) already holds this rule without a tag at line ${p.twin.line} ` +
          `(${p.twin.rule}, made by hand or by another tool): the tagged rule went in beside it, and the untagged one ` +
          `stays, untracked; set adopt: true to take it over in place (same line, counters kept)`,
      );
  }
  if (state.action === "ACCEPT" && state.listening === undefined)
    log.info?.(
      `whether anything listens on ${state.protocol} ${state.ports} on ${state.host} is unknown: the host has no ss`,
    );
  if (state.listening === false)
    log.warn?.(
      `nothing listens on ${state.protocol} ${state.ports} on ${state.host}: the port is open, but no service answers on it`,
    );
}

/** Every secret of a connection (the target's and the jump host's). */
const secretsOf = (conn: Partial<RuleInputs["connection"]> | undefined): (string | undefined)[] =>
  [conn, conn?.proxy].flatMap((c) => [c?.password, c?.privateKey, c?.privateKeyPassword]);

/** Runs a lifecycle step; whatever it throws reaches the engine with every secret redacted, causes included. */
async function guarded<T>(conn: Partial<RuleInputs["connection"]> | undefined, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw redactError(err, secretsOf(conn));
  }
}

/** What a create asks of the host: the rule, tagged `tag`, inserted in these families where placement
 * says, guarded, commit-confirmed, and saved when `persist` is set. */
function insertRequest(inputs: RuleInputs, fams: Family[], tag: string, log: Logger) {
  return {
    kind: "insert" as const,
    table: inputs.table,
    chain: inputs.chain,
    tag,
    specs: Object.fromEntries(fams.map((f) => [f, renderRule(inputs, f, tag)])),
    position: inputs.position,
    persist: inputs.persist,
    guard: insertGuard(inputs, log),
    twins: Object.fromEntries(fams.map((f) => [f, twinOf(inputs, f)])),
    adopt: inputs.adopt,
    freshConfirm: mayLockOut(inputs, "insert"),
    rollbackAfter: inputs.rollbackAfter,
  };
}

export async function create(inputs: RuleInputs & { unique: string }) {
  dialForeseen();
  return guarded(inputs.connection, () => createRule(inputs));
}

async function createRule(inputs: RuleInputs & { unique: string }) {
  const log = logger();
  const identity = inputs.identity;
  if (!identity) throw new Error("PortRule inputs lack their identity: create PortRule through its constructor");
  const fams = families(inputs.ipVersion);
  const agent = hostAgent(inputs.connection, log);
  // The host (and jump host) must present the keys pinned for their addresses in this run: those of
  // the rule this one replaces, of other rules on the host, or the first seen.
  await agent.session.connect();
  const candidates = lineage(inputs.unique).map((unique) => {
    const tag = makeTag(identity, unique);
    return { unique, tag, specs: Object.fromEntries(fams.map((f) => [f, renderRule(inputs, f, tag)])) };
  });
  const res = await agent.change({
    ...insertRequest(inputs, fams, candidates[0].tag, log),
    successors: candidates.slice(1).map(({ tag, specs }) => ({ tag, specs })),
  });
  const chosen = candidates.find((c) => c.tag === res.tag) ?? candidates[0];
  const state = createdState(inputs, chosen.unique, chosen.tag, res);
  const jump = agent.session.proxy?.hostKey;
  if (jump) state.proxyHostKeyFingerprint = jump.fingerprint;
  reportCreated(state, res, log);
  return { id: chosen.tag, outs: state };
}

/**
 * The rule per family exactly as it was rendered and recorded in state at create (`rules`): the only
 * listed rule that refresh reads and update or delete act on. State written before `rules` was
 * recorded gets the rule rendered from its inputs and tag, as create rendered it.
 */
function recordedRules(props: PortRuleState): Partial<Record<Family, string>> {
  return Object.fromEntries(
    families(props.ipVersion).map((f) => [
      f,
      props.rules?.[familyName(f)] ?? ruleText(props.chain, renderRule(props, f, props.tag)),
    ]),
  );
}

/** The rules files that hold a rule of these families. */
const filesOf = (files: [string, string], fams: Family[]) => fams.map((f) => files[f === 4 ? 0 : 1]);

/**
 * Pins the host keys a created rule recorded (the host's, and the jump host's) to their addresses, for
 * this run: every handshake there must present them, checked inside the handshake before any credential
 * is sent. A `hostKey` given in the connection takes their place for that connection.
 */
function rememberPins(props: Partial<PortRuleState>): void {
  const conn = props.connection;
  if (!conn || typeof conn.host !== "string") return;
  const recorded = "the key recorded in state when this rule was created";
  const args = conn;
  // A hostKey given takes the place of what was recorded: that is how a new key is accepted.
  if (props.hostKeyFingerprint && !args.hostKey) pinHostKey(addressOf(args), props.hostKeyFingerprint, recorded);
  if (args.proxy && props.proxyHostKeyFingerprint && !args.proxy.hostKey)
    pinHostKey(addressOf(args.proxy), props.proxyHostKeyFingerprint, `for the jump host, ${recorded}`);
}

/** The agent for a created rule, connected: the host keys recorded at create are required. */
async function agentOf(conn: RuleInputs["connection"], props: Partial<PortRuleState>) {
  rememberPins({ ...props, connection: conn });
  const agent = hostAgent(conn, logger());
  await agent.session.connect();
  return agent;
}

export async function read(id: string, props: PortRuleState) {
  return guarded(props.connection, () => readRule(id, props));
}

async function readRule(id: string, props: PortRuleState) {
  const agent = await agentOf(props.connection, props);
  const live = await listed(agent, props);
  if (isGone(props, live)) return { id: "", props: {} };
  return { id, props: withLive(props, live) };
}

/** The rule as a listing of the host shows it, per family; a family it does not show is gone (refused
 * when the rule is in the other iptables backend's tables instead). What refresh reads. */
async function listed(agent: HostAgent, props: PortRuleState): Promise<ReadResult> {
  const fams = families(props.ipVersion);
  const rules = recordedRules(props);
  const live = await agent.read(props.table, props.chain, props.tag, rules, props.action);
  await agent.refuseIfSwitched(
    props.table,
    props.chain,
    props.tag,
    rules,
    fams.filter((f) => !live.families[f]),
  );
  return live;
}

/** Whether refresh drops the rule from state: no family lists it, and no rule carries its tag either
 * (one that does may be this rule printed in another form, say after an iptables upgrade: state keeps
 * it, missing, and a warning names that rule). Pure. */
export const isGone = (props: PortRuleState, live: ReadResult): boolean =>
  families(props.ipVersion).every((f) => !live.families[f] && !live.carried.includes(f));

/** The state as a listing shows the rule: its lines, counters and shadowing; the families the listing
 * does not show are `missing`. Pure. */
export function withLive(props: PortRuleState, live: ReadResult): PortRuleState {
  const state: PortRuleState = {
    ...props,
    line: {},
    counters: {},
    shadowedBy: {},
    missing: [],
    packets: 0,
    bytes: 0,
    effective: true,
  };
  state.backend = live.facts.backend;
  state.iptablesVersion = live.facts.version;
  for (const f of families(props.ipVersion)) {
    const n = familyName(f);
    const r = live.families[f];
    if (!r) {
      state.missing.push(n);
      state.effective = false;
      continue;
    }
    state.line[n] = r.line;
    state.counters[n] = { packets: r.packets, bytes: r.bytes };
    state.packets += r.packets;
    state.bytes += r.bytes;
    const by = r.shadowedBy ?? r.beside.blockedBy;
    if (by) {
      state.shadowedBy[n] = by;
      state.effective = false;
    }
  }
  return state;
}

/**
 * Whether an update must list the rule before it records anything, as a refresh would: the host presented
 * another key than the one recorded (rebuilt or replaced, so the rule may be gone), or the hostKey given
 * changed (how an operator accepts a new key after a rebuild). Pure.
 */
export function mustVerify(olds: Partial<PortRuleState>, news: RuleInputs, seen: string): boolean {
  return seen !== olds.hostKeyFingerprint || olds.connection?.hostKey !== news.connection.hostKey;
}

/** A rule's state once the families a listing did not show are back: those as inserted (`made`), the
 * others as listed (`live`). Pure. */
export function putBackState(live: PortRuleState, made: PortRuleState): PortRuleState {
  const back = new Set(Object.keys(made.rules));
  const merged = <T>(pick: (s: PortRuleState) => PerFamily<T>): PerFamily<T> => ({
    ...Object.fromEntries(Object.entries(pick(live)).filter(([n]) => !back.has(n))),
    ...pick(made),
  });
  const shadowedBy = merged((s) => s.shadowedBy);
  return {
    ...made,
    rules: merged((s) => s.rules),
    insertedAt: merged((s) => s.insertedAt),
    placement: merged((s) => s.placement),
    line: merged((s) => s.line),
    counters: merged((s) => s.counters),
    shadowedBy,
    adopted: merged((s) => s.adopted),
    packets: live.packets + made.packets,
    bytes: live.bytes + made.bytes,
    effective: Object.keys(shadowedBy).length === 0,
    missing: [],
  };
}

/**
 * Inserts again, as a create would (placed, guarded, commit-confirmed, saved when persist is set; under
 * the rule's own tag), the families a listing showed gone. When that cannot be done, the state says they
 * are missing (so the next up replaces the rule) and a warning says why.
 */
async function putBack(agent: HostAgent, state: PortRuleState, log: Logger): Promise<PortRuleState> {
  const gone = families(state.ipVersion).filter((f) => state.missing.includes(familyName(f)));
  let res: ChangeResult;
  try {
    res = await agent.change(insertRequest(state, gone, state.tag, log));
  } catch (err) {
    const why = redactError(err instanceof Error ? err : new Error(String(err)), secretsOf(state.connection));
    log.warn?.(
      `the rule is not on ${state.host} (${state.missing.join(", ")}: not in a listing after its host key changed), ` +
        `and putting it back failed: ${why.message}. It is recorded as missing; the next pulumi up replaces it`,
    );
    return { ...state, persisted: false };
  }
  const made = createdState(state, state.unique, state.tag, res);
  reportCreated(made, res, log);
  return putBackState(state, made);
}

export async function update(id: string, olds: PortRuleState, news: RuleInputs & { unique: string }) {
  dialForeseen();
  return guarded(news.connection, () => guarded(olds.connection, () => updateRule(id, olds, news)));
}

async function updateRule(_id: string, olds: PortRuleState, news: RuleInputs & { unique: string }) {
  // The new login must work before it goes into state: it connects (the host keys recorded at
  // create, or the hostKey now given, checked in the handshake), and with sudo, `sudo -n` runs a
  // shell as root. Unless the host key or the persist flag changed, that is the whole update.
  const log = logger();
  const agent = await agentOf(news.connection, { ...olds, connection: news.connection });
  if (news.connection.sudo) await agent.session.run("true");
  const fams = families(olds.ipVersion);
  const seen = agent.session.hostKey!.fingerprint;
  let outs: PortRuleState = {
    ...olds,
    ...news,
    unique: olds.unique,
    tag: olds.tag,
    rules: olds.rules,
    hostKeyFingerprint: seen,
  };
  const jump = agent.session.proxy?.hostKey;
  if (jump) outs.proxyHostKeyFingerprint = jump.fingerprint;
  else delete outs.proxyHostKeyFingerprint;
  if (mustVerify(olds, news, seen)) {
    outs = withLive(outs, await listed(agent, outs));
    if (outs.missing.length) return { outs: await putBack(agent, outs, log) };
  }
  if (news.persist !== olds.persist) {
    const { facts } = await agent.change({
      kind: "persist",
      table: olds.table,
      chain: olds.chain,
      families: fams,
      tag: olds.tag,
      rules: recordedRules(olds),
      persist: news.persist,
      handMade: handMadeOf(olds),
    });
    outs.persisted = news.persist
      ? { mechanism: facts.persistence.mechanism, files: filesOf(facts.persistence.files, fams) }
      : false;
  }
  return { outs };
}

export async function remove(id: string, props: PortRuleState) {
  dialForeseen();
  return guarded(props.connection, () => removeRule(id, props));
}

/**
 * What destroy puts back where an adopted rule was. With persist: false the hand-made rule was lent to
 * the PortRule for the runtime only (the boot files kept holding it, untagged: persist.ts, ADOPTED), so
 * destroy gives it back as it was, untagged at its line with its counters, and the boot files and the
 * live ruleset agree again; the operator's rule (an SSH accept, say) never goes away with the PortRule.
 * With persist: true the PortRule owns it, in the boot files too, and destroy removes it.
 */
function givenBack(props: PortRuleState): DeleteRequest["giveBack"] {
  const made = handMadeRules(props);
  return props.persist || !Object.keys(made).length ? undefined : made;
}

/** The hand-made rule each adopted family took over, as recorded at create (not as this version
 * would render it). */
function handMadeRules(props: PortRuleState): Partial<Record<Family, string>> {
  return Object.fromEntries(
    families(props.ipVersion).flatMap((f) => {
      const adopted = props.adopted?.[familyName(f)];
      return adopted ? [[f, adopted.rule]] : [];
    }),
  );
}

/** An adopted rule's recorded text and the hand-made rule it was, per family it adopted. */
const handMadeOf = (props: PortRuleState) =>
  Object.entries(handMadeRules(props)).flatMap(([f, handMade]) => {
    const rule = props.rules[familyName(Number(f) as Family)];
    return rule && handMade ? [{ rule, handMade }] : [];
  });

async function removeRule(_id: string, props: PortRuleState) {
  const agent = await agentOf(props.connection, props);
  const rules = recordedRules(props);
  const { families: deleted } = await agent.change({
    kind: "delete",
    table: props.table,
    chain: props.chain,
    families: families(props.ipVersion),
    tag: props.tag,
    rules,
    persist: props.persist,
    guard: deleteGuard(props, logger()),
    freshConfirm: mayLockOut(props, "delete"),
    giveBack: givenBack(props),
    rollbackAfter: props.rollbackAfter,
  });
  for (const p of Object.values(deleted))
    if (p?.reason.startsWith("gave back")) logger().info?.(`${props.host}: ${p.reason}`);
  // Gone from the tables iptables uses now, but maybe still in the other backend's: say so.
  const absent = families(props.ipVersion).filter((f) => !deleted[f]);
  await agent.refuseIfSwitched(props.table, props.chain, props.tag, rules, absent);
}
