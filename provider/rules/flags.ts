/**
 * The one ordered flag table of the rule model (the puppetlabs-firewall idea).
 *
 * The renderer walks it top to bottom to emit a rule spec in the order and spelling
 * `iptables -S` prints back; the parser looks tokens up in it to fill the same model.
 * Anything a listed rule carries that is not in this table is kept as opaque tokens.
 */

/** A match value and whether it is negated (`! -s 198.18.0.0/24`). */
export interface Neg {
  value: string;
  negated: boolean;
}

/** The matches of a rule that the table models. Absent = not constrained. */
export interface RuleMatch {
  source?: Neg;
  destination?: Neg;
  inInterface?: Neg;
  outInterface?: Neg;
  protocol?: Neg;
  /** `-f`: only second and later fragments (value is always ""). */
  fragment?: Neg;
  /** `-m tcp|udp --sport`: "22" or "1000:2000". */
  sport?: Neg;
  /** `-m tcp|udp --dport`: "22" or "8000:8100". */
  dport?: Neg;
  /** `-m multiport --sports`: "53,80,8000:8100". */
  sports?: Neg;
  /** `-m multiport --dports`. */
  dports?: Neg;
  /** `-m multiport --ports` (source or destination port). */
  ports?: Neg;
  icmpType?: Neg;
  icmpv6Type?: Neg;
  /** `-m conntrack --ctstate`: "RELATED,ESTABLISHED". */
  ctstate?: Neg;
  /** `-m conntrack --ctorigdstport`: the destination port before DNAT ("8080" or "8000:8100"). */
  ctorigdstport?: Neg;
  /** `-m conntrack --ctdir`: ORIGINAL or REPLY. */
  ctdir?: Neg;
  /** `-m state --state` (the older spelling of the same thing). */
  state?: Neg;
  comment?: Neg;
}

export type MatchKey = keyof RuleMatch;

/** Marks the tcp/udp match: its `-m` module is the rule's protocol. */
export const PROTOCOL_MODULE = "<protocol>";

export interface Flag {
  key: MatchKey;
  /** The spelling `iptables -S` prints. */
  flag: string;
  /** Other spellings accepted when parsing argv or older output. */
  aliases: readonly string[];
  /** The `-m` module the flag belongs to; undefined for the built-in matches. */
  module?: string;
  /** Number of values after the flag (0 for `-f`). */
  arity: 0 | 1;
}

/** In canonical order: built-in matches as iptables prints them, then our match modules. */
export const FLAGS: readonly Flag[] = [
  { key: "source", flag: "-s", aliases: ["--source", "--src"], arity: 1 },
  { key: "destination", flag: "-d", aliases: ["--destination", "--dst"], arity: 1 },
  { key: "inInterface", flag: "-i", aliases: ["--in-interface"], arity: 1 },
  { key: "outInterface", flag: "-o", aliases: ["--out-interface"], arity: 1 },
  { key: "protocol", flag: "-p", aliases: ["--protocol"], arity: 1 },
  { key: "fragment", flag: "-f", aliases: ["--fragment"], arity: 0 },
  { key: "sport", flag: "--sport", aliases: ["--source-port"], module: PROTOCOL_MODULE, arity: 1 },
  { key: "dport", flag: "--dport", aliases: ["--destination-port"], module: PROTOCOL_MODULE, arity: 1 },
  { key: "sports", flag: "--sports", aliases: ["--source-ports"], module: "multiport", arity: 1 },
  { key: "dports", flag: "--dports", aliases: ["--destination-ports"], module: "multiport", arity: 1 },
  { key: "ports", flag: "--ports", aliases: [], module: "multiport", arity: 1 },
  { key: "icmpType", flag: "--icmp-type", aliases: [], module: "icmp", arity: 1 },
  { key: "icmpv6Type", flag: "--icmpv6-type", aliases: [], module: "icmp6", arity: 1 },
  { key: "ctstate", flag: "--ctstate", aliases: [], module: "conntrack", arity: 1 },
  { key: "ctorigdstport", flag: "--ctorigdstport", aliases: [], module: "conntrack", arity: 1 },
  { key: "ctdir", flag: "--ctdir", aliases: [], module: "conntrack", arity: 1 },
  { key: "state", flag: "--state", aliases: [], module: "state", arity: 1 },
  { key: "comment", flag: "--comment", aliases: [], module: "comment", arity: 1 },
];

/** Modules whose every option the table models (tcp/udp stand for PROTOCOL_MODULE). */
export const MODELED_MODULES: ReadonlySet<string> = new Set([
  "tcp",
  "udp",
  "multiport",
  "icmp",
  "icmp6",
  "conntrack",
  "state",
  "comment",
]);

/** The three verdicts a PortRule gives, all different to a client: DROP times out, REJECT refuses at once. */
export const VERDICTS: ReadonlySet<string> = new Set(["ACCEPT", "DROP", "REJECT"]);

/** Targets that let the packet go on to the next rule. */
export const NON_TERMINATING: ReadonlySet<string> = new Set([
  "LOG",
  "NFLOG",
  "ULOG",
  "MARK",
  "CONNMARK",
  "CT",
  "NOTRACK",
  "TRACE",
  "AUDIT",
  "TCPMSS",
  "CLASSIFY",
  "DSCP",
  "TOS",
  "TTL",
  "HL",
  "SET",
  "CHECKSUM",
  "SECMARK",
  "CONNSECMARK",
  "IDLETIMER",
  "LED",
  "RATEEST",
  "TEE",
]);

/** Targets that decide the packet's fate otherwise than a verdict (a queue to user space, a tarpit). */
export const DECIDING: ReadonlySet<string> = new Set(["NFQUEUE", "QUEUE", "TARPIT", "SYNPROXY"]);

/** Finds the table entry for an option token, given the current `-m` module and protocol. */
export function lookupFlag(token: string, module: string | undefined, protocol: string | undefined): Flag | undefined {
  return FLAGS.find((f) => {
    if (f.flag !== token && !f.aliases.includes(token)) return false;
    if (f.module === undefined) return true;
    if (f.module === PROTOCOL_MODULE) {
      const m = module ?? protocol; // `-p tcp --dport 22` without `-m tcp` is accepted on input
      return (m === "tcp" || m === "udp") && (protocol === undefined || protocol === m);
    }
    return f.module === module;
  });
}

const NO_QUOTE = /^[A-Za-z0-9_-]+$/;

/** Quotes a value exactly as iptables' xtables_save_string does for `-S`/`iptables-save`. */
export function saveString(value: string): string {
  return NO_QUOTE.test(value) ? value : `"${value.replace(/["\\']/g, (c) => `\\${c}`)}"`;
}

/** Always in double quotes, `"` and `\\` escaped (libxt_string's print_string, LED; the others never hold them). */
const alwaysQuoted = (value: string) => `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;

/**
 * The option values `iptables -S` prints quoted, by the `-m` module or `-j` target they belong to
 * (the same option name elsewhere is not: IDLETIMER's `--label` is bare, connlabel's is quoted).
 */
const QUOTED_VALUES: Readonly<Record<string, Readonly<Record<string, (value: string) => string>>>> = {
  comment: { "--comment": saveString },
  helper: { "--helper": saveString },
  nfacct: { "--nfacct-name": saveString },
  cgroup: { "--path": saveString },
  LOG: { "--log-prefix": saveString },
  ULOG: { "--ulog-prefix": saveString },
  NFLOG: { "--nflog-prefix": saveString },
  string: { "--string": alwaysQuoted, "--hex-string": alwaysQuoted },
  u32: { "--u32": alwaysQuoted },
  bpf: { "--bytecode": alwaysQuoted },
  connlabel: { "--label": alwaysQuoted },
  LED: { "--led-trigger-id": alwaysQuoted },
};

/** How `iptables -S` quotes the value of `option` of module or target `owner`, or undefined: bare. */
export const quoting = (owner: string, option: string): ((value: string) => string) | undefined =>
  Object.hasOwn(QUOTED_VALUES, owner) && Object.hasOwn(QUOTED_VALUES[owner], option)
    ? QUOTED_VALUES[owner][option]
    : undefined;
