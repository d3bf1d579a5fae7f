// The PortRule lifecycle's verbs that reach the host: each builds a request (requests.ts), hands it to the
// host agent, and maps the answer to state (state.ts). Where the agent comes from and where messages go
// is the caller's (Env): SSH and Pulumi's log in the engine (provider.ts), a fake host in unit tests.
import { makeTag, renderRule, ruleText } from "./rules";
import type { Family, FamilyName, RuleInputs } from "./rules";
import type { ChangeResult, HostAgent, ReadResult } from "./host";
import { familyName } from "./host";
import { redactError } from "./ssh";
import type { Logger } from "./ssh";
import { reachesInput, rememberPins, secretsOf } from "./guards";
import { driftOf } from "./drift";
import { lineage } from "./lineage";
import { deleteRequest, insertRequest, moveRequest, persistRequest, rewriteRequest } from "./requests";
import { healOf } from "./heal";
import {
  createdState,
  families,
  mustVerify,
  persistedState,
  placements,
  putBackState,
  readState,
  recordedRules,
  updatedState,
  withLive,
} from "./state";
import type { PortRuleState } from "./state";

/** What the verbs use from outside: a host agent per connection, and where to tell the operator. */
export interface Env {
  /** The agent of a connection, connected: the host (and jump host) presented the keys pinned for
   * their addresses in this run (those of the rule a change replaces, of other rules there, or the
   * first seen), checked in the handshake. */
  connect(conn: RuleInputs["connection"]): Promise<HostAgent>;
  log: Logger;
}

/** Inserts the rule under the first tag of its lineage that is free (taking its own earlier rule over). */
export async function createRule(inputs: RuleInputs & { unique: string }, env: Env) {
  const identity = inputs.identity;
  if (!identity) throw new Error("PortRule inputs lack their identity: create PortRule through its constructor");
  const fams = families(inputs.ipVersion);
  const agent = await env.connect(inputs.connection);
  const candidates = lineage(inputs.unique).map((unique) => {
    const tag = makeTag(identity, unique);
    return { unique, tag, specs: Object.fromEntries(fams.map((f) => [f, renderRule(inputs, f, tag)])) };
  });
  const res = await agent.change({
    ...insertRequest(inputs, fams, candidates[0].tag, env.log),
    successors: candidates.slice(1).map(({ tag, specs }) => ({ tag, specs })),
  });
  const chosen = candidates.find((c) => c.tag === res.tag) ?? candidates[0];
  const state = createdState(inputs, chosen.unique, chosen.tag, res);
  const jump = agent.session.proxy?.hostKey;
  if (jump) state.proxyHostKeyFingerprint = jump.fingerprint;
  reportCreated(state, res, env.log);
  return { id: chosen.tag, outs: state };
}

/** Refresh: the rule as a listing shows it; an empty id when it is gone. Says what changed (drift.ts). */
export async function readRule(id: string, props: PortRuleState, env: Env) {
  rememberPins(props);
  const agent = await env.connect(props.connection);
  const state = readState(props, await listed(agent, props));
  const drift = driftOf(props, state);
  for (const w of drift.warnings) env.log.warn?.(w);
  for (const m of drift.info) env.log.info?.(m);
  return state ? { id, props: state } : { id: "", props: {} };
}

/** The rule as a listing of the host shows it, per family; a family it does not show is gone (refused
 * when the rule is in the other iptables backend's tables instead). What refresh reads. */
async function listed(agent: HostAgent, props: PortRuleState): Promise<ReadResult> {
  const rules = recordedRules(props);
  const live = await agent.read(props.table, props.chain, props.tag, rules, props.action);
  const absent = families(props.ipVersion).filter((f) => !live.families[f]);
  await agent.refuseIfSwitched(props.table, props.chain, props.tag, rules, absent);
  return live;
}

/**
 * Credentials, the host key and persist change in place. The new login must work before it goes into
 * state: it connects (the host keys recorded at create, or the hostKey now given, checked in the
 * handshake), and with sudo, `sudo -n` runs a shell as root. Unless the host key, the comment or the
 * persist flag changed, that is the whole update.
 */
export async function updateRule(olds: PortRuleState, news: RuleInputs & { unique: string }, env: Env) {
  rememberPins({ ...olds, connection: news.connection });
  const agent = await env.connect(news.connection);
  if (news.connection.sudo) await agent.session.run("true");
  const seen = agent.session.hostKey?.fingerprint;
  if (seen === undefined) throw new Error(`connected to ${news.connection.host} without its host key (a bug)`);
  let outs = updatedState(olds, news, seen, agent.session.proxy?.hostKey?.fingerprint);
  if (mustVerify(olds, news, seen)) {
    outs = withLive(outs, await listed(agent, outs));
    if (outs.missing.length) return { outs: await putBack(agent, outs, env.log) };
  }
  if (news.comment !== olds.comment) outs = await recommented(agent, { ...outs, persist: olds.persist }, env.log);
  const heal = healOf({ ...olds, heal: news.heal });
  if (heal && "move" in heal) outs = await moveBack(agent, outs, heal.move, env.log);
  if (news.persist !== olds.persist) {
    const { facts } = await agent.change(persistRequest({ ...outs, persist: olds.persist }, news.persist));
    const { mechanism, files } = facts.persistence;
    outs.persisted = news.persist ? persistedState(olds, mechanism, files) : false;
  }
  return { outs: { ...outs, persist: news.persist } };
}

/** The rule with its new comment (`state.comment`) in place of the recorded one in each family, at its
 * line with its counters (requests.ts, rewriteRequest); the state records the new rule text. */
async function recommented(agent: HostAgent, state: PortRuleState, log: Logger): Promise<PortRuleState> {
  const req = rewriteRequest(state, state.comment);
  if (!req) return state;
  const res = await agent.change(req);
  const rules = { ...state.rules };
  const line = { ...state.line };
  for (const [k, spec] of Object.entries(req.specs)) {
    const f = Number(k) as Family;
    const n = familyName(f);
    rules[n] = ruleText(state.chain, spec!);
    const p = res.families[f];
    if (!p) continue; // an earlier try did it
    line[n] = p.now ?? p.line;
    log.info?.(`${p.rule.replace(/^-A (\S+)/, `-R $1 ${line[n]}`)} on ${state.host} (${n}): ${p.reason}`);
  }
  return { ...state, rules, line };
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

/** Moves the rule of these families back where it decides its packets (heal.ts), says where each went
 * or why it stayed, and records the rule as a listing then shows it. */
async function moveBack(agent: HostAgent, state: PortRuleState, names: FamilyName[], log: Logger) {
  const fams = families(state.ipVersion).filter((f) => names.includes(familyName(f)));
  const res = await agent.change(moveRequest(state, fams, log));
  for (const [f, p] of placements(state, res))
    log.info?.(`${state.chain} on ${state.host} (${familyName(f)}): ${p.reason}`);
  return withLive(state, await listed(agent, state));
}

/** Deletes the rule (gives an adopted one back); refuses when it is in the other backend's tables. */
export async function removeRule(props: PortRuleState, env: Env) {
  rememberPins(props);
  const agent = await env.connect(props.connection);
  const req = deleteRequest(props, env.log);
  const { families: deleted } = await agent.change(req);
  for (const p of Object.values(deleted))
    if (p?.reason.startsWith("gave back")) env.log.info?.(`${props.host}: ${p.reason}`);
  // Gone from the tables iptables uses now, but maybe still in the other backend's: say so.
  const absent = req.families.filter((f) => !deleted[f]);
  await agent.refuseIfSwitched(props.table, props.chain, props.tag, req.rules, absent);
}

/** Tells the operator where each family's rule went and why, and warns of an ACCEPT nobody answers on. */
function reportCreated(state: PortRuleState, res: ChangeResult, log: Logger): void {
  for (const [f, p] of placements(state, res)) {
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
  // Whether something listens matters to packets for this host (INPUT), not to those it forwards.
  if (!reachesInput(state.chain)) return;
  if (state.action === "ACCEPT" && state.listening === undefined)
    log.info?.(
      `whether anything listens on ${state.protocol} ${state.ports} on ${state.host} is unknown: the host has no ss`,
    );
  if (state.listening === false)
    log.warn?.(
      `nothing listens on ${state.protocol} ${state.ports} on ${state.host}: the port is open, but no service answers on it`,
    );
}
