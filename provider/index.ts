// PortRule: opens or blocks one port on a remote Linux host with iptables, over SSH.
import * as pulumi from "@pulumi/pulumi";
// The serialized provider captures this module object; the SDK writes it as
// `require("pulumi-iptables/dist/provider")`, so the engine loads the installed package's code.
import lifecycle = require("./provider");

export type { PortRuleState } from "./provider";

type In<T> = pulumi.Input<T>;
export type PortItem = number | string | { from: number; to: number };

/** How to reach the host: the field names of @pulumi/command's `remote.Connection`, plus `sudo`. */
export interface ConnectionArgs {
  host: In<string>;
  /** SSH port, default 22. */
  port?: In<number>;
  /** Default "root". */
  user?: In<string>;
  password?: In<string>;
  privateKey?: In<string>;
  privateKeyPassword?: In<string>;
  agentSocketPath?: In<string>;
  /** Dial attempts before giving up, default 10. */
  dialErrorLimit?: In<number>;
  /** Seconds for one dial, default 15. */
  perDialTimeout?: In<number>;
  /** The host's public key ("ssh-ed25519 AAAA...") or its fingerprint ("SHA256:..."). Without it,
   * the key seen at create is recorded and required from then on. */
  hostKey?: In<string>;
  /** A jump host. */
  proxy?: In<Omit<ConnectionArgs, "proxy" | "sudo">>;
  /** Run iptables as root through `sudo -n` (the user needs NOPASSWD sudo for /bin/sh). */
  sudo?: In<boolean>;
}

export interface PortRuleArgs {
  connection: In<ConnectionArgs>;
  /** A port, a range ("8000-8100", "8000:8100" or {from, to}), or a list of those (multiport). */
  port: In<PortItem | PortItem[]>;
  /** tcp (default) or udp. */
  protocol?: In<"tcp" | "udp">;
  action: In<"ACCEPT" | "DROP" | "REJECT">;
  /** With REJECT: e.g. "tcp-reset", "icmp-port-unreachable" (default), "icmp6-adm-prohibited". */
  rejectWith?: In<string>;
  /** Default INPUT. */
  chain?: In<string>;
  /** Default filter. */
  table?: In<string>;
  /** Only packets from this address or CIDR. */
  source?: In<string>;
  /** Only packets arriving on this interface ("eth0", "eth+"). */
  inInterface?: In<string>;
  /** Your text, kept next to the identity tag in the rule's comment. */
  comment?: In<string>;
  /** ipv4 (default), ipv6, or both (one iptables and one ip6tables rule). */
  ipVersion?: In<"ipv4" | "ipv6" | "both">;
  /** "auto" (default: before the first rule that would decide these packets otherwise), "top",
   * "bottom", or a line number. */
  position?: In<"auto" | "top" | "bottom" | number>;
  /** Save the ruleset with the host's own mechanism after each change. */
  persist?: In<boolean>;
  /** Allow a DROP/REJECT that matches the provider's own SSH connection (it may cut you off). */
  allowLockout?: In<boolean>;
}

const provider: pulumi.dynamic.ResourceProvider = {
  check: (olds, news) => lifecycle.check(olds, news),
  diff: (id, olds, news) => lifecycle.diff(id, olds, news),
  create: (inputs) => lifecycle.create(inputs),
  read: (id, props) => lifecycle.read(id, props),
  update: (id, olds, news) => lifecycle.update(id, olds, news),
  delete: (id, props) => lifecycle.remove(id, props),
};

/** Output properties beyond the inputs (see PortRuleState for their meaning). */
const OUTPUTS = [
  "unique",
  "tag",
  "host",
  "rules",
  "insertedAt",
  "placement",
  "line",
  "counters",
  "packets",
  "bytes",
  "effective",
  "shadowedBy",
  "missing",
  "backend",
  "iptablesVersion",
  "hostKeyFingerprint",
  "listening",
  "persisted",
  "ports",
] as const;

export class PortRule extends pulumi.dynamic.Resource {
  declare readonly tag: pulumi.Output<string>;
  declare readonly host: pulumi.Output<string>;
  declare readonly rules: pulumi.Output<{ ipv4?: string; ipv6?: string }>;
  declare readonly insertedAt: pulumi.Output<{ ipv4?: number; ipv6?: number }>;
  declare readonly placement: pulumi.Output<{ ipv4?: string; ipv6?: string }>;
  declare readonly line: pulumi.Output<{ ipv4?: number; ipv6?: number }>;
  declare readonly counters: pulumi.Output<{
    ipv4?: { packets: number; bytes: number };
    ipv6?: { packets: number; bytes: number };
  }>;
  declare readonly packets: pulumi.Output<number>;
  declare readonly bytes: pulumi.Output<number>;
  declare readonly effective: pulumi.Output<boolean>;
  declare readonly shadowedBy: pulumi.Output<{ ipv4?: string; ipv6?: string }>;
  declare readonly missing: pulumi.Output<string[]>;
  declare readonly backend: pulumi.Output<string>;
  declare readonly iptablesVersion: pulumi.Output<string>;
  declare readonly hostKeyFingerprint: pulumi.Output<string>;
  declare readonly listening: pulumi.Output<boolean | undefined>;
  declare readonly persisted: pulumi.Output<false | { mechanism: string; files: string[] }>;

  constructor(name: string, args: PortRuleArgs, opts?: pulumi.CustomResourceOptions) {
    const inputs: Record<string, unknown> = {
      ...args,
      // Credentials stay secret in state; the host is shown separately as `host`.
      connection: pulumi.secret(args.connection),
      identity: { project: pulumi.getProject(), stack: pulumi.getStack(), name },
    };
    for (const k of OUTPUTS) inputs[k] = undefined;
    super(
      provider,
      name,
      inputs,
      { ...opts, additionalSecretOutputs: ["connection", ...(opts?.additionalSecretOutputs ?? [])] },
      "pulumi-iptables",
      "PortRule",
    );
  }
}
