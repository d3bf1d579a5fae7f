// The lockout guard: would a change stop the host from accepting the provider's own SSH connections?
// Pure: it reads the ruleset before and after the change with the rule core's placement semantics, and
// the host beside it as placement does (nat PREROUTING, the other backend), for the packets of the SSH
// connection: to the address it reached, arriving on the interface it arrives on.
import {
  chainOf,
  distinctInterfaces,
  parseRuleset,
  parseSpec,
  possibleVerdicts,
  ruleText,
  shadowing,
  shown,
} from "../rules";
import type { HostContext, Ruleset, Scope, Shadow } from "../rules";
import { withInserted } from "./ruleset-text";
import type { GuardOrigin } from "./types";

/** What INPUT does with a new SSH connection from the provider: the verdict and the rule (or policy) deciding it. */
export interface SshFate {
  accepted: boolean;
  /** `-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT`, or `the INPUT policy DROP`. */
  by: string;
}

/** The provider's SSH packets as a rule matching exactly them (new connections, its address, the SSH port). */
function probe(origin: GuardOrigin, target: string): string[] {
  const prefix = origin.clientAddress.includes(":") ? 128 : 32;
  const address = `${origin.clientAddress}/${prefix}`;
  return ["-s", address, "-p", "tcp", "-m", "tcp", "--dport", String(origin.serverPort), "-j", target];
}

/**
 * The interfaces the provider's SSH packets may arrive on: the one the host routes the provider's address
 * through (GuardOrigin.inInterface), or, where that is not known, each of the host's, one of each group
 * that the rulesets `rs` (with nat and the other backend's tables) treat alike (undefined: one that no
 * rule names, where those are not known either).
 */
function sshArrivals(origin: GuardOrigin, host: HostContext, rs: Ruleset[]): (string | undefined)[] {
  if (origin.inInterface) return [origin.inInterface];
  const tables = [...rs, host.nat, host.other?.ruleset].flatMap((r) => [...(r?.tables.values() ?? [])]);
  const grouped = distinctInterfaces(host.interfaces, parseSpec(probe(origin, "ACCEPT")), tables);
  return grouped?.length ? [...grouped] : [undefined];
}

/** The host as placement sees it, for the SSH packets arriving on `arrival`, to the address the connection reached. */
const sshContext = (origin: GuardOrigin, host: HostContext, arrival: string | undefined): Scope => ({
  ...host,
  interfaces: arrival === undefined ? undefined : [arrival],
  ...(origin.serverAddress && { to: origin.serverAddress }),
});

/** The rule (or policy) that decides the SSH packets, naming the other backend's tables when they decide. */
function deciderText(decider: Shadow | undefined, policy: string): string {
  if (!decider) return `the INPUT policy ${policy}`;
  const text = decider.line > 0 ? shown(decider.text) : `the INPUT policy ${decider.verdict}`;
  const other = /^the (legacy|nf_tables) tables/.exec(decider.why)?.[0];
  return other ? `${other}: ${text}` : text;
}

/**
 * What the filter table's INPUT chain (of a parsed listing) does with a new SSH connection from the
 * provider, by the rule core's semantics, arriving on `arrival` (the first of sshArrivals when not given),
 * after nat PREROUTING and with the other backend as `host` has them. A probe rule for exactly those
 * packets goes at the end of INPUT with the chain's policy as its target (so reaching it is reaching the
 * policy): they are accepted when every verdict the model allows them, on both branches of every match it
 * cannot read, is ACCEPT. `by` names the first rule (or the policy) that decides them: the rule that
 * shadows a probe of the other verdict.
 */
export function sshFate(
  rs: Ruleset,
  origin: GuardOrigin,
  host: HostContext = {},
  arrival = sshArrivals(origin, host, [rs])[0],
): SshFate {
  const input = chainOf(rs, "filter", "INPUT");
  if (!input) return { accepted: true, by: "no filter INPUT chain" };
  const line = input.rules.length + 1;
  const policy = input.policy ?? "ACCEPT";
  const context = sshContext(origin, host, arrival);
  const withProbe = (target: string) =>
    withInserted(rs, "filter", "INPUT", line, ruleText("INPUT", probe(origin, target)));
  const verdicts = possibleVerdicts(withProbe(policy), {
    table: "filter",
    chain: "INPUT",
    rule: probe(origin, policy),
    line,
    ...context,
  }).flatMap((p) => p.verdicts);
  const accepted = verdicts.length > 0 && verdicts.every((v) => v === "ACCEPT");
  const at = { table: "filter", chain: "INPUT", line, ...context };
  // A probe of another verdict is shadowed by what decides them (a DNAT away counts as admitted by an ACCEPT).
  const other = accepted || verdicts.includes("FORWARD") ? "DROP" : "ACCEPT";
  return { accepted, by: deciderText(shadowing(withProbe(other), at), policy) };
}

/**
 * Why a change would lock the provider out (its SSH connections accepted before, not after, on an
 * interface they may arrive on), or undefined. `what` names the change for the message ("removing this rule").
 */
export function lockoutOf(
  before: Ruleset,
  after: Ruleset,
  origin: GuardOrigin,
  what: string,
  host: HostContext = {},
): string | undefined {
  for (const arrival of sshArrivals(origin, host, [before, after])) {
    const was = sshFate(before, origin, host, arrival);
    if (!was.accepted) continue;
    const now = sshFate(after, origin, host, arrival);
    if (now.accepted) continue;
    const on = arrival === undefined ? "" : ` on ${arrival}, where they arrive`;
    return (
      `${what} would lock the provider out of the host: new SSH connections from ${origin.clientAddress} to port ` +
      `${origin.serverPort} are accepted now (by ${was.by}), and would then be refused (by ${now.by})${on}, so no ` +
      `later pulumi refresh, up or destroy could reach it`
    );
  }
  return undefined;
}

/**
 * May a change cut off the provider's SSH connections: it locks the provider out (lockoutOf), or the model
 * sees no way they are accepted before it (a rule it cannot read lets them in), so it cannot rule that out.
 */
export function mayCutSsh(before: Ruleset, after: Ruleset, origin: GuardOrigin, host: HostContext = {}): boolean {
  const arrivals = sshArrivals(origin, host, [before, after]);
  if (!arrivals.some((a) => sshFate(before, origin, host, a).accepted)) return true;
  return lockoutOf(before, after, origin, "", host) !== undefined;
}

/**
 * Why a boot file, as a save wrote it (`written`: its text, read back), would lock the provider out
 * after the host's next reboot where the live ruleset (`live`, parsed) lets it in; or undefined. The
 * same model as the guard, on the file's filter table: the text the host loads at boot.
 */
export function bootLockoutOf(
  live: Ruleset,
  written: string,
  origin: GuardOrigin,
  file: string,
  host: Pick<HostContext, "interfaces" | "addresses"> = {},
): string | undefined {
  let boot: Ruleset;
  try {
    boot = parseRuleset(written);
  } catch (err) {
    return `${file} as this save wrote it cannot be read to check it: ${err instanceof Error ? err.message : err}`;
  }
  const message = lockoutOf(
    live,
    boot,
    origin,
    `${file} as this save wrote it (the ruleset the host loads at boot)`,
    host,
  );
  return message && `${message} after its next reboot`;
}

/** What to do about a boot file bootLockoutOf refused. */
export const BOOT_SSH_ADVICE =
  "Keep a rule that accepts SSH in the boot files (persist: true on the PortRule that accepts it, or a hand-made " +
  "rule) and run pulumi up again";
