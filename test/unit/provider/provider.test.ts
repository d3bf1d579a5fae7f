// The engine-facing lifecycle that needs no host: diff (what replaces, what updates in place, what is no
// change, and the opt-in it remembers) and check (tag and preview text, deterministic; bad input as
// failures, never a throw).
import { describe, expect, it } from "vitest";
import { check, diff } from "../../../provider/provider";
import { mayLockOut } from "../../../provider/guards";
import { key, base, checked } from "./inputs";

const NEW_KEY = `SHA256:${"b".repeat(43)}`;

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
    ["comment", { comment: "app" }, "update"],
    ["ipVersion", { ipVersion: "ipv4" }, "replace"],
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

  it("a comment-only change keeps the tag (what defines the rule did not change) and renders the new comment", async () => {
    const olds: Record<string, any> = { ...(await checked({ ...base, comment: "old" })), packets: 7, bytes: 900 };
    const news = await checked({ ...base, comment: "new" }, olds);
    expect(news.tag).toBe(olds.tag);
    expect(news.unique).toBe(olds.unique);
    expect(news.rules.ipv4).toBe(
      `-A INPUT -p tcp -m tcp --dport 2222 -m comment --comment "new ${olds.tag}" -j ACCEPT`,
    );
    expect(await diff("id", olds, news)).toMatchObject({ changes: true, replaces: [] });
    // State an earlier version wrote (its unique part hashed the comment too): its tag is kept as well.
    const former = { ...olds, unique: "0123456789ab" };
    expect((await checked({ ...base, comment: "new" }, former)).unique).toBe("0123456789ab");
  });

  it("a rule created when ipVersion defaulted to ipv4 (no `defaults` in state): no change, not replaced", async () => {
    const { defaults: _, ...former } = await checked({ ...base, ipVersion: "ipv4", action: "DROP" });
    const olds = { ...former, packets: 7, bytes: 900, line: { ipv4: 1 }, effective: true, missing: [] };
    const news = await checked({ ...base, action: "DROP" }, olds);
    expect(news.ipVersion).toBe("ipv4");
    expect(await diff("id", olds, news)).toMatchObject({ changes: false, replaces: [] });
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

  it("returns failures naming the property, never throws", async () => {
    const r = await check({}, { ...base, port: 70000, persist: true });
    expect(r.failures.map((f) => f.property)).toEqual(["port"]);
  });
});

describe("diff remembers what the old rule's delete must honour", () => {
  const rule = async (args: Record<string, unknown>) => (await checked({ ...base, ...args })) as any;
  it("issue 21.7: the old rule of a replacement whose new inputs set allowLockout is not confirmed afresh", async () => {
    // The guard honours the replacement's opt-in (diff remembers it); the confirmation must too, or the
    // fresh connection the lockout refuses makes the host revert the delete.
    const olds = { ...(await rule({ port: 22 })), tag: "pulumi-iptables:web/prod/allow-app/21-7" };
    expect(mayLockOut(olds, "delete")).toBe(true);
    await diff("id", olds, await checked({ ...base, port: 2222, allowLockout: true }, olds));
    expect(mayLockOut(olds, "delete")).toBe(false);
  });
});
