/**
 * Docker beside PortRule. A port published with `docker run -p 8080:80` is DNAT-ed in nat
 * PREROUTING (`-j DOCKER`, then `-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT
 * --to-destination 172.17.0.2:80`) and forwarded to the container through FORWARD: it never reaches
 * INPUT (moby/moby#22054). Docker's place for the operator's own rules is the DOCKER-USER chain,
 * which FORWARD jumps to first; there the packet already carries the container's port, so a rule
 * matches the port the client asked for with `-m conntrack --ctorigdstport 8080 --ctdir ORIGINAL`.
 */
import { shown } from "./identity";
import { portRanges, type PortSpan } from "./ordinary";
import type { Rule, Ruleset } from "./parse";
import type { RuleInputs } from "./types";

/** The chain Docker keeps for the operator's rules (FORWARD jumps to it before Docker's own). */
export const DOCKER_USER = "DOCKER-USER";

/** Whether a rule in this chain matches the original destination port (before DNAT). */
export const matchesOriginalPort = (chain: string): boolean => chain === DOCKER_USER;

/** One published port: Docker's DNAT rule and where it sends the packets. */
export interface Published {
  /** The DNAT rule as iptables -S prints it (nat table, chain DOCKER). */
  rule: string;
  /** `--to-destination`, e.g. "172.17.0.2:80". */
  to: string;
  /** The rule names a host address (`docker run -p 198.18.1.2:8080:80`): only packets to it are forwarded. */
  address?: string;
}

const overlap = (a: PortSpan[], b: PortSpan[]) => a.some(([l1, h1]) => b.some(([l2, h2]) => l1 <= h2 && l2 <= h1));

/** Whether nat PREROUTING sends packets to Docker's DOCKER chain (Docker's own jump). */
const preroutingJumps = (nat: Ruleset, chain: string) =>
  nat.tables
    .get("nat")
    ?.chains.get("PREROUTING")
    ?.rules.some((r) => r.target === chain) ?? false;

/**
 * Docker's DNAT rules (nat table, chain DOCKER reached from PREROUTING) for any of the rule's ports and
 * its protocol: packets to these ports go to a container through FORWARD, not through INPUT.
 * @example publishedPorts(parseRuleset(natSave), { protocol: "tcp", ports: "8080" })
 *   // [{ rule: "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80", to: "172.17.0.2:80" }]
 */
export function publishedPorts(nat: Ruleset, rule: Pick<RuleInputs, "protocol" | "ports">): Published[] {
  const chain = nat.tables.get("nat")?.chains.get("DOCKER");
  const ours = portRanges(rule.ports);
  if (!chain || !ours || !preroutingJumps(nat, "DOCKER")) return [];
  return chain.rules.filter((r) => dnatFor(r, rule.protocol, ours)).map(published);
}

function dnatFor(r: Rule, protocol: string, ours: PortSpan[]): boolean {
  if (r.target !== "DNAT" || r.match.protocol?.value !== protocol || r.match.protocol.negated) return false;
  const dport = r.match.dport ?? r.match.dports;
  const theirs = dport && !dport.negated ? portRanges(dport.value) : undefined;
  return !!theirs && overlap(ours, theirs);
}

function published(r: Rule): Published {
  const at = r.targetArgs.indexOf("--to-destination");
  const d = r.match.destination;
  return {
    rule: shown(r.text),
    to: at >= 0 ? (r.targetArgs[at + 1] ?? "") : "",
    address: d && !d.negated ? d.value : undefined,
  };
}

/**
 * The warning for a rule on INPUT whose port Docker publishes, saying what to write instead.
 * @example dockerWarning({ chain: "INPUT", protocol: "tcp", ports: "8080", action: "DROP" }, published, "web1")
 */
export function dockerWarning(
  rule: Pick<RuleInputs, "chain" | "protocol" | "ports" | "action">,
  found: readonly Published[],
  host: string,
): string {
  const list = found.map((p) => `${p.rule}${p.address ? ` (only for ${p.address})` : ""}`).join("; ");
  return (
    `Docker publishes ${rule.protocol} ${rule.ports} on ${host} (${list}): those packets are DNAT-ed to the ` +
    `container and forwarded through FORWARD, so they never reach ${rule.chain} and this ${rule.action} rule does ` +
    `not apply to them. To ${rule.action === "ACCEPT" ? "admit" : "filter"} the published port, write chain: ` +
    `"${DOCKER_USER}" (the rule then matches the original destination port: -m conntrack --ctorigdstport ` +
    `${rule.ports} --ctdir ORIGINAL)`
  );
}
