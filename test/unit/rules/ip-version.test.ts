// ipVersion left out: both families, or the one a source or a reject type names; a rule created when the
// default was ipv4 keeps ipv4 (state without `defaults`) until it is replaced.
import { describe, expect, it } from "vitest";
import { check, keptDefaultWarning, UNKNOWN } from "../../../provider/rules";
import type { RuleInputs } from "../../../provider/rules";

const base = { connection: { host: "198.18.0.10" }, port: 8080, action: "DROP" };
const checked = (news: Record<string, unknown>, olds: Record<string, unknown> = {}) => {
  const r = check(olds, { ...base, ...news });
  expect(r.failures).toEqual([]);
  return r.inputs;
};
/** A rule's checked inputs as state holds them, written before `defaults` was recorded. */
const formerState = (ipVersion: string) => {
  const { defaults: _, ...rest } = checked({ ipVersion });
  return { ...rest, unique: "u", tag: "t" };
};

describe("ipVersion left out", () => {
  it("is both for a new rule (and for a replacement: the engine checks it without olds)", () => {
    expect(checked({})).toMatchObject({ ipVersion: "both", defaults: {} });
  });

  it("is the family a source names", () => {
    expect(checked({ source: "198.18.0.0/24" }).ipVersion).toBe("ipv4");
    expect(checked({ source: "fd00:18::/64" }).ipVersion).toBe("ipv6");
    expect(checked({ source: UNKNOWN }).ipVersion).toBe(UNKNOWN);
  });

  it("is the family a one-family reject type names; tcp-reset and the neutral types keep both", () => {
    expect(checked({ action: "REJECT", rejectWith: "icmp-host-prohibited" }).ipVersion).toBe("ipv4");
    expect(checked({ action: "REJECT", rejectWith: "icmp6-adm-prohibited" }).ipVersion).toBe("ipv6");
    expect(checked({ action: "REJECT", rejectWith: "tcp-reset" }).ipVersion).toBe("both");
    expect(checked({ action: "REJECT", rejectWith: "admin-prohibited" }).ipVersion).toBe("both");
  });

  it("stays ipv4 for a rule created when ipv4 was the default, and records that it kept it", () => {
    const kept = checked({}, formerState("ipv4"));
    expect(kept).toMatchObject({ ipVersion: "ipv4", defaults: { ipVersion: "ipv4" } });
    // ... on every later run too.
    expect(checked({}, { ...formerState("ipv4"), defaults: kept.defaults })).toMatchObject({
      ipVersion: "ipv4",
      defaults: { ipVersion: "ipv4" },
    });
  });

  it("is both once written and left out again after the default changed, or after an explicit ipv6", () => {
    const explicit = { ...formerState("ipv4"), defaults: {} };
    expect(checked({}, explicit)).toMatchObject({ ipVersion: "both", defaults: {} });
    expect(checked({}, formerState("ipv6")).ipVersion).toBe("both");
  });

  it("given, it is what is given, and nothing is kept", () => {
    expect(checked({ ipVersion: "ipv6" }, formerState("ipv4"))).toMatchObject({ ipVersion: "ipv6", defaults: {} });
  });

  it("the warning for a DROP that kept ipv4 names the resource, IPv6 and ipVersion", () => {
    const inputs = {
      ...checked({}, formerState("ipv4")),
      identity: { project: "p", stack: "s", name: "block-admin" },
    } as RuleInputs;
    expect(keptDefaultWarning(inputs)).toBe(
      'block-admin: DROP of tcp 8080 on 198.18.0.10 was created when ipVersion defaulted to ipv4 and stays ipv4, so the port is still reachable over IPv6: set ipVersion: "both" to block IPv6 too (replaces the rule), or ipVersion: "ipv4" to keep it as it is',
    );
  });
});
