// The lifecycle's guards, in one place: the lockout guards (would a change cut off the provider's own
// SSH?) and the operator's opt-in to a lockout (allowLockout), which changes are confirmed over a fresh
// connection, the host keys recorded in state, and the secrets kept out of every error.
import { DOCKER_USER, findRule, matchesPacket, parseSpec, renderRule } from "./rules";
import type { RuleInputs } from "./rules";
import type { DeleteRequest, GuardOrigin, InsertRequest } from "./host";
import { familyName } from "./host";
import { addressOf, pinHostKey, redactError } from "./ssh";
import type { Logger } from "./ssh";
import { lockoutOf, mayCutSsh } from "./host";
import type { PortRuleState } from "./state";

/** Old rules (by tag) whose replacement opted in to a lockout (`allowLockout: true` in the new inputs).
 * Process-wide: Diff learns it from the new inputs, and the old rule's Delete, a later call of the same
 * run with only the old state, must honour it. */
const replacedOptIn = new Set<string>();

/** Remembers, for this run, that the replacement of the rule tagged `tag` opted in to a lockout. */
export const rememberOptIn = (tag: string) => replacedOptIn.add(tag);

/** Has the operator opted in to a lockout by this rule's change: its own allowLockout, or, for the old rule
 * of a replacement, the new inputs'. The guards and the choice of a fresh confirmation ask this alike. */
const optedIn = (r: RuleInputs & { tag?: string }) =>
  r.allowLockout === true || (r.tag !== undefined && replacedOptIn.has(r.tag));

/** The provider's packets arrive through INPUT (and the user chains it jumps to), not FORWARD, OUTPUT or
 * Docker's DOCKER-USER (which FORWARD jumps to). */
export const reachesInput = (chain: string) => !["FORWARD", "OUTPUT", DOCKER_USER].includes(chain);

/** A lockout found with `allowLockout: true`: go ahead, and say so. */
function allowed(message: string, log: Logger): undefined {
  log.warn?.(`allowLockout is set, so this goes ahead: ${message}`);
  return undefined;
}

/** The provider's own SSH packet as the host sees it arrive. */
const sshPacket = (origin: GuardOrigin) => ({
  protocol: "tcp",
  source: origin.clientAddress,
  destination: origin.serverAddress,
  dport: origin.serverPort,
  inInterface: origin.inInterface,
});

/**
 * The insert guard: would this DROP/REJECT rule match the provider's own SSH session (its packets: from
 * its address to the address and port it reached, arriving on the interface the host routes it through),
 * and, where it goes (filter), cut off new SSH connections the host accepts now (mayCutSsh: judged as
 * placement judges, through the chains they cross, nat PREROUTING and the other backend)? A rule below
 * one that accepts them, or in a chain they never reach (another zone's), cuts nothing.
 */
export function insertGuard(inputs: RuleInputs, log: Logger): InsertRequest["guard"] {
  if (inputs.action === "ACCEPT" || !reachesInput(inputs.chain)) return undefined;
  return (origin, family, before, after, host) => {
    if (origin.clientAddress.includes(":") !== (family === 6)) return undefined;
    const spec = parseSpec(renderRule(inputs, family, "pulumi-iptables:guard/x/x/guard"));
    if (!matchesPacket(spec, sshPacket(origin))) return undefined;
    if (inputs.table === "filter" && !mayCutSsh(before, after, origin, host)) return undefined;
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
export function deleteGuard(props: PortRuleState, log: Logger): DeleteRequest["guard"] {
  // Judged on the filter table, where the listing the guard gets is of the rule's own table.
  if (props.action !== "ACCEPT" || props.table !== "filter" || !reachesInput(props.chain)) return undefined;
  return (origin, family, before, after, host) => {
    if (origin.clientAddress.includes(":") !== (family === 6)) return undefined;
    // A rule that cannot match the provider's SSH packets decides none of them: removing it changes
    // nothing for them (the judgement of the whole chain is skipped).
    const text = props.rules[familyName(family)];
    const rule = text === undefined ? undefined : findRule(before, props.table, props.chain, text);
    if (rule && !matchesPacket(rule, sshPacket(origin))) return undefined;
    const message = lockoutOf(
      before,
      after,
      origin,
      `removing the rule ${props.rules[familyName(family)] ?? props.tag}`,
      host,
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
  if (optedIn(inputs) || !reachesInput(inputs.chain)) return false;
  const ssh = inputs.protocol === "tcp" && covers(inputs, inputs.connection.port);
  if (change === "delete") return inputs.action === "ACCEPT" && ssh;
  return inputs.action !== "ACCEPT" && ssh;
}

/**
 * Pins the host keys a created rule recorded (the host's, and the jump host's) to their addresses, for
 * this run: every handshake there must present them, checked inside the handshake before any credential
 * is sent. A `hostKey` given in the connection takes their place for that connection.
 */
export function rememberPins(props: Partial<PortRuleState>): void {
  const conn = props.connection;
  if (!conn || typeof conn.host !== "string") return;
  const recorded = "the key recorded in state when this rule was created";
  const args = conn;
  // A hostKey given takes the place of what was recorded: that is how a new key is accepted.
  if (props.hostKeyFingerprint && !args.hostKey) pinHostKey(addressOf(args), props.hostKeyFingerprint, recorded);
  if (args.proxy && props.proxyHostKeyFingerprint && !args.proxy.hostKey)
    pinHostKey(addressOf(args.proxy), props.proxyHostKeyFingerprint, `for the jump host, ${recorded}`);
}

/** Every secret of a connection (the target's and the jump host's). */
export const secretsOf = (conn: Partial<RuleInputs["connection"]> | undefined): (string | undefined)[] =>
  [conn, conn?.proxy].flatMap((c) => [c?.password, c?.privateKey, c?.privateKeyPassword]);

/** Runs a lifecycle step; whatever it throws reaches the engine with every secret redacted, causes included. */
export async function guarded<T>(
  conn: Partial<RuleInputs["connection"]> | undefined,
  step: () => Promise<T>,
): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw redactError(err, secretsOf(conn));
  }
}
