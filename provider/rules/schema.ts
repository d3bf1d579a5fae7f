import ipaddr from "ipaddr.js";
import { z } from "zod";
import { DOCKER_USER, matchesOriginalPort } from "./docker";
import { BUILTIN_CHAINS } from "./flags";
import { HOST_KEY_HELP, parseHostKey } from "./hostkey";
import { MAX_COMMENT_BYTES, NEUTRAL_REJECT_TYPES, REJECT_TYPES, TAG_PREFIX } from "./render";
import type { CheckedConnection, CheckedPort, Family, RuleInputs } from "./types";

/** SSH handshakes in flight at once in a provider process, over all hosts (the SSH layer holds to it). */
export const MAX_DIALS = 10;
/** The default of maxConcurrentDials: SSH handshakes at once that involve one sshd. */
export const DIALS_PER_HOST = 8;

/** Pulumi's placeholder for a value not known yet (during preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface CheckFailure {
  property: string;
  reason: string;
}

// ---------------------------------------------------------------- field schemas

/** True when the value is, or contains, Pulumi's unknown sentinel. */
export function isUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  return typeof v === "object" && v !== null && Object.values(v).some(isUnknown);
}

const custom = (ctx: z.RefinementCtx, message: string, path: (string | number)[] = []) => {
  ctx.addIssue({ code: "custom", message, path });
  return z.NEVER;
};

function oneOf<T extends string>(values: readonly T[], upper: boolean) {
  const message = `must be one of ${values.join(", ")}`;
  return z.string({ error: message }).transform((s, ctx) => {
    const v = (upper ? s.toUpperCase() : s.toLowerCase()) as T;
    return values.includes(v) ? v : custom(ctx, message);
  });
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const secret = (what: string) =>
  z.string({ error: `must be the ${what} as a string` }).min(1, { error: `must not be empty: leave it out instead` });

const proxyFields = {
  host: z
    .string({ error: 'must be the host name or IP address to connect to, e.g. "198.18.0.10"' })
    .refine(
      (h) => ipaddr.IPv4.isValidFourPartDecimal(h) || (ipaddr.IPv6.isValid(h) && !h.includes("%")) || HOSTNAME.test(h),
      {
        error:
          'must be a host name or an IPv4/IPv6 address without port or spaces, e.g. "198.18.0.10" or "web1.example.com"',
      },
    ),
  port: z
    .number({ error: "must be the SSH port as a number, e.g. 22" })
    .int({ error: "must be a whole number, e.g. 22" })
    .min(1, { error: "must be between 1 and 65535" })
    .max(65535, { error: "must be between 1 and 65535" })
    .default(22),
  user: z
    .string({ error: 'must be the login user name, e.g. "root"' })
    .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, {
      error: "must be a Unix user name (letters, digits, _ . -; at most 32 characters)",
    })
    .default("root"),
  password: secret("password").optional(),
  privateKey: secret("private key")
    .refine((k) => /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(k), {
      error:
        'must be the private key\'s text (it starts with -----BEGIN ... PRIVATE KEY-----), not a file path: read the file, e.g. fs.readFileSync(path, "utf8")',
    })
    .optional(),
  privateKeyPassword: secret("private key passphrase").optional(),
  agentSocketPath: z
    .string({ error: "must be the path of the ssh-agent socket, e.g. process.env.SSH_AUTH_SOCK" })
    .regex(/^\/[^\0]{0,4095}$/, { error: "must be an absolute path, e.g. /run/user/1000/ssh-agent.sock" })
    .optional(),
  dialErrorLimit: z
    .number({ error: "must be a number of connection attempts, e.g. 10" })
    .int({ error: "must be a whole number of attempts" })
    .refine((n) => n === -1 || (n >= 1 && n <= 1000), {
      error: "must be from 1 to 1000 attempts, or -1 for no limit (as in @pulumi/command)",
    })
    .default(10),
  perDialTimeout: z
    .number({ error: "must be a number of seconds, e.g. 15" })
    .min(1, { error: "must be at least 1 second: an SSH handshake and every remote step need that much" })
    .max(3600, { error: "must be at most 3600 seconds" })
    .default(15),
  maxConcurrentDials: z
    .number({ error: "must be a number of SSH handshakes at once, e.g. 4" })
    .int({ error: "must be a whole number of handshakes" })
    .min(1, { error: `must be from 1 to ${MAX_DIALS} handshakes at once` })
    .max(MAX_DIALS, {
      error: `must be at most ${MAX_DIALS}: the provider runs at most ${MAX_DIALS} SSH handshakes at once in all; leave it out for ${DIALS_PER_HOST}`,
    })
    .default(DIALS_PER_HOST),
  hostKey: z
    .string({ error: HOST_KEY_HELP })
    .transform((k, ctx) => {
      const parsed = parseHostKey(k);
      return parsed ? (parsed.publicKey ?? parsed.fingerprint) : custom(ctx, HOST_KEY_HELP);
    })
    .optional(),
};

const connectionFields = {
  ...proxyFields,
  proxy: z
    .object(proxyFields, { error: "must be the jump host's connection: { host, user, privateKey, ... }" })
    .optional(),
  sudo: z.boolean({ error: "must be true or false" }).default(false),
};

/** The schema and the declaration in ./types describe the same checked connection (checked at compile time). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const connectionMatchesDeclaration: Same<z.output<z.ZodObject<typeof connectionFields>>, CheckedConnection> = true;
void connectionMatchesDeclaration;

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
const ALL_BUILTINS = [...new Set(Object.values(BUILTIN_CHAINS).flat())];

const ruleFields = {
  connection: z.object(connectionFields, {
    error: "must be the SSH connection to the host: { host, user, privateKey, ... }",
  }),
  port: portField,
  protocol: oneOf(["tcp", "udp"] as const, false).default("tcp"),
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
  table: oneOf(["filter", "nat", "mangle", "raw", "security"] as const, false).default("filter"),
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
  ipVersion: oneOf(["ipv4", "ipv6", "both"] as const, false).default("ipv4"),
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
      },
      { error: "is set by PortRule itself; do not pass it" },
    )
    .optional(),
};

// ---------------------------------------------------------------- check

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? "a list" : `a ${typeof v}`;
}

/** `connection.proxy.host`, `port[2]`, `connection["odd key"]`. */
const pathText = (path: readonly PropertyKey[]) =>
  path.reduce<string>((s, k) => {
    if (typeof k === "number") return `${s}[${k}]`;
    const name = String(k);
    if (!/^[A-Za-z_]\w*$/.test(name)) return `${s}[${JSON.stringify(name.slice(0, 40))}]`;
    return s ? `${s}.${name}` : name;
  }, "");

/** Validates an object field by field, so unknown values skip only their own checks. */
function checkFields(
  fields: Record<string, z.ZodType>,
  value: unknown,
  path: string[],
  failures: CheckFailure[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    failures.push({ property: pathText(path) || "inputs", reason: `must be an object, got ${describe(value)}` });
    return out;
  }
  const given = value as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(key in fields) && !key.startsWith("__")) {
      failures.push({
        property: pathText([...path, key]),
        reason: `is not a known property; known: ${Object.keys(fields)
          .filter((k) => k !== "identity")
          .join(", ")}`,
      });
    }
  }
  for (const [key, schema] of Object.entries(fields)) {
    const v = given[key];
    if (v === UNKNOWN) {
      out[key] = v;
      continue;
    }
    const inner = schema instanceof z.ZodOptional ? schema.unwrap() : schema;
    if (inner instanceof z.ZodObject && v !== undefined && typeof v === "object" && v !== null && !Array.isArray(v)) {
      out[key] = checkFields(inner.shape, v, [...path, key], failures);
      continue;
    }
    const r = schema.safeParse(v);
    if (r.success) {
      if (r.data !== undefined) out[key] = r.data;
    } else {
      for (const issue of r.error.issues) {
        const message =
          v === undefined && issue.code === "invalid_type" ? `is required: it ${issue.message}` : issue.message;
        failures.push({ property: pathText([...path, key, ...issue.path]), reason: message });
      }
    }
  }
  return out;
}

const known = (...vs: unknown[]) => vs.every((v) => v !== UNKNOWN);

/** Cross-field rules; skipped for any value still unknown. Fills rejectWith's default. */
function crossCheck(i: Record<string, unknown>, fail: (property: string, reason: string) => void): void {
  const { action, protocol, table, chain, ipVersion, source, inInterface } = i;
  if (known(action) && action !== "REJECT" && i.rejectWith !== undefined) {
    fail(
      "rejectWith",
      `only applies to action REJECT, but action is ${action}: remove rejectWith or set action: "REJECT"`,
    );
  }
  if (action === "REJECT" && known(ipVersion)) {
    const rw =
      i.rejectWith ??
      { ipv4: "icmp-port-unreachable", ipv6: "icmp6-port-unreachable", both: "port-unreachable" }[ipVersion as string];
    i.rejectWith = rw;
    const neutral = Object.keys(NEUTRAL_REJECT_TYPES);
    const allowed =
      ipVersion === "both" ? ["tcp-reset", ...neutral] : [...REJECT_TYPES[ipVersion === "ipv6" ? 6 : 4], ...neutral];
    if (known(rw) && !allowed.includes(rw as string)) {
      fail(
        "rejectWith",
        `${describe(rw)} is not a reject type for ipVersion ${ipVersion}: use one of ${allowed.join(", ")}`,
      );
    } else if (rw === "tcp-reset" && known(protocol) && protocol !== "tcp") {
      fail("rejectWith", `tcp-reset only works with protocol tcp: use port-unreachable for ${protocol}`);
    }
  }
  if (known(table, chain)) {
    const builtins = BUILTIN_CHAINS[table as string] ?? [];
    if (ALL_BUILTINS.includes(chain as string) && !builtins.includes(chain as string)) {
      fail("chain", `the ${table} table has no ${chain} chain; its built-in chains are ${builtins.join(", ")}`);
    }
  }
  if (known(chain) && matchesOriginalPort(chain as string)) {
    if (known(table) && table !== "filter")
      fail("table", `${DOCKER_USER} is Docker's chain in the filter table: use table "filter"`);
    if (known(i.ports) && (i.ports as string).includes(","))
      fail(
        "port",
        `in ${DOCKER_USER} the rule matches the original destination port with -m conntrack --ctorigdstport, which takes one port or one range, not a list: make one PortRule per port or range`,
      );
  }
  if (known(action, table)) {
    if (action === "REJECT" && table !== "filter")
      fail("action", `REJECT only works in the filter table: use DROP, or table "filter"`);
    if (action !== "ACCEPT" && table === "nat")
      fail("action", `the nat table is not for filtering and iptables refuses ${action} there: use table "filter"`);
  }
  if (inInterface !== undefined && known(inInterface, chain) && (chain === "OUTPUT" || chain === "POSTROUTING")) {
    fail(
      "inInterface",
      `cannot be used in the ${chain} chain (packets there have no input interface): remove it or use INPUT/FORWARD`,
    );
  }
  if (source !== undefined && known(source, ipVersion)) {
    const family = (source as string).includes(":") ? "ipv6" : "ipv4";
    if (ipVersion === "both")
      fail(
        "source",
        `is an ${family === "ipv4" ? "IPv4" : "IPv6"} network, so it cannot apply to both families: set ipVersion: "${family}"`,
      );
    else if (ipVersion !== family)
      fail(
        "source",
        `is an ${family === "ipv4" ? "IPv4" : "IPv6"} network but ipVersion is ${ipVersion}: set ipVersion: "${family}" or use a source of that family`,
      );
  }
}

/**
 * Validates and normalizes PortRule inputs. Never throws and touches nothing: bad input comes back
 * as failures naming the property. `olds` (the previous checked inputs) is accepted for the
 * engine's signature; nothing is carried over from it.
 * @example
 * check({}, { connection: { host: "198.18.0.10" }, port: "8000-8100", action: "accept" }).inputs.ports // "8000:8100"
 * check({}, { connection: { host: "198.18.0.10" }, port: 70000, action: "ACCEPT" }).failures[0].property // "port"
 */
export function check(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
): { inputs: RuleInputs; failures: CheckFailure[] } {
  void olds;
  const failures: CheckFailure[] = [];
  try {
    const inputs = checkFields(ruleFields, news, [], failures);
    if (inputs.port !== undefined)
      inputs.ports = isUnknown(inputs.port) ? UNKNOWN : portsText(inputs.port as CheckedPort | CheckedPort[]);
    crossCheck(inputs, (property, reason) => failures.push({ property, reason }));
    return { inputs: inputs as unknown as RuleInputs, failures };
  } catch (e) {
    failures.push({
      property: "inputs",
      reason: `could not be validated: ${e instanceof Error ? e.message : String(e)}`,
    });
    return { inputs: {} as RuleInputs, failures };
  }
}
