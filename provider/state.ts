// What a PortRule records in state, and how a change's or a listing's result maps onto it. Pure: no I/O,
// no process-wide state; the lifecycle verbs (lifecycle.ts) hand it what the host agent answered.
import { renderRule, ruleText } from "./rules";
import type { Backend, Family, FamilyName, RuleInputs } from "./rules";
import type { ChangeResult, DeleteRequest, HostFacts, Placement, ReadResult } from "./host";
import { familyName, fileOf } from "./host";

export type PerFamily<T> = Partial<Record<FamilyName, T>>;

/** What a created rule records in state beyond its checked inputs: the resource's outputs. */
export interface PortRuleOutputs {
  /** Unique part of the identity tag: a hash of what defines the rule (so preview shows the tag that up
   * adds), or the next one of its lineage (a hash of the one before, not random: lineage.ts) when the
   * host holds this resource's own identical rule under that tag already; fixed at create. */
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
  /** Where a rule out of effect would go now (refresh), per family it is shadowed in: the line position
   * "auto" chooses in the chain without it, and what would still keep it from effect there (no line makes
   * it effective: another rule, Docker's DNAT, an nft chain). What `pulumi up` heals by (heal.ts). */
  placeable?: PerFamily<{ line: number; shadowedBy?: string }>;
  /** The tag of the PortRule rule (of any stack) that shadows this one, per family (refresh). */
  shadowTag?: PerFamily<string>;
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

/** The families a rule's ipVersion asks for. */
export const families = (v: RuleInputs["ipVersion"]): Family[] => (v === "both" ? [4, 6] : v === "ipv6" ? [6] : [4]);

/** A value per family of the rule, keyed by family name as state records it. */
export const perFamily = <T>(inputs: RuleInputs, value: (f: Family) => T): PerFamily<T> =>
  Object.fromEntries(families(inputs.ipVersion).map((f) => [familyName(f), value(f)]));

/** The rule as made by hand, without a tag, as `iptables -S` prints it: what `adopt` takes over. */
export const twinOf = (inputs: RuleInputs, f: Family) => ruleText(inputs.chain, renderRule(inputs, f));

/**
 * The rule per family exactly as it was rendered and recorded in state at create (`rules`): the only
 * listed rule that refresh reads and update or delete act on. State written before `rules` was
 * recorded gets the rule rendered from its inputs and tag, as create rendered it.
 */
export function recordedRules(props: PortRuleState): Partial<Record<Family, string>> {
  return Object.fromEntries(
    families(props.ipVersion).map((f) => [
      f,
      props.rules?.[familyName(f)] ?? ruleText(props.chain, renderRule(props, f, props.tag)),
    ]),
  );
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

/**
 * What destroy puts back where an adopted rule was. With persist: false the hand-made rule was lent to
 * the PortRule for the runtime only (the boot files kept holding it, untagged: persist.ts, ADOPTED), so
 * destroy gives it back as it was, untagged at its line with its counters, and the boot files and the
 * live ruleset agree again; the operator's rule (an SSH accept, say) never goes away with the PortRule.
 * With persist: true the PortRule owns it, in the boot files too, and destroy removes it.
 */
export function givenBack(props: PortRuleState): DeleteRequest["giveBack"] {
  const made = handMadeRules(props);
  return props.persist || !Object.keys(made).length ? undefined : made;
}

/** An adopted rule's recorded text and the hand-made rule it was, per family it adopted. */
export const handMadeOf = (props: PortRuleState) =>
  Object.entries(handMadeRules(props)).flatMap(([f, handMade]) => {
    const rule = props.rules[familyName(Number(f) as Family)];
    return rule && handMade ? [{ rule, handMade }] : [];
  });

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

/** Each family of the rule that an insert placed, with its placement (all of them at create; at an
 * update, those it put back), in the rule's family order. */
export const placements = (inputs: RuleInputs, res: ChangeResult): [Family, Placement][] =>
  families(inputs.ipVersion).flatMap((f) => {
    const p = res.families[f];
    return p ? [[f, p]] : [];
  });

/** The packets and bytes a placed rule starts with: those of the hand-made rule it adopted, else none. */
const startCounters = (p: Placement) => (p.adopted && p.twin ? wire(p.twin) : { packets: 0, bytes: 0 });

/** Counters as the state holds them: the engine's wire format carries numbers (doubles), exact up to 2^53. */
const wire = (c: { packets: bigint; bytes: bigint }) => ({ packets: Number(c.packets), bytes: Number(c.bytes) });

/** The state of a rule the host agent just inserted (in the families it placed). */
export function createdState(inputs: RuleInputs, unique: string, tag: string, res: ChangeResult): PortRuleState {
  const placed = placements(inputs, res);
  const byName = <T>(pick: (p: Placement, f: Family) => T | undefined): PerFamily<T> =>
    Object.fromEntries(
      placed.flatMap(([f, p]) => {
        const v = pick(p, f);
        return v === undefined ? [] : [[familyName(f), v]];
      }),
    );
  const { facts, persisted } = res;
  const listening = inputs.action === "ACCEPT" ? listeningOn(facts, inputs) : undefined;
  return {
    ...inputs,
    unique,
    tag,
    host: inputs.connection.host,
    rules: byName((p) => p.rule),
    insertedAt: byName((p) => p.line),
    placement: byName((p) => p.reason),
    line: byName((p) => p.now ?? p.line),
    counters: byName(startCounters),
    packets: placed.reduce((n, [, p]) => n + startCounters(p).packets, 0),
    bytes: placed.reduce((n, [, p]) => n + startCounters(p).bytes, 0),
    // Not effective where placement put it (an explicit position), or because of Docker's DNAT or an nft
    // chain that does not accept: say which.
    effective: placed.every(([f, p]) => !p.shadowedBy && !res.beside[f]?.blockedBy),
    shadowedBy: byName((p, f) => (p.shadowedBy ?? res.beside[f]?.blockedBy) || undefined),
    missing: [],
    backend: facts.backend,
    iptablesVersion: facts.version,
    hostKeyFingerprint: facts.hostKeyFingerprint,
    // Only for ACCEPT; absent, not undefined, otherwise (the engine's wire format has no undefined).
    // Unknown (no ss on the host) stays out too: the engine's wire format refuses undefined.
    ...(listening === undefined ? {} : { listening }),
    // The save writes every family's rules: the files of each of the rule's families hold it.
    persisted: persisted ? persistedState(inputs, persisted.mechanism, persisted.files) : false,
    adopts: inputs.adopt ? perFamily(inputs, (f) => twinOf(inputs, f)) : {},
    adopted: byName((p) => (p.adopted && p.twin ? { ...p.twin, ...wire(p.twin), line: p.now ?? p.line } : undefined)),
  };
}

/** `persisted` of a rule saved with the host's mechanism: the files of each of the rule's families. */
export const persistedState = (inputs: RuleInputs, mechanism: string, files: [string, string]) => ({
  mechanism,
  files: families(inputs.ipVersion).map((f) => fileOf(files, f)),
});

/** Whether refresh drops the rule from state: no family lists it, and no rule carries its tag either
 * (one that does may be this rule printed in another form, say after an iptables upgrade: state keeps
 * it, missing, and a warning names that rule). */
export const isGone = (props: PortRuleState, live: ReadResult): boolean =>
  families(props.ipVersion).every((f) => !live.families[f] && !live.carried.includes(f));

/** The state as a listing shows the rule: its lines, counters and shadowing; the families the listing
 * does not show are `missing`. */
export function withLive(props: PortRuleState, live: ReadResult): PortRuleState {
  const state: PortRuleState = {
    ...props,
    line: {},
    counters: {},
    shadowedBy: {},
    placeable: {},
    shadowTag: {},
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
    state.counters[n] = wire(r);
    state.packets += state.counters[n].packets;
    state.bytes += state.counters[n].bytes;
    const by = r.shadowedBy ?? r.beside.blockedBy;
    if (by) {
      state.shadowedBy[n] = by;
      state.effective = false;
    }
    const blocked = r.beside.blockedBy;
    if (r.placeable) state.placeable![n] = blocked ? { line: r.placeable.line, shadowedBy: blocked } : r.placeable;
    if (r.shadowTag) state.shadowTag![n] = r.shadowTag;
  }
  return state;
}

/** What refresh records: the state as the listing shows the rule, or undefined when it is gone. */
export const readState = (props: PortRuleState, live: ReadResult): PortRuleState | undefined =>
  isGone(props, live) ? undefined : withLive(props, live);

/**
 * Whether an update must list the rule before it records anything, as a refresh would: the host presented
 * another key than the one recorded (rebuilt or replaced, so the rule may be gone), or the hostKey given
 * changed (how an operator accepts a new key after a rebuild).
 */
export function mustVerify(olds: Partial<PortRuleState>, news: RuleInputs, seen: string): boolean {
  return seen !== olds.hostKeyFingerprint || olds.connection?.hostKey !== news.connection.hostKey;
}

/** An updated rule's state before anything is listed: the new inputs, the rule and tag recorded at create,
 * and the host keys the update's connection was shown (`jump`: the jump host's, when there is one). */
export function updatedState(olds: PortRuleState, news: RuleInputs, seen: string, jump?: string): PortRuleState {
  const state: PortRuleState = {
    ...olds,
    ...news,
    unique: olds.unique,
    tag: olds.tag,
    rules: olds.rules,
    hostKeyFingerprint: seen,
  };
  if (jump) state.proxyHostKeyFingerprint = jump;
  else delete state.proxyHostKeyFingerprint;
  return state;
}

/** A rule's state once the families a listing did not show are back: those as inserted (`made`), the
 * others as listed (`live`). */
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
 * The state keys a user did not write: the resource's internal inputs (`identity`, `defaults`, the
 * derived `ports`) and its output-only fields, all but `rules` (the exact rule per family, the inputs as
 * iptables prints them). The engine records them under `__` (`__tag`, `__effective`, ...): its display
 * hides keys that begin with `__` (pulumi's resource.IsInternalPropertyKey, honoured by every diff and
 * object it prints), and the dynamic provider of @pulumi/pulumi 3.248 takes no detailed diff, so this is
 * how `pulumi preview --diff` lists only what the user wrote (and check normalized). The PortRule class
 * exposes each under its own name (index.ts).
 */
export const HIDDEN: Record<Exclude<keyof PortRuleOutputs, "rules"> | "identity" | "defaults" | "ports", true> = {
  identity: true,
  defaults: true,
  ports: true,
  unique: true,
  tag: true,
  host: true,
  insertedAt: true,
  placement: true,
  line: true,
  counters: true,
  packets: true,
  bytes: true,
  effective: true,
  shadowedBy: true,
  placeable: true,
  shadowTag: true,
  missing: true,
  backend: true,
  iptablesVersion: true,
  hostKeyFingerprint: true,
  proxyHostKeyFingerprint: true,
  listening: true,
  persisted: true,
  adopts: true,
  adopted: true,
};

const isHidden = (key: string) => Object.hasOwn(HIDDEN, key);

/** The key under which the engine records `key`: `__key` for a hidden one, else `key`. */
export const storedKey = (key: string) => (isHidden(key) ? `__${key}` : key);

/** Inputs or state as the engine records them: hidden keys under `__` (the engine's own `__provider`,
 * not hidden here, is left as it is). */
export const toStored = (props: object): Record<string, unknown> =>
  Object.fromEntries(Object.entries(props).map(([k, v]) => [storedKey(k), v]));

/** Inputs or state as the engine hands them over, each hidden key under its own name again. State
 * written before the keys were hidden (no `__` on them) reads as it is; where both forms are present,
 * the `__` one is the newer. */
export function fromStored<T = Record<string, unknown>>(stored: object): T {
  const out: Record<string, unknown> = {};
  const has = (k: string) => Object.hasOwn(stored, k);
  for (const [k, v] of Object.entries(stored)) {
    const bare = k.startsWith("__") ? k.slice(2) : undefined;
    if (bare !== undefined && isHidden(bare)) out[bare] = v;
    else if (!(isHidden(k) && has(`__${k}`))) out[k] = v;
  }
  return out as T;
}
