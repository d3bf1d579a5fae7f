// PortRule: opens or blocks one port on a remote Linux host with iptables, over SSH.
import * as pulumi from "@pulumi/pulumi";
// The serialized provider captures this module object; the SDK writes it as
// `require("pulumi-iptables/dist/provider")`, so the engine loads the installed package's code.
import lifecycle = require("./provider");

import type { PortRuleOutputs } from "./provider";
import type { Connection, JumpHost, PortRuleInputs, RuleInputs } from "./rules";

export type { PortRuleOutputs, PortRuleState } from "./provider";
export type { Connection, JumpHost, PortItem, PortRange, PortRuleInputs } from "./rules";

type In<T> = pulumi.Input<T>;
/** Each field of T as a Pulumi input: a value, a promise, or another resource's output. */
type ArgsOf<T> = { [K in keyof T]: In<T[K]> };

/** A jump host (see `Connection`), each field a Pulumi input. */
export type JumpHostArgs = ArgsOf<JumpHost>;
/** How to reach the host (see `Connection`: the field names of @pulumi/command's `remote.Connection`,
 * plus `sudo`), each field a Pulumi input. */
export type ConnectionArgs = ArgsOf<Omit<Connection, "proxy">> & { proxy?: In<JumpHostArgs> };
/** PortRule's arguments (see `PortRuleInputs`), each field a Pulumi input. */
export type PortRuleArgs = ArgsOf<Omit<PortRuleInputs, "connection">> & { connection: In<ConnectionArgs> };

const provider: pulumi.dynamic.ResourceProvider = {
  check: (olds, news) => lifecycle.check(olds, news),
  diff: (id, olds, news) => lifecycle.diff(id, olds, news),
  create: (inputs) => lifecycle.create(inputs),
  read: (id, props) => lifecycle.read(id, props),
  update: (id, olds, news) => lifecycle.update(id, olds, news),
  delete: (id, props) => lifecycle.remove(id, props),
};

/** Every output beyond the inputs, for the engine to fill; the compiler checks it against PortRuleOutputs. */
const OUTPUTS: Record<keyof PortRuleOutputs | "ports", undefined> = {
  unique: undefined,
  tag: undefined,
  host: undefined,
  rules: undefined,
  insertedAt: undefined,
  placement: undefined,
  line: undefined,
  counters: undefined,
  packets: undefined,
  bytes: undefined,
  effective: undefined,
  shadowedBy: undefined,
  placeable: undefined,
  shadowTag: undefined,
  missing: undefined,
  backend: undefined,
  iptablesVersion: undefined,
  hostKeyFingerprint: undefined,
  proxyHostKeyFingerprint: undefined,
  listening: undefined,
  persisted: undefined,
  adopts: undefined,
  adopted: undefined,
  ports: undefined,
};

/** The normalized inputs, outputs too (check fills what the user left out with its default), for the
 * engine to fill; the connection (secret) is an output as the user passed it. */
type Normalized = Omit<RuleInputs, "connection" | "identity" | "defaults" | "ports">;
const NORMALIZED: Record<keyof Normalized, undefined> = {
  port: undefined,
  protocol: undefined,
  action: undefined,
  rejectWith: undefined,
  chain: undefined,
  table: undefined,
  source: undefined,
  inInterface: undefined,
  comment: undefined,
  ipVersion: undefined,
  position: undefined,
  persist: undefined,
  allowLockout: undefined,
  adopt: undefined,
  heal: undefined,
  rollbackAfter: undefined,
};

/** The URN of the PortRule `name` (pulumi.dynamic.Resource's type, as super is given it below). */
const urnOf = (name: string, opts?: pulumi.CustomResourceOptions) =>
  pulumi.createUrn(name, "pulumi-nodejs:dynamic/pulumi-iptables:PortRule", opts?.parent);

/** The outputs of a PortRule: the normalized inputs and PortRuleOutputs (declaration merging with the class below). */
export interface PortRule extends Readonly<OutputsOf<PortRuleOutputs & Normalized & Pick<RuleInputs, "ports">>> {}
type OutputsOf<T> = { [K in keyof T]-?: pulumi.Output<T[K]> };

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the engine sets every output property, as `declare readonly` would say field by field
export class PortRule extends pulumi.dynamic.Resource {
  constructor(name: string, args: PortRuleArgs, opts?: pulumi.CustomResourceOptions) {
    // The SDK writes a stack trace onto each of the promises it makes per property (for its promise-leak
    // report), and the source-map support the language host installs maps every frame: that was most of what
    // a program spent registering PortRules (bench, 50 of them: 1.16 s from the first registration to the
    // serialized provider, 0.35 s without the stacks). They are taken only while debugging leaks.
    const limit = Error.stackTraceLimit;
    if (!process.env.PULUMI_DEBUG_PROMISE_LEAKS) Error.stackTraceLimit = 0;
    try {
      const inputs: Record<string, unknown> = {
        ...OUTPUTS, // as state written before the outputs were hidden records them (read below)
        // As the engine records them: what the user did not write under `__`, hidden from its diffs.
        ...lifecycle.toStored({
          ...NORMALIZED,
          ...args,
          ...OUTPUTS,
          // Credentials stay secret in state; the host is shown separately as `host`.
          connection: pulumi.secret(args.connection),
          // The URN the engine gives this resource, for the provider's messages to appear on it.
          identity: { project: pulumi.getProject(), stack: pulumi.getStack(), name, urn: urnOf(name, opts) },
        }),
      };
      super(
        provider,
        name,
        inputs,
        { ...opts, additionalSecretOutputs: ["connection", ...(opts?.additionalSecretOutputs ?? [])] },
        "pulumi-iptables",
        "PortRule",
      );
      // The SDK gives the resource a property per state key: an output recorded as `__name` (provider/state.ts,
      // HIDDEN) is read under its documented name, or as `name` in state written before (until an update or a
      // refresh records it again).
      const self = this as unknown as Record<string, pulumi.Output<unknown>>;
      for (const name of Object.keys(OUTPUTS)) {
        const key = lifecycle.storedKey(name);
        if (key !== name) self[name] = pulumi.all([self[key], self[name]]).apply(([now, before]) => now ?? before);
      }
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}
