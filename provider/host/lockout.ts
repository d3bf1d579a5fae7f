// The lockout guard: would a change stop the host from accepting the provider's own SSH connections?
// Pure: it reads the ruleset before and after the change with the rule core's placement semantics.
import { chainOf, parseRuleset, possibleVerdicts, ruleText, shadowing, shown } from "../rules";
import type { Ruleset } from "../rules";
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
 * What the filter table's INPUT chain (of a parsed listing) does with a new SSH connection from the
 * provider, by the rule core's semantics. A probe rule for exactly those packets goes at the end of INPUT
 * with the chain's policy as its target (so reaching it is reaching the policy): they are accepted when
 * every verdict the model allows them, on both branches of every match it cannot read, is ACCEPT. `by`
 * names the first rule (or the policy) that decides them: the rule that shadows a probe of the other
 * verdict.
 */
export function sshFate(rs: Ruleset, origin: GuardOrigin): SshFate {
  const input = chainOf(rs, "filter", "INPUT");
  if (!input) return { accepted: true, by: "no filter INPUT chain" };
  const line = input.rules.length + 1;
  const policy = input.policy ?? "ACCEPT";
  const withProbe = (target: string) =>
    withInserted(rs, "filter", "INPUT", line, ruleText("INPUT", probe(origin, target)));
  const verdicts = possibleVerdicts(withProbe(policy), {
    table: "filter",
    chain: "INPUT",
    rule: probe(origin, policy),
    line,
  }).flatMap((p) => p.verdicts);
  const accepted = verdicts.length > 0 && verdicts.every((v) => v === "ACCEPT");
  const decider = shadowing(withProbe(accepted ? "DROP" : "ACCEPT"), { table: "filter", chain: "INPUT", line });
  return { accepted, by: decider && decider.line > 0 ? shown(decider.text) : `the INPUT policy ${policy}` };
}

/**
 * Why a change would lock the provider out (its SSH connections accepted before, not after), or
 * undefined. `what` names the change for the message ("removing this rule").
 */
export function lockoutOf(before: Ruleset, after: Ruleset, origin: GuardOrigin, what: string): string | undefined {
  const was = sshFate(before, origin);
  if (!was.accepted) return undefined;
  const now = sshFate(after, origin);
  if (now.accepted) return undefined;
  return (
    `${what} would lock the provider out of the host: new SSH connections from ${origin.clientAddress} to port ` +
    `${origin.serverPort} are accepted now (by ${was.by}), and would then be refused (by ${now.by}), so no later ` +
    `pulumi refresh, up or destroy could reach it`
  );
}

/**
 * Why a boot file, as a save wrote it (`written`: its text, read back), would lock the provider out
 * after the host's next reboot where the live ruleset (`live`, parsed) lets it in; or undefined. The
 * same model as the guard, on the file's filter table: the text the host loads at boot.
 */
export function bootLockoutOf(live: Ruleset, written: string, origin: GuardOrigin, file: string): string | undefined {
  let boot: Ruleset;
  try {
    boot = parseRuleset(written);
  } catch (err) {
    return `${file} as this save wrote it cannot be read to check it: ${err instanceof Error ? err.message : err}`;
  }
  const message = lockoutOf(live, boot, origin, `${file} as this save wrote it (the ruleset the host loads at boot)`);
  return message && `${message} after its next reboot`;
}

/** What to do about a boot file bootLockoutOf refused. */
export const BOOT_SSH_ADVICE =
  "Keep a rule that accepts SSH in the boot files (persist: true on the PortRule that accepts it, or a hand-made " +
  "rule) and run pulumi up again";
