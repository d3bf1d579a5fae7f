import { FLAGS, PROTOCOL_MODULE, saveString, type RuleMatch } from "./flags";
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

/** The identity tag's fixed prefix. */
export const TAG_PREFIX = "pulumi-iptables:";
/** A tag never exceeds this many bytes (project/stack/name are shortened to fit). */
export const MAX_TAG_BYTES = 128;
/** iptables keeps at most 255 bytes of comment; the user's part shares them with a space and the tag. */
export const MAX_COMMENT_BYTES = 255 - 1 - MAX_TAG_BYTES;

const SAFE = /[^A-Za-z0-9._-]/g;

/**
 * The identity tag of one created rule: `pulumi-iptables:<project>/<stack>/<name>/<unique>`.
 * Each part is reduced to `[A-Za-z0-9._-]` (others become `_`), and the longest parts are cut
 * until the tag fits in MAX_TAG_BYTES. `unique` is the random part fixed at create (the resource id).
 * @example makeTag({ project: "web", stack: "prod", name: "allow-ssh" }, "k3x9q2ab")
 *   // "pulumi-iptables:web/prod/allow-ssh/k3x9q2ab"
 */
export function makeTag(identity: { project: string; stack: string; name: string }, unique: string): string {
  if (!/^[A-Za-z0-9]{4,32}$/.test(unique))
    throw new Error(`tag unique part must be 4-32 letters or digits, got ${JSON.stringify(unique)}`);
  const parts = [identity.project, identity.stack, identity.name].map((p) =>
    (p.replace(SAFE, "_") || "_").slice(0, MAX_TAG_BYTES),
  );
  const budget = MAX_TAG_BYTES - TAG_PREFIX.length - 3 - unique.length;
  while (parts.reduce((n, p) => n + p.length, 0) > budget) {
    const longest = parts.reduce((a, p, i) => (p.length > parts[a].length ? i : a), 0);
    parts[longest] = parts[longest].slice(0, -1);
  }
  return `${TAG_PREFIX}${parts.join("/")}/${unique}`;
}

/**
 * The identity tag in a listed rule's comment, or undefined for a rule we did not make.
 * @example tagOf(parseRuleset(save).tables.get("filter")!.chains.get("INPUT")!.rules[0])
 */
export function tagOf(rule: Pick<RuleSpec, "match">): string | undefined {
  return rule.match.comment?.value.split(" ").find((w) => w.startsWith(TAG_PREFIX));
}

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

/**
 * The line `iptables -S` prints for a rule spec in a chain, with -S's quoting.
 * @example ruleText("INPUT", ["-p","tcp","-m","tcp","--dport","22","-m","comment","--comment","a b","-j","ACCEPT"])
 *   // '-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "a b" -j ACCEPT'
 */
export function ruleText(chain: string, argv: readonly string[]): string {
  const quoted = new Set(FLAGS.filter((f) => f.quoted).map((f) => f.flag));
  return ["-A", chain, ...argv.map((a, i) => (i > 0 && quoted.has(argv[i - 1]) ? saveString(a) : a))].join(" ");
}
