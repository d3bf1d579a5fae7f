// The pure parts of the PortRule lifecycle: diff (what replaces, what updates in place, what is no
// change) and check (tag and preview text, deterministic; bad input as failures, never a throw).
import { describe, expect, it } from "vitest";
import type { ReadResult, RuleState } from "../../../provider/host/agent";
import {
  check,
  diff,
  lineage,
  mayLockOut,
  mustVerify,
  putBackState,
  successorOf,
  withLive,
} from "../../../provider/provider";
import type { PortRuleState } from "../../../provider/provider";

const identity = { project: "web", stack: "prod", name: "allow-app" };
const key = (n: string) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${n}\n-----END OPENSSH PRIVATE KEY-----\n`;
const OLD_KEY = `SHA256:${"a".repeat(43)}`;
const NEW_KEY = `SHA256:${"b".repeat(43)}`;
const base = { connection: { host: "198.18.1.2", privateKey: key("k") }, port: 2222, action: "ACCEPT", identity };

async function checked(news: Record<string, unknown>, olds: Record<string, unknown> = {}) {
  const r = await check(olds, news);
  expect(r.failures).toEqual([]);
  return r.inputs as Record<string, any>;
}

describe("diff", () => {
  const cases: [string, Record<string, unknown>, "replace" | "update" | "none"][] = [
    ["host", { connection: { host: "198.18.1.3", privateKey: key("k") } }, "replace"],
    ["chain", { chain: "FORWARD" }, "replace"],
    ["protocol", { protocol: "udp" }, "replace"],
    ["port", { port: 2223 }, "replace"],
    ["port list", { port: [2222, 2223] }, "replace"],
    ["action", { action: "DROP" }, "replace"],
    ["rejectWith", { action: "REJECT", rejectWith: "tcp-reset" }, "replace"],
    ["source", { source: "198.18.0.0/24" }, "replace"],
    ["inInterface", { inInterface: "eth0" }, "replace"],
    ["comment", { comment: "app" }, "replace"],
    ["ipVersion", { ipVersion: "both" }, "replace"],
    ["position", { position: "top" }, "replace"],
    ["ssh user", { connection: { host: "198.18.1.2", privateKey: key("k"), user: "deploy", sudo: true } }, "update"],
    ["private key", { connection: { host: "198.18.1.2", privateKey: key("k2") } }, "update"],
    ["ssh port", { connection: { host: "198.18.1.2", privateKey: key("k"), port: 2200 } }, "update"],
    ["host key given", { connection: { host: "198.18.1.2", privateKey: key("k"), hostKey: NEW_KEY } }, "update"],
    ["allowLockout", { allowLockout: true }, "update"],
    ["adopt", { adopt: true }, "update"],
    ["port written another way", { port: "2222" }, "none"],
    ["protocol in capitals", { protocol: "TCP" }, "none"],
    ["action in lower case", { action: "accept" }, "none"],
  ];
  it.each(cases)("%s -> %s", async (_what, change, expected) => {
    const olds = { ...(await checked(base)), packets: 7, bytes: 900, line: { ipv4: 3 }, effective: true, missing: [] };
    const news = await checked({ ...base, ...change }, olds);
    const d = await diff("id", olds, news);
    expect(typeof d.changes).toBe("boolean");
    if (expected === "none") expect(d).toMatchObject({ changes: false, replaces: [] });
    if (expected === "update") expect(d).toMatchObject({ changes: true, replaces: [] });
    if (expected === "replace") {
      expect(d.changes).toBe(true);
      expect(d.replaces.length).toBeGreaterThan(0);
    }
  });

  it("counters and other live outputs never count as a change", async () => {
    const olds = {
      ...(await checked(base)),
      packets: 1,
      bytes: 2,
      line: { ipv4: 9 },
      shadowedBy: { ipv4: "-A INPUT -j DROP" },
      effective: false,
      missing: [],
    };
    expect(await diff("id", olds, await checked(base, olds))).toMatchObject({ changes: false, replaces: [] });
  });

  it("a family whose rule vanished from the host replaces the rule", async () => {
    const olds = { ...(await checked({ ...base, ipVersion: "both" })), missing: ["ipv6"] };
    const d = await diff("id", olds, await checked({ ...base, ipVersion: "both" }, olds));
    expect(d.replaces).toContain("missing");
  });
});

describe("check", () => {
  it("puts the exact rule text and tag into the inputs, the same in preview and up", async () => {
    const a = await checked(base);
    const b = await checked(base);
    expect(a.tag).toBe(b.tag);
    expect(a.tag).toMatch(/^pulumi-iptables:web\/prod\/allow-app\/[0-9a-f]{12}$/);
    expect(a.rules.ipv4).toBe(`-A INPUT -p tcp -m tcp --dport 2222 -m comment --comment "${a.tag}" -j ACCEPT`);
  });

  it("keeps the tag when nothing that defines the rule changed, and changes it otherwise", async () => {
    const a = await checked(base);
    expect((await checked({ ...base, allowLockout: true }, a)).tag).toBe(a.tag);
    expect((await checked({ ...base, port: 2223 }, a)).tag).not.toBe(a.tag);
  });

  it("gives a create a deterministic lineage of tags to take its own earlier rules over with", async () => {
    const a = await checked(base);
    const tags = lineage(a.unique);
    expect(tags[0]).toBe(a.unique);
    expect(new Set(tags).size).toBe(tags.length);
    expect(lineage(a.unique)).toEqual(tags);
    expect(tags[1]).toBe(successorOf(a.unique));
  });

  it("returns failures naming the property, never throws", async () => {
    const r = await check({}, { ...base, port: 70000, persist: true });
    expect(r.failures.map((f) => f.property)).toEqual(["port"]);
  });
});

describe("mayLockOut: which changes are confirmed over a fresh SSH connection", () => {
  const rule = async (args: Record<string, unknown>) => (await checked({ ...base, ...args })) as any;
  it.each([
    ["a DROP of the SSH port on INPUT", { port: 22, action: "DROP" }, "insert", true],
    ["a DROP of another port", { port: 8080, action: "DROP" }, "insert", false],
    ["a DROP of 22 with allowLockout (meant)", { port: 22, action: "DROP", allowLockout: true }, "insert", false],
    ["a REJECT of a range holding 22", { port: "20-30", action: "REJECT" }, "insert", true],
    ["a DROP of 22 on FORWARD", { port: 22, action: "DROP", chain: "FORWARD" }, "insert", false],
    ["an ACCEPT of 22", { port: 22 }, "insert", false],
    ["the delete of an ACCEPT of 22", { port: 22 }, "delete", true],
    ["the delete of an ACCEPT of 22 with allowLockout (meant)", { port: 22, allowLockout: true }, "delete", false],
    ["the delete of a DROP of 22", { port: 22, action: "DROP" }, "delete", false],
    ["a udp DROP of 22", { port: 22, action: "DROP", protocol: "udp" }, "insert", false],
  ] as const)("%s: %s", async (_what, args, change, expected) => {
    expect(mayLockOut(await rule(args), change)).toBe(expected);
  });

  it("issue 21.7: the old rule of a replacement whose new inputs set allowLockout is not confirmed afresh", async () => {
    // The guard honours the replacement's opt-in (diff remembers it); the confirmation must too, or the
    // fresh connection the lockout refuses makes the host revert the delete.
    const olds = { ...(await rule({ port: 22 })), tag: "pulumi-iptables:web/prod/allow-app/21-7" };
    expect(mayLockOut(olds, "delete")).toBe(true);
    await diff("id", olds, await checked({ ...base, port: 2222, allowLockout: true }, olds));
    expect(mayLockOut(olds, "delete")).toBe(false);
  });
});

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
  });
  const ruleState = (line: number, packets: number, shadowedBy?: string): RuleState => ({
    line,
    rule: "-A INPUT ...",
    packets,
    bytes: packets * 60,
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
