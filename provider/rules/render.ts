import { FLAGS, PROTOCOL_MODULE, quoting, type RuleMatch } from "./flags";
import { matchesOriginalPort } from "./docker";
import type { RuleSpec } from "./parse";
import type { Family, RuleInputs } from "./types";

/** `--reject-with` types as `iptables -S` prints them, per family. */
export const REJECT_TYPES: Readonly<Record<Family, readonly string[]>> = {
  4: [
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-port-unreachable",
    "icmp-proto-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "tcp-reset",
  ],
  6: [
    "icmp6-no-route",
    "icmp6-adm-prohibited",
    "icmp6-addr-unreachable",
    "icmp6-port-unreachable",
    "icmp6-policy-fail",
    "icmp6-reject-route",
    "tcp-reset",
  ],
};

/**
 * Family-neutral `rejectWith` names, usable with any `ipVersion` (and the only ICMP ones allowed
 * with `ipVersion: "both"`): each maps to the IPv4 and the IPv6 type of the same meaning.
 */
export const NEUTRAL_REJECT_TYPES: Readonly<Record<string, { 4: string; 6: string }>> = {
  "port-unreachable": { 4: "icmp-port-unreachable", 6: "icmp6-port-unreachable" },
  "host-unreachable": { 4: "icmp-host-unreachable", 6: "icmp6-addr-unreachable" },
  "net-unreachable": { 4: "icmp-net-unreachable", 6: "icmp6-no-route" },
  "admin-prohibited": { 4: "icmp-admin-prohibited", 6: "icmp6-adm-prohibited" },
};

/** The `--reject-with` type for one family. */
function rejectFor(rejectWith: string, family: Family): string {
  return NEUTRAL_REJECT_TYPES[rejectWith]?.[family] ?? rejectWith;
}

/** The rule model of checked inputs for one family (without a tag: the rule as made by hand). */
function specOf(inputs: RuleInputs, family: Family, tag: string | undefined): RuleSpec {
  if ((family === 4 && inputs.ipVersion === "ipv6") || (family === 6 && inputs.ipVersion === "ipv4")) {
    throw new Error(`renderRule: ipVersion ${inputs.ipVersion} has no IPv${family} rule`);
  }
  const neg = (value: string) => ({ value, negated: false });
  const multi = inputs.ports.includes(",");
  // In DOCKER-USER the packet already carries the container's port (after DNAT): match the port the
  // client asked for, as conntrack recorded it (one port or a range; `check` refuses a list there).
  const original = matchesOriginalPort(inputs.chain);
  const match: RuleMatch = {
    source: inputs.source === undefined ? undefined : neg(inputs.source),
    inInterface: inputs.inInterface === undefined ? undefined : neg(inputs.inInterface),
    protocol: neg(inputs.protocol),
    dport: multi || original ? undefined : neg(inputs.ports),
    dports: multi && !original ? neg(inputs.ports) : undefined,
    ctorigdstport: original ? neg(inputs.ports) : undefined,
    ctdir: original ? neg("ORIGINAL") : undefined,
    comment:
      tag === undefined
        ? inputs.comment === undefined
          ? undefined
          : neg(inputs.comment)
        : neg(inputs.comment === undefined ? tag : `${inputs.comment} ${tag}`),
  };
  const targetArgs =
    inputs.action === "REJECT" ? ["--reject-with", rejectFor(inputs.rejectWith ?? "port-unreachable", family)] : [];
  return { match, modules: [], target: inputs.action, goto: false, targetArgs, opaque: [], options: [] };
}

/** Emits a rule model as argv, walking the flag table in its canonical order. */
export function renderSpec(spec: Pick<RuleSpec, "match" | "target" | "goto" | "targetArgs">): string[] {
  const argv: string[] = [];
  let module: string | undefined;
  for (const flag of FLAGS) {
    const m = spec.match[flag.key];
    if (!m) continue;
    const wanted = flag.module === PROTOCOL_MODULE ? spec.match.protocol?.value : flag.module;
    if (wanted !== undefined && wanted !== module) {
      module = wanted;
      argv.push("-m", module);
    }
    if (m.negated) argv.push("!");
    argv.push(flag.flag);
    if (flag.arity === 1) argv.push(m.value);
  }
  if (spec.target !== undefined) argv.push(spec.goto ? "-g" : "-j", spec.target, ...spec.targetArgs);
  return argv;
}

/**
 * The rule-spec argv (without `-A CHAIN`) in exactly the order and spelling `iptables -S` prints.
 * Without a tag: the same rule as made by hand (its untagged twin, which `adopt` takes over).
 * @example renderRule(inputs, 4, "pulumi-iptables:web/prod/allow-ssh/k3x9q2ab")
 *   // ["-p","tcp","-m","tcp","--dport","2222","-m","comment","--comment","pulumi-iptables:web/prod/allow-ssh/k3x9q2ab","-j","ACCEPT"]
 * @example renderRule(inputs, 4) // ["-p","tcp","-m","tcp","--dport","2222","-j","ACCEPT"]
 */
export function renderRule(inputs: RuleInputs, family: Family, tag?: string): string[] {
  return renderSpec(specOf(inputs, family, tag));
}

/** The tokens that name the module or target the options after them belong to. */
const OWNERS: ReadonlySet<string> = new Set(["-m", "--match", "-j", "--jump", "-g", "--goto"]);

/**
 * The line `iptables -S` prints for a rule spec in a chain, with -S's quoting: each quoted option's
 * value as its module or target prints it (`--comment`, `--log-prefix`, `--string`, `--u32`, ...).
 * @example ruleText("INPUT", ["-p","tcp","-m","tcp","--dport","22","-m","comment","--comment","a b","-j","ACCEPT"])
 *   // '-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "a b" -j ACCEPT'
 */
export function ruleText(chain: string, argv: readonly string[]): string {
  const out = ["-A", chain];
  let owner = "";
  for (let i = 0; i < argv.length; i++) {
    out.push(argv[i]);
    if (i + 1 === argv.length) break;
    if (OWNERS.has(argv[i])) owner = argv[i + 1];
    const quote = quoting(owner, argv[i]);
    if (OWNERS.has(argv[i]) || quote) out.push((quote ?? String)(argv[++i]));
  }
  return out.join(" ");
}
