/**
 * `check`: PortRule's inputs validated field by field (so a value unknown during preview skips only
 * its own checks), then across fields, each failure as a message naming its property.
 */
import { z } from "zod";
import { DOCKER_USER, matchesOriginalPort } from "./docker";
import { defaultIpVersion } from "./ip-version";
import { ALL_BUILTINS, BUILTIN_CHAINS, HOOKS } from "./names";
import { NEUTRAL_REJECT_TYPES, REJECT_TYPES } from "./render";
import { portsText, ruleFields } from "./schema";
import { describe, isUnknown, UNKNOWN } from "./schema-kit";
import type { CheckedPort, RuleInputs } from "./types";

export interface CheckFailure {
  property: string;
  reason: string;
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
  if (inInterface !== undefined && known(inInterface, chain) && HOOKS[chain as string] === "out") {
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
 * as failures naming the property. From `olds` (the previous checked inputs) only a default the rule
 * kept from its creation is carried over (`defaults`: see ip-version.ts).
 * @example
 * check({}, { connection: { host: "198.18.0.10" }, port: "8000-8100", action: "accept" }).inputs.ports // "8000:8100"
 * check({}, { connection: { host: "198.18.0.10" }, port: 70000, action: "ACCEPT" }).failures[0].property // "port"
 */
export function check(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
): { inputs: RuleInputs; failures: CheckFailure[] } {
  const failures: CheckFailure[] = [];
  try {
    const inputs = checkFields(ruleFields, news, [], failures);
    if (news.ipVersion === undefined) {
      const { ipVersion, kept } = defaultIpVersion(news, olds);
      inputs.ipVersion = ipVersion;
      inputs.defaults = kept ? { ipVersion: kept } : {};
    } else inputs.defaults = {};
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
