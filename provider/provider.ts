// The PortRule lifecycle as the Pulumi engine calls it: check and diff (no host), and the verbs that
// reach the host (lifecycle.ts) over SSH, with Pulumi's log. This module's path,
// `pulumi-iptables/dist/provider`, is recorded in every stack's state through the serialized provider:
// keep it and its exports loadable in later versions.
import { output, log as pulumiLog } from "@pulumi/pulumi";
import type { Resource } from "@pulumi/pulumi";
import { check as checkInputs, isUnknown, keptDefaultWarning, makeTag, renderRule, ruleText } from "./rules";
import type { CheckFailure, RuleInputs } from "./rules";
import { hostAgent } from "./host";
import { familyName } from "./host";
import { dialForeseen, foresee, unusableKeys } from "./ssh";
import type { Logger } from "./ssh";
import { conflictOf } from "./conflicts";
import { unechoed } from "./engine-echo";
import { logToEngine } from "./engine-log";
import { guarded, rememberOptIn, rememberPins } from "./guards";
import { awaitAbove, createSettled, expectCreate, movedDown } from "./positions";
import { healOf } from "./heal";
import { createRule, readRule, removeRule, updateRule } from "./lifecycle";
import type { Env } from "./lifecycle";
import { RULE_DEFINING, hostOf, sameRule, uniqueOf } from "./lineage";
import type { Props } from "./lineage";
import { families, fromStored, perFamily, toStored, twinOf } from "./state";
import type { PerFamily, PortRuleState } from "./state";

// Everything this module exported before its jobs moved out, exported still (see above).
export { RULE_DEFINING, lineage, successorOf } from "./lineage";
export { mayLockOut } from "./guards";
export { fromStored, isGone, mustVerify, putBackState, storedKey, toStored, withLive } from "./state";
export type { PortRuleOutputs, PortRuleState } from "./state";

logToEngine();

/** Pulumi's log, each message on the resource whose URN is given (the PortRule constructor passes its
 * own in `identity.urn`: a dynamic provider's verbs are not told it), else on the Stack. */
function logOn(urn: unknown): Logger {
  const on = typeof urn === "string" ? ({ urn: output(urn) } as unknown as Resource) : undefined;
  return {
    info: (m) => pulumiLog.info(m, on),
    warn: (m) => pulumiLog.warn(m, on),
    debug: (m) => pulumiLog.debug(m, on),
    error: (m) => pulumiLog.error(m, on),
  };
}

/** The engine's, for the resource `props` describe: each host's pooled SSH session and its agent, and
 * Pulumi's log on that resource. */
function engineFor(props: { identity?: { urn?: string } }): Env {
  const log = logOn(props.identity?.urn);
  return {
    async connect(conn) {
      const agent = hostAgent(conn, log);
      await agent.session.connect();
      return agent;
    },
    log,
  };
}

/** A check failure as the engine shows it: "property P value V has a problem" when P is a top-level
 * input, where the engine looks V up; any other path (and the secret connection, whose value the engine
 * cannot show) goes into the reason, as "resource 'x' has a problem: connection.port: ...". */
function forEngine(f: CheckFailure): CheckFailure {
  const topLevel = /^[A-Za-z_]\w*$/.test(f.property) && f.property !== "connection" && f.property !== "inputs";
  return topLevel ? f : { property: "", reason: `${f.property}: ${f.reason}` };
}

/** Validates and normalizes; adds the identity tag and the exact rule text for `pulumi preview`. Not pure:
 * a new rule's connection is remembered (ssh/early.ts) to be dialled early in an up. Every verb below
 * takes inputs and state as the engine records them (hidden keys under `__`, or state written before
 * that) and returns them so (state.ts, toStored). */
export async function check(storedOlds: Record<string, unknown>, news: Record<string, unknown>) {
  const olds = fromStored(storedOlds);
  const { inputs, failures } = checkInputs(olds, fromStored(news));
  if (!failures.length) failures.push(...unusableKeys(inputs.connection));
  if (failures.length) return { inputs: news, failures: failures.map(forEngine) };
  const conflict = conflictOf(inputs);
  if (conflict) return { inputs: news, failures: [forEngine({ property: "action", reason: conflict })] };
  const log = logOn(inputs.identity?.urn);
  if (Object.keys(olds).length === 0) {
    foresee(inputs.connection); // a new rule: dialled early in an up
    expectCreate(inputs); // rules below it in this run wait for its create (positions.ts)
  }
  if (inputs.defaults?.ipVersion && inputs.action !== "ACCEPT") log.warn?.(keptDefaultWarning(inputs));
  const keep = typeof olds.unique === "string" && sameRule(olds, inputs as unknown as Record<string, unknown>);
  // Derived from what defines the rule, so preview and up agree on the tag. A create that finds a
  // rule with this tag on the host takes it over under the tag's successor (lifecycle.ts, createRule).
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
      log.info?.(
        `adopt: up takes over ${Object.values(out.adopts as PerFamily<string>).join(" and ")} where ${inputs.chain} on ` +
          `${inputs.connection.host} holds it without a tag (same line, counters kept), else inserts the rule; ` +
          `preview cannot reach the host to tell which`,
      );
  }
  return { inputs: toStored(out), failures: [] };
}

/**
 * Replace on anything that defines the rule, update credentials, persist and the comment in place. No I/O, but not
 * pure: it remembers, for the rest of this run, in three process-wide registries, what the old state
 * says that a replacement's create and the old rule's delete must honour: the host keys recorded (the
 * engine checks a replacement's inputs again without the old ones, and create sees only those: ssh's
 * pins), whether the new inputs opt in to a lockout (guards.ts), and the hosts a change will dial
 * (ssh/early.ts).
 */
export async function diff(_id: string, storedOlds: Props, storedNews: Props) {
  const olds = fromStored<Props>(storedOlds);
  const news = fromStored<Props>(storedNews);
  rememberPins(olds as unknown as PortRuleState);
  const replaces: string[] = RULE_DEFINING.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
  if (hostOf(olds) !== hostOf(news)) replaces.push("connection.host");
  if (Array.isArray(olds.missing) && olds.missing.length) replaces.push("missing");
  if (replaces.length && news.allowLockout === true && typeof olds.tag === "string") rememberOptIn(olds.tag);
  const updates = ["persist", "allowLockout", "adopt", "rollbackAfter", "comment"].filter((k) => olds[k] !== news[k]);
  if ((olds.heal ?? true) !== (news.heal ?? true)) updates.push("heal"); // state from before heal: true
  const { host: _oh, ...oldConn } = olds.connection ?? {};
  const { host: _nh, ...newConn } = news.connection ?? {};
  if (JSON.stringify(oldConn) !== JSON.stringify(newConn)) updates.push("connection");
  if (!replaces.length && sayHeal(olds, news)) updates.push("effective");
  if (replaces.length || updates.length) foresee(news.connection); // dialled early in an up
  if (replaces.length) expectCreate(news as unknown as RuleInputs); // its replacement's create will come
  return {
    changes: replaces.length > 0 || updates.length > 0,
    replaces,
    deleteBeforeReplace: false,
  };
}

/** Says what up does about a rule a refresh found out of effect (heal.ts), on the resource: whether it
 * moves it back (then the diff proposes an update) or why not. */
function sayHeal(olds: Props, news: Props): boolean {
  const heal = healOf({ ...olds, heal: news.heal } as unknown as PortRuleState);
  if (!heal) return false;
  const log = logOn((news.identity as { urn?: string } | undefined)?.urn);
  if ("move" in heal) log.info?.(heal.reason);
  else log.warn?.(heal.report);
  return "move" in heal;
}

// Create, update and delete each start dialling the hosts this run foresaw (ssh/early.ts); every verb's
// error reaches the engine with the connection's secrets redacted (guards.ts, guarded).

export async function create(stored: object) {
  dialForeseen();
  const inputs = fromStored<RuleInputs & { unique: string }>(stored);
  // Checked again once connected, before any change: a conflicting rule checked after this one (an up
  // without preview) stops this create too.
  const env = engineFor(inputs);
  const connect: Env["connect"] = async (conn) => {
    const agent = await env.connect(conn);
    const conflict = conflictOf(inputs);
    if (conflict) throw new Error(conflict);
    return agent;
  };
  let made: Awaited<ReturnType<typeof createRule>> | undefined;
  try {
    // A rule with an explicit position goes in after this run's rules above it (positions.ts).
    const waited = await awaitAbove(inputs);
    made = await unechoed(() => guarded(inputs.connection, () => createRule(inputs, { ...env, connect })));
    const moved = movedDown(inputs);
    if (waited) env.log.info?.(`position ${inputs.position}: ${waited}`);
    if (moved) env.log.warn?.(`position ${inputs.position}: ${moved}`);
    const placement = made.outs.placement;
    for (const note of [waited, moved].filter((n) => n !== undefined))
      for (const n of Object.keys(placement) as (keyof typeof placement)[]) placement[n] += `; ${note}`;
    return { id: made.id, outs: toStored(made.outs) };
  } finally {
    createSettled(inputs, made !== undefined);
  }
}

export async function read(id: string, stored: object) {
  const props = fromStored<PortRuleState>(stored);
  const r = await unechoed(() => guarded(props.connection, () => readRule(id, props, engineFor(props))));
  return { id: r.id, props: toStored(r.props) };
}

export async function update(_id: string, storedOlds: object, storedNews: object) {
  dialForeseen();
  const olds = fromStored<PortRuleState>(storedOlds);
  const news = fromStored<RuleInputs & { unique: string }>(storedNews);
  const r = await unechoed(() =>
    guarded(news.connection, () => guarded(olds.connection, () => updateRule(olds, news, engineFor(news)))),
  );
  return { outs: toStored(r.outs) };
}

export async function remove(_id: string, stored: object) {
  dialForeseen();
  const props = fromStored<PortRuleState>(stored);
  return unechoed(() => guarded(props.connection, () => removeRule(props, engineFor(props))));
}
