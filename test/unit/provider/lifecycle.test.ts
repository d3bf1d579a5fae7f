// The pure parts of the PortRule lifecycle: diff (what replaces, what updates in place, what is no
// change) and check (tag and preview text, deterministic; bad input as failures, never a throw).
import { describe, expect, it } from "vitest";
import { check, diff, lineage, mayLockOut, successorOf } from "../../../provider/provider";

const identity = { project: "web", stack: "prod", name: "allow-app" };
const key = (n: string) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${n}\n-----END OPENSSH PRIVATE KEY-----\n`;
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
});
