// The lockout guard: would a change stop the host from accepting the provider's own SSH connections?
// Pure: it reads the ruleset before and after the change with the rule core's placement semantics.
import { chainOf, parseRuleset, ruleText, shadowing } from "./rules";
import { insertRuleText } from "./host/ruleset-text";

/** Where the provider's SSH connection comes from and goes to, as the host sees it. */
export interface SshOrigin {
  clientAddress: string;
  serverPort: number;
}

/** What INPUT does with a new SSH connection from the provider: the verdict and the rule (or policy) deciding it. */
export interface SshFate {
  accepted: boolean;
  /** `-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT`, or `the INPUT policy DROP`. */
  by: string;
}

/** The provider's SSH packets as a rule matching exactly them (new connections, its address, the SSH port). */
function probe(origin: SshOrigin, target: "ACCEPT" | "DROP"): string {
  const prefix = origin.clientAddress.includes(":") ? 128 : 32;
  return ruleText("INPUT", [
    "-s",
    `${origin.clientAddress}/${prefix}`,
    "-p",
    "tcp",
    "-m",
    "tcp",
    "--dport",
    String(origin.serverPort),
    "-j",
    target,
  ]);
}

/**
 * What the filter table's INPUT chain (in `iptables-save` text) does with a new SSH connection from the
 * provider. A probe rule for exactly those packets is put at the end of INPUT: the rule that shadows a
 * probe DROP accepts every one of them, the rule that shadows a probe ACCEPT blocks them, and the
 * earlier of the two decides; with neither, they reach the chain's policy. Rules the model cannot judge for all of them (a rate limit, a mark)
 * shadow neither probe, so such a chain counts as deciding by its policy.
 */
export function sshFate(save: string, origin: SshOrigin): SshFate {
  const rs = parseRuleset(save, { table: "filter" });
  const input = chainOf(rs, "filter", "INPUT");
  if (!input) return { accepted: true, by: "no filter INPUT chain" };
  const line = input.rules.length + 1;
  const decider = (target: "ACCEPT" | "DROP") =>
    shadowing(parseRuleset(insertRuleText(save, "filter", "INPUT", line, probe(origin, target)), { table: "filter" }), {
      table: "filter",
      chain: "INPUT",
      line,
    });
  // Each probe names the first rule that decides its packets otherwise; the earlier of the two decides.
  const accepting = decider("DROP");
  const blocking = decider("ACCEPT");
  if (accepting && (!blocking || accepting.line < blocking.line)) return { accepted: true, by: accepting.text };
  if (blocking) return { accepted: false, by: blocking.text };
  const policy = input.policy ?? "ACCEPT";
  return { accepted: policy === "ACCEPT", by: `the INPUT policy ${policy}` };
}

/**
 * Why a change would lock the provider out (its SSH connections accepted before, not after), or
 * undefined. `what` names the change for the message ("removing this rule").
 */
export function lockoutOf(before: string, after: string, origin: SshOrigin, what: string): string | undefined {
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
