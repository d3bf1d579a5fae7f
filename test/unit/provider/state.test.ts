// The state mapping (pure): what a listing makes of a rule's state, whether an update verifies, what a
// put-back merges, what a create records, and how the engine records it (hidden keys under `__`).
import { describe, expect, it } from "vitest";
import type { ChangeResult, ReadResult, RuleState } from "../../../provider/host";
import {
  createdState,
  fromStored,
  HIDDEN,
  isGone,
  mustVerify,
  putBackState,
  readState,
  toStored,
  updatedState,
  withLive,
} from "../../../provider/state";
import type { PortRuleState } from "../../../provider/state";
import { base, checked } from "./inputs";

const OLD_KEY = `SHA256:${"a".repeat(43)}`;
const NEW_KEY = `SHA256:${"b".repeat(43)}`;

describe("an update after a host key change (issue 20.4): the rule is verified, put back or reported", () => {
  /** A created rule's state on both families, as it was recorded before the host was rebuilt. */
  async function recorded(): Promise<PortRuleState> {
    const inputs = await checked({ ...base, ipVersion: "both" });
    return {
      ...inputs,
      host: "198.18.1.2",
      insertedAt: { ipv4: 3, ipv6: 2 },
      placement: { ipv4: "old placement", ipv6: "old placement" },
      line: { ipv4: 3, ipv6: 2 },
      counters: { ipv4: { packets: 5, bytes: 300 }, ipv6: { packets: 1, bytes: 80 } },
      packets: 6,
      bytes: 380,
      effective: true,
      shadowedBy: {},
      missing: [],
      backend: "nf_tables",
      iptablesVersion: "1.8.9",
      hostKeyFingerprint: OLD_KEY,
      persisted: false,
      adopted: {},
    } as unknown as PortRuleState;
  }
  const listing = (families: ReadResult["families"]): ReadResult => ({
    facts: {
      backend: "legacy",
      version: "1.8.11",
      hostKeyFingerprint: NEW_KEY,
      persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
    } as ReadResult["facts"],
    families,
    carried: [],
  });
  const ruleState = (line: number, packets: number, shadowedBy?: string): RuleState => ({
    line,
    rule: "-A INPUT ...",
    packets: BigInt(packets),
    bytes: BigInt(packets * 60),
    shadowedBy,
    beside: { warnings: [] },
  });

  it("verifies when the key seen is not the one recorded, or the hostKey given changed; not otherwise", async () => {
    const olds = await recorded();
    const withKey = (hostKey?: string) => ({ ...olds, connection: { ...olds.connection, hostKey } });
    expect(mustVerify(olds, olds, NEW_KEY)).toBe(true);
    expect(mustVerify(olds, withKey(NEW_KEY), NEW_KEY)).toBe(true);
    // The same host, its key now pinned in the program (or the pin removed): listed all the same.
    expect(mustVerify(olds, withKey(OLD_KEY), OLD_KEY)).toBe(true);
    expect(mustVerify(withKey(OLD_KEY), olds, OLD_KEY)).toBe(true);
    // A login or persist change on the same host with the same key: no listing.
    expect(mustVerify(olds, { ...olds, persist: true }, OLD_KEY)).toBe(false);
    const pinned = { ...withKey(NEW_KEY), hostKeyFingerprint: NEW_KEY };
    expect(mustVerify(pinned, { ...pinned, persist: true }, NEW_KEY)).toBe(false);
    // State written before fingerprints were recorded.
    expect(mustVerify({ ...olds, hostKeyFingerprint: undefined } as any, olds, OLD_KEY)).toBe(true);
  });

  it("refresh drops the rule only when no rule carries its tag either (it may be printed in another form)", async () => {
    const r = await recorded();
    expect(isGone(r, listing({}))).toBe(true);
    expect(isGone(r, { ...listing({}), carried: [6] })).toBe(false);
    expect(isGone(r, listing({ 4: ruleState(7, 9) }))).toBe(false);
  });

  it("a listing that shows neither family: both missing, no line, no counters, not effective", async () => {
    const s = withLive(await recorded(), listing({}));
    expect(s.missing).toEqual(["ipv4", "ipv6"]);
    expect(s).toMatchObject({ line: {}, counters: {}, packets: 0, bytes: 0, effective: false });
    expect(s).toMatchObject({ backend: "legacy", iptablesVersion: "1.8.11" });
  });

  it("a listing that shows one family: only the other is missing; the shown one's line and counters are live", async () => {
    const s = withLive(await recorded(), listing({ 4: ruleState(7, 9, "-A INPUT -j DROP") }));
    expect(s.missing).toEqual(["ipv6"]);
    expect(s).toMatchObject({ line: { ipv4: 7 }, counters: { ipv4: { packets: 9, bytes: 540 } }, packets: 9 });
    expect(s.shadowedBy).toEqual({ ipv4: "-A INPUT -j DROP" });
    expect(s.effective).toBe(false);
  });

  it("a listing that shows both: nothing missing", async () => {
    const s = withLive(await recorded(), listing({ 4: ruleState(1, 0), 6: ruleState(4, 2) }));
    expect(s).toMatchObject({ missing: [], effective: true, line: { ipv4: 1, ipv6: 4 }, packets: 2 });
  });

  it("put back: the inserted families take their new line and placement, the listed ones keep theirs", async () => {
    const live = withLive(await recorded(), listing({ 4: ruleState(7, 9) }));
    const made = {
      ...live,
      rules: { ipv6: "-A INPUT new" },
      insertedAt: { ipv6: 1 },
      placement: { ipv6: "new placement" },
      line: { ipv6: 1 },
      counters: { ipv6: { packets: 0, bytes: 0 } },
      shadowedBy: {},
      adopted: {},
      packets: 0,
      bytes: 0,
      effective: true,
      missing: [],
      persisted: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
    } as PortRuleState;
    const s = putBackState(live, made);
    expect(s.missing).toEqual([]);
    expect(s.insertedAt).toEqual({ ipv4: 3, ipv6: 1 });
    expect(s.placement).toEqual({ ipv4: "old placement", ipv6: "new placement" });
    expect(s.line).toEqual({ ipv4: 7, ipv6: 1 });
    expect(s.rules.ipv4).toBe(live.rules.ipv4);
    expect(s.rules.ipv6).toBe("-A INPUT new");
    expect(s).toMatchObject({ packets: 9, bytes: 540, effective: true, persisted: made.persisted });
    // A family put back in a shadowed place, or one listed shadowed: not effective.
    expect(putBackState(live, { ...made, shadowedBy: { ipv6: "x" } }).effective).toBe(false);
    const shadowed = withLive(await recorded(), listing({ 4: ruleState(7, 9, "y") }));
    expect(putBackState(shadowed, made).effective).toBe(false);
  });
});

describe("what a create records", () => {
  const facts = {
    backend: "nf_tables",
    version: "1.8.9",
    hostKeyFingerprint: NEW_KEY,
    listening: new Set(["tcp/2222"]),
    persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
  } as ChangeResult["facts"];
  const twin = { line: 2, rule: "-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT", packets: 7n, bytes: 420n };
  const result: ChangeResult = {
    tag: "t",
    facts,
    families: {
      4: { line: 2, reason: "adopted", rule: "-A INPUT tagged4", twin, adopted: true },
      6: { line: 1, reason: "top", rule: "-A INPUT tagged6", shadowedBy: "-A INPUT -j DROP" },
    },
    persisted: facts.persistence,
    beside: { 4: { warnings: [], blockedBy: "docker" } },
  };

  it("per family as placed: an adopted family keeps its counters; a shadowed or blocked one is named", async () => {
    const inputs = (await checked({ ...base, ipVersion: "both", persist: true })) as PortRuleState;
    const s = createdState(inputs, "u", "t", result);
    expect(s).toMatchObject({
      unique: "u",
      tag: "t",
      host: "198.18.1.2",
      rules: { ipv4: "-A INPUT tagged4", ipv6: "-A INPUT tagged6" },
      insertedAt: { ipv4: 2, ipv6: 1 },
      placement: { ipv4: "adopted", ipv6: "top" },
      counters: { ipv4: { packets: 7, bytes: 420 }, ipv6: { packets: 0, bytes: 0 } },
      packets: 7,
      bytes: 420,
      effective: false,
      shadowedBy: { ipv4: "docker", ipv6: "-A INPUT -j DROP" },
      adopted: { ipv4: { ...twin, packets: 7, bytes: 420 } },
      listening: true,
      hostKeyFingerprint: NEW_KEY,
      persisted: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
    });
  });

  it("only the families the result placed (a put-back of one); the save's files are every family's", async () => {
    const inputs = (await checked({ ...base, ipVersion: "both" })) as PortRuleState;
    const s = createdState(inputs, "u", "t", { ...result, families: { 6: result.families[6] } });
    expect(Object.keys(s.rules)).toEqual(["ipv6"]);
    expect(s.adopted).toEqual({});
    expect(s.persisted).toMatchObject({ files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] });
    const without = createdState(inputs, "u", "t", { ...result, persisted: undefined });
    expect(without.persisted).toBe(false);
  });
});

describe("what refresh and update record", () => {
  it("refresh: undefined when the rule is gone, the live state otherwise", async () => {
    const props = (await checked(base)) as PortRuleState;
    const facts = { backend: "legacy", version: "1.8.11" } as ReadResult["facts"];
    expect(readState(props, { facts, families: {}, carried: [] })).toBeUndefined();
    const live = { line: 4, rule: "-A INPUT x", packets: 1n, bytes: 60n, beside: { warnings: [] } };
    expect(readState(props, { facts, families: { 4: live }, carried: [] })).toMatchObject({ line: { ipv4: 4 } });
  });

  it("update: the new inputs under the old tag and rule, with the keys the connection was shown", async () => {
    const olds = { ...(await checked(base)), proxyHostKeyFingerprint: OLD_KEY } as PortRuleState;
    const news = (await checked({ ...base, port: 2223, persist: true })) as PortRuleState;
    const s = updatedState(olds, news, NEW_KEY);
    expect(s).toMatchObject({ tag: olds.tag, unique: olds.unique, rules: olds.rules, persist: true });
    expect(s.hostKeyFingerprint).toBe(NEW_KEY);
    expect(s).not.toHaveProperty("proxyHostKeyFingerprint");
    expect(updatedState(olds, news, NEW_KEY, OLD_KEY).proxyHostKeyFingerprint).toBe(OLD_KEY);
  });
});

describe("the state as the engine records it: what the user did not write under __ (issue 24.6)", () => {
  const user = { connection: { host: "198.18.1.2" }, port: 8080, action: "ACCEPT", comment: "web", heal: true };
  const state = {
    ...user,
    rules: { ipv4: "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT" },
    identity: { project: "p", stack: "s", name: "web" },
    defaults: {},
    ports: "8080",
    tag: "pulumi-iptables:p/s/web/0123456789ab",
    unique: "0123456789ab",
    effective: true,
    counters: { ipv4: { packets: 3, bytes: 180 } },
    missing: [],
    __provider: "exports.handler = ...",
  };

  it("records the user's inputs, rules and the engine's __provider as they are, every other key under __", () => {
    const stored = toStored(state);
    expect(Object.keys(stored).sort()).toEqual(
      [
        ...Object.keys(user),
        "rules",
        "__provider",
        ...["identity", "defaults", "ports", "tag", "unique", "effective", "counters", "missing"].map((k) => `__${k}`),
      ].sort(),
    );
    expect(stored.__counters).toBe(state.counters);
    expect(stored.connection).toBe(state.connection);
  });

  it("reads back what it recorded", () => {
    expect(fromStored(toStored(state))).toEqual(state);
  });

  it("reads state written before the keys were hidden as it is", () => {
    expect(fromStored(state)).toEqual(state);
  });

  it("prefers the __ form where both are present (the newer), whichever comes first", () => {
    const tag = "pulumi-iptables:p/s/web/ba9876543210";
    expect(fromStored({ ...state, __tag: tag }).tag).toBe(tag);
    expect(fromStored({ __tag: tag, ...state }).tag).toBe(tag);
    expect(fromStored({ __tag: tag, ...state })).not.toHaveProperty("__tag");
  });

  it("hides every output but rules, and no input a user writes", () => {
    const outputs: (keyof PortRuleState)[] = ["host", "line", "placement", "insertedAt", "shadowedBy", "adopts"];
    for (const k of outputs) expect(HIDDEN, k).toHaveProperty(k);
    for (const k of [
      "rules",
      "connection",
      "port",
      "action",
      "protocol",
      "comment",
      "ipVersion",
      "position",
      "persist",
    ])
      expect(HIDDEN, k).not.toHaveProperty(k);
  });
});
