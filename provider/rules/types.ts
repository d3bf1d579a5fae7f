// The vocabulary of PortRule, declared once: what a user writes (`PortRuleInputs`, `Connection`), what
// `check` makes of it (`RuleInputs`, `CheckedConnection`), and the names every layer shares (families,
// backends). The SSH layer, the host transactions, the lifecycle and the resource's argument types
// all derive from these declarations. Types only: no code; iptables' own names come from ./names.

import type { PROTOCOLS, TABLES } from "./names";

/** An IP family: 4 is iptables, 6 is ip6tables. */
export type Family = 4 | 6;
/** A family as PortRule inputs and outputs name it. */
export type FamilyName = "ipv4" | "ipv6";
/** An iptables backend, as `iptables --version` prints it: "(nf_tables)" or "(legacy)". */
export type Backend = "nf_tables" | "legacy";

/** A protocol a PortRule opens or blocks. */
export type Protocol = (typeof PROTOCOLS)[number];
/** One of iptables' own tables. */
export type TableName = (typeof TABLES)[number];

/** An inclusive port range. */
export interface PortRange {
  from: number;
  to: number;
}
/** A port as a user writes it: 8080, "8000-8100" (or "8000:8100"), or { from: 8000, to: 8100 }. */
export type PortItem = number | string | PortRange;
/** A port after `check`: a number, or a range whose ends differ. */
export type CheckedPort = number | PortRange;

/** How to reach a host: the field names of @pulumi/command's `remote.Connection`, plus `sudo`. */
export interface Connection {
  /** Host name or IPv4/IPv6 address. */
  host: string;
  /** SSH port, default 22. */
  port?: number;
  /** Login user, default "root". */
  user?: string;
  password?: string;
  /** The private key's text (not a path). */
  privateKey?: string;
  privateKeyPassword?: string;
  /** An ssh-agent socket (default $SSH_AUTH_SOCK). */
  agentSocketPath?: string;
  /** Dial attempts before giving up, default 10; -1 for no limit (as in @pulumi/command). */
  dialErrorLimit?: number;
  /** Seconds for one dial (TCP connect, SSH handshake, authentication), default 15. */
  perDialTimeout?: number;
  /** SSH handshakes at once that involve this sshd (to it, or through it when it is a jump host): default 8,
   * at most 10 (the provider runs at most 10 handshakes at once in all). Keep it below the sshd's
   * MaxStartups (default 10:30:100: it drops connections from 10 unauthenticated on). */
  maxConcurrentDials?: number;
  /** The host's public key ("ssh-ed25519 AAAA...") or its fingerprint ("SHA256:..."). Without it,
   * the key seen at create is recorded and required from then on. */
  hostKey?: string;
  /** A jump host: reached first, then a direct-tcpip channel to `host:port` carries this connection. */
  proxy?: JumpHost;
  /** Run iptables as root through `sudo -n` (the user needs NOPASSWD sudo for /bin/sh). */
  sudo?: boolean;
}
/** A jump host: a connection without a jump host of its own and without sudo. */
export type JumpHost = Omit<Connection, "proxy" | "sudo">;

/** Connection fields that `check` fills with their defaults. */
type ConnectionDefaults = "port" | "user" | "dialErrorLimit" | "perDialTimeout" | "maxConcurrentDials";
/** A jump host after `check`: defaults filled. */
export type CheckedJumpHost = Omit<JumpHost, ConnectionDefaults> & Required<Pick<JumpHost, ConnectionDefaults>>;
/** A connection after `check`: defaults filled; what the SSH layer dials. */
export type CheckedConnection = CheckedJumpHost & { proxy?: CheckedJumpHost; sudo: boolean };

/** Where a rule goes: "auto" (where it takes effect), "top", "bottom", or a line number. */
export type Position = "auto" | "top" | "bottom" | number;

/** PortRule's inputs as a user writes them (the resource's arguments are these, as Pulumi inputs). */
export interface PortRuleInputs {
  connection: Connection;
  /** A port, a range ("8000-8100", "8000:8100" or {from, to}), or a list of those (multiport). */
  port: PortItem | PortItem[];
  /** tcp (default) or udp. */
  protocol?: Protocol;
  action: "ACCEPT" | "DROP" | "REJECT";
  /** With REJECT: e.g. "tcp-reset", "port-unreachable" (family-neutral), "icmp6-adm-prohibited".
   * Default: the port-unreachable type of the rule's family. */
  rejectWith?: string;
  /** INPUT (default), FORWARD, OUTPUT or a user chain. */
  chain?: string;
  /** filter (default), nat, mangle, raw or security. */
  table?: TableName;
  /** Only packets from this address or network; `check` makes it a canonical CIDR ("198.18.0.1/32"). */
  source?: string;
  /** Only packets arriving on this interface ("eth0", or "eth+" for every eth interface). */
  inInterface?: string;
  /** Your text, kept next to the identity tag in the rule's comment. */
  comment?: string;
  /** ipv4, ipv6, or both (one iptables and one ip6tables rule). Left out: the family `source` (or an ICMP
   * `rejectWith` of one family) names, else both (a rule created when the default was ipv4 keeps ipv4). */
  ipVersion?: "ipv4" | "ipv6" | "both";
  /** "auto" (default: the lowest line where the rule takes effect), "top", "bottom", or a line number. */
  position?: Position;
  /** Save the ruleset with the host's own mechanism after each change. */
  persist?: boolean;
  /** Allow a change that may cut off the provider's own SSH connection. */
  allowLockout?: boolean;
  /** Take over a rule made by hand: where the chain already holds an untagged rule that is exactly
   * this one (as `iptables -S` prints it), create tags it in place (same line, counters kept) instead
   * of inserting a twin; refresh and destroy then treat it as this resource's. Default false: a
   * create that finds such a twin warns and names it. */
  adopt?: boolean;
  /** Put the rule back where it decides its packets when a refresh finds it out of effect (position
   * "auto" only): `pulumi up --refresh` moves it in place, counters kept. Default true; false: reports only. */
  heal?: boolean;
  /** Seconds after which the host undoes a change the provider has not confirmed (a connection lost,
   * the provider killed, a change that locks the provider out), by itself. Default 30. */
  rollbackAfter?: number;
}

/** Who a rule belongs to: the identity tag is made from it (added by the resource's constructor). */
export interface Identity {
  project: string;
  stack: string;
  name: string;
  /** The resource's URN, for the provider's messages to appear on it (the engine does not tell a dynamic
   * provider's verbs). Not part of the tag nor of what defines the rule. */
  urn?: string;
}

/** Inputs that `check` fills with their defaults. */
type RuleDefaults =
  | "protocol"
  | "chain"
  | "table"
  | "ipVersion"
  | "position"
  | "persist"
  | "allowLockout"
  | "adopt"
  | "heal"
  | "rollbackAfter";

/**
 * PortRule inputs after `check`: defaults filled, values normalized. During preview any field may
 * still hold Pulumi's unknown sentinel (and then the fields derived from it do too).
 */
export type RuleInputs = Omit<PortRuleInputs, "connection" | "port" | RuleDefaults> &
  Required<Pick<PortRuleInputs, RuleDefaults>> & {
    connection: CheckedConnection;
    /** One port, one range, or a sorted, de-duplicated list (at least two items). */
    port: CheckedPort | CheckedPort[];
    /** Derived: the ports as iptables prints them: "2222", "8000:8100", "53,80,8000:8100". */
    ports: string;
    identity?: Identity;
    /** Defaults the rule keeps from the version that created it (ip-version.ts); absent in state written
     * before they were recorded. */
    defaults?: { ipVersion?: "ipv4" | "ipv6" | "both" };
  };
