/** The schema of PortRule's inputs: the port, the rule's matches, its place and the change's options. */
import ipaddr from "ipaddr.js";
import { z } from "zod";
import { connectionFields } from "./connection-schema";
import { ALL_BUILTINS, PROTOCOLS, TABLES } from "./names";
import { MAX_COMMENT_BYTES, TAG_PREFIX } from "./tag";
import { custom, describe, isUnknown, oneOf, type SameKeysAndTypes } from "./schema-kit";
import type { CheckedPort, Family, RuleInputs } from "./types";

const PORT_HELP = 'a port 1-65535, a range "8000-8100" or { from: 8000, to: 8100 }, or a list of those';

function portItem(v: unknown, ctx: z.RefinementCtx, path: (string | number)[]): CheckedPort | undefined {
  const num = (x: unknown) =>
    typeof x === "number" ? x : typeof x === "string" && /^\d{1,5}$/.test(x) ? Number(x) : NaN;
  let from: number, to: number;
  if (typeof v === "string" && /^\s*\d{1,5}\s*[-:]\s*\d{1,5}\s*$/.test(v)) [from, to] = v.split(/[-:]/).map(Number);
  else if (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).sort().join() === "from,to") {
    [from, to] = [num((v as { from: unknown }).from), num((v as { to: unknown }).to)];
  } else from = to = num(v);
  if (![from, to].every((p) => Number.isInteger(p) && p >= 1 && p <= 65535)) {
    custom(ctx, `must be ${PORT_HELP}; got ${describe(v)}`, path);
    return undefined;
  }
  if (from > to) {
    custom(ctx, `the range starts after it ends: write it as ${to}-${from}`, path);
    return undefined;
  }
  return from === to ? from : { from, to };
}

const bounds = (p: CheckedPort) => (typeof p === "number" ? [p, p] : [p.from, p.to]);

const portField = z.unknown().transform((v, ctx): CheckedPort | CheckedPort[] => {
  if (isUnknown(v)) return v as CheckedPort[]; // e.g. [80, <unknown>] during preview: checked at update
  if (v === undefined) return custom(ctx, `is required: give ${PORT_HELP}`);
  if (!Array.isArray(v)) return portItem(v, ctx, []) ?? z.NEVER;
  if (v.length === 0) return custom(ctx, `must not be an empty list: give ${PORT_HELP}`);
  if (v.length > 100)
    return custom(ctx, `lists ${v.length} items but iptables' multiport match takes at most 15 ports: split the rule`);
  const items = v.map((x, i) => portItem(x, ctx, [i]));
  if (items.some((x) => x === undefined)) return z.NEVER;
  const sorted = (items as CheckedPort[]).sort((a, b) => bounds(a)[0] - bounds(b)[0] || bounds(b)[1] - bounds(a)[1]);
  // Drop items another item already covers (duplicates, ports inside a range).
  const kept = sorted.filter(
    (p, i) => !sorted.slice(0, i).some((q) => bounds(q)[0] <= bounds(p)[0] && bounds(p)[1] <= bounds(q)[1]),
  );
  const slots = kept.reduce<number>((n, p) => n + (typeof p === "number" ? 1 : 2), 0);
  if (slots > 15)
    return custom(
      ctx,
      `lists ${slots} port slots but iptables' multiport match takes at most 15 (a range counts as 2): split the rule in two`,
    );
  return kept.length === 1 ? kept[0] : kept;
});

export function portsText(port: CheckedPort | CheckedPort[]): string {
  return (Array.isArray(port) ? port : [port])
    .map((p) => (typeof p === "number" ? `${p}` : `${p.from}:${p.to}`))
    .join(",");
}

/** Canonical CIDR for an address or network; a message when it is not one. */
function canonicalCidr(v: string): { cidr: string; family: Family } | { error: string } {
  const [addr, prefixText, extra] = v.split("/");
  const isV4 = ipaddr.IPv4.isValidFourPartDecimal(addr);
  if (extra !== undefined || !(isV4 || (ipaddr.IPv6.isValid(addr) && !addr.includes("%")))) {
    return {
      error: `must be an IPv4 or IPv6 address or network, e.g. "198.18.0.0/24" or "fd00::/64"; got ${describe(v)}`,
    };
  }
  const max = isV4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max))
    return { error: `has a prefix length of /${prefixText}, but IPv${isV4 ? 4 : 6} allows /0 to /${max}` };
  if (prefix === 0) return { error: "matches every address: leave source out instead" };
  const cidr = `${addr}/${prefix}`;
  const network = (isV4 ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(cidr).toString();
  const parsed = ipaddr.parse(addr);
  if (
    parsed.kind() === "ipv6" &&
    (parsed as ipaddr.IPv6).parts.slice(0, 5).every((p) => p === 0) &&
    !["::", "::1"].includes(network)
  ) {
    return { error: 'is an IPv4-mapped or IPv4-compatible IPv6 address: use the IPv4 address with ipVersion "ipv4"' };
  }
  if (parsed.toString() !== network)
    return {
      error: `has host bits set: the network is ${network}/${prefix} (or write ${parsed.toString()}/${max} for the single address)`,
    };
  return { cidr: `${network}/${prefix}`, family: isV4 ? 4 : 6 };
}

const TARGET_NAMES = ["ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG"];

/** @internal Not in the published types: they must not mention zod (see tsconfig's stripInternal). */
export const ruleFields = {
  connection: z.object(connectionFields, {
    error: "must be the SSH connection to the host: { host, user, privateKey, ... }",
  }),
  port: portField,
  protocol: oneOf(PROTOCOLS, false).default("tcp"),
  action: oneOf(["ACCEPT", "DROP", "REJECT"] as const, true),
  rejectWith: z
    .string({ error: 'must be a --reject-with type name, e.g. "tcp-reset"' })
    .transform((s) => s.toLowerCase())
    .optional(),
  chain: z
    .string({ error: 'must be a chain name, e.g. "INPUT"' })
    .transform((c, ctx) => {
      if (ALL_BUILTINS.includes(c)) return c;
      // Chain names are case-sensitive: "input" would be a user chain of its own, never INPUT.
      if (ALL_BUILTINS.includes(c.toUpperCase()))
        return custom(
          ctx,
          `must be "${c.toUpperCase()}": iptables chain names are case-sensitive, and the built-in chain is upper case`,
        );
      if (!/^[A-Za-z0-9_][A-Za-z0-9._:@+-]{0,27}$/.test(c)) {
        return custom(
          ctx,
          "must be INPUT, FORWARD, OUTPUT or a user chain name of at most 28 letters, digits and . _ : @ + - (no spaces)",
        );
      }
      if (TARGET_NAMES.includes(c.toUpperCase()))
        return custom(ctx, `${c} is a target, not a chain: use action for it`);
      return c;
    })
    .default("INPUT"),
  table: oneOf(TABLES, false).default("filter"),
  source: z
    .string({ error: 'must be an address or network, e.g. "198.18.0.0/24"' })
    .transform((s, ctx) => {
      const r = canonicalCidr(s.trim());
      return "error" in r ? custom(ctx, r.error) : r.cidr;
    })
    .optional(),
  inInterface: z
    .string({ error: 'must be an interface name, e.g. "eth0" or "eth+"' })
    .refine((i) => i !== "+", { error: "matches every interface: leave inInterface out instead" })
    .refine((i) => /^[A-Za-z0-9._-]{1,15}\+?$/.test(i) && i.length <= 15, {
      error:
        'must be an interface name of at most 15 characters (letters, digits, . _ -), optionally ending in + as a wildcard, e.g. "eth0" or "veth+"',
    })
    .optional(),
  comment: z
    .string({ error: "must be text" })
    .refine((c) => c.length > 0, { error: "must not be empty: leave it out instead" })
    .refine((c) => /^[A-Za-z0-9 ._:/=+,@()-]*$/.test(c), {
      error:
        "may only contain letters, digits, spaces and . _ : / = + , @ - ( ): remove other characters (quotes, ;, #, $, ` and the like)",
    })
    .refine((c) => !c.includes(TAG_PREFIX), {
      error: `must not contain "${TAG_PREFIX}": that prefix marks the identity tag the provider adds`,
    })
    .refine((c) => Buffer.byteLength(c) <= MAX_COMMENT_BYTES, {
      error: `must be at most ${MAX_COMMENT_BYTES} characters: iptables keeps 255 bytes of comment and the provider's identity tag needs the rest`,
    })
    .optional(),
  // Left out: check derives it (ip-version.ts, defaultIpVersion).
  ipVersion: oneOf(["ipv4", "ipv6", "both"] as const, false).optional(),
  position: z
    .union([z.number(), z.string()], { error: 'must be "auto", "top", "bottom" or a line number' })
    .transform((p, ctx) => {
      const t = typeof p === "string" ? p.trim().toLowerCase() : p;
      if (t === "auto" || t === "top" || t === "bottom") return t;
      const n = typeof t === "string" && /^\d{1,6}$/.test(t) ? Number(t) : t;
      return typeof n === "number" && Number.isInteger(n) && n >= 1
        ? n
        : custom(ctx, 'must be "auto", "top", "bottom" or a line number of 1 or more');
    })
    .default("auto"),
  persist: z.boolean({ error: "must be true or false" }).default(false),
  allowLockout: z.boolean({ error: "must be true or false" }).default(false),
  adopt: z.boolean({ error: "must be true or false" }).default(false),
  heal: z.boolean({ error: "must be true or false" }).default(true),
  rollbackAfter: z
    .number({ error: "must be a number of seconds, e.g. 30" })
    .int({ error: "must be a whole number of seconds" })
    .min(2, {
      error:
        "must be at least 2 seconds: the host undoes an unconfirmed change after that long, so it must outlast a transaction",
    })
    .max(3600, { error: "must be at most 3600 seconds (an hour): an unconfirmed change should not stay that long" })
    .default(30),
  identity: z
    .object(
      {
        project: z.string().min(1).max(400),
        stack: z.string().min(1).max(400),
        name: z.string().min(1).max(400),
        urn: z.string().max(4000).optional(),
      },
      { error: "is set by PortRule itself; do not pass it" },
    )
    .optional(),
};

/** The PortRule input schema (for fully known inputs; `check` also tolerates unknown values). */
const portRuleSchema = z.object(ruleFields);

/** The schema and the declaration in ./types have the same fields, of the same types (checked at compile time);
 * `ports`, `defaults` and a left-out `ipVersion` are derived by `check`. */
const inputsMatchDeclaration: SameKeysAndTypes<
  z.output<typeof portRuleSchema>,
  Omit<RuleInputs, "ports" | "defaults" | "ipVersion"> & { ipVersion?: RuleInputs["ipVersion"] }
> = true;
void inputsMatchDeclaration;
