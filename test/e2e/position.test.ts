// Issue 24, item 6, under the real CLI: a comment-only change rewrites the rule in place (same line, same
// tag, counters kept; preview shows an update, not a replacement), and explicit positions of one run land
// where they say whatever order the engine creates them in: `position: 2` is line 2 even when the run's
// `top` rule is created after it (it depends on a slow resource), over several runs. Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/position.test.ts
import { beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import { all, EMPTY, ok, stateOf, useLab } from "./harness";
import { createProject, programProject, setRules } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** INPUT as iptables-save -c lists it: [packets, bytes, text] per rule. */
async function input(h: LabHost): Promise<{ packets: number; bytes: number; text: string }[]> {
  return (await h.save(4, { counters: true, table: "filter" })).split("\n").flatMap((l) => {
    const m = /^\[(\d+):(\d+)\] (-A INPUT .*)$/.exec(l);
    return m ? [{ packets: Number(m[1]), bytes: Number(m[2]), text: m[3] }] : [];
  });
}

describe("a comment-only change", () => {
  let h: LabHost;
  beforeAll(async () => {
    h = await lab.addHost({ rules: { v4: EMPTY }, listen: { tcp: [8080] } });
  });

  it("updates the comment in place: preview says update, up keeps the line, the tag and the counters", async () => {
    const rule = (comment: string) => [
      { name: "block", args: { port: 8080, action: "DROP", ipVersion: "ipv4", comment } },
    ];
    const p = await programProject("recomment", h, rule("old admin UI"));
    await ok(p.up());
    const before = await stateOf(p, "block");
    for (let i = 0; i < 2; i++) expect(await lab.probe(h, 8080, { timeoutSec: 1 })).toBe("timeout");
    const [counted] = await input(h);
    expect(counted.packets).toBeGreaterThan(0);
    expect(counted.text).toBe(before.rules.ipv4);

    await setRules(p, "recomment", rule("admin UI, closed"));
    const preview = await ok(p.preview());
    expect(preview.stdout).toContain("~ pulumi-nodejs:dynamic/pulumi-iptables:PortRule: (update)");
    expect(preview.stdout).toContain('~ comment      : "old admin UI" => "admin UI, closed"');
    expect(preview.stdout).not.toContain("(replace)");

    const up = await ok(p.up());
    const now = before.rules.ipv4.replace('"old admin UI ', '"admin UI, closed ');
    const [after] = await input(h);
    expect(after.text).toBe(now);
    expect(after.packets).toBeGreaterThanOrEqual(counted.packets); // kept, not reset
    expect(after.bytes).toBeGreaterThanOrEqual(counted.bytes);
    expect(all(up)).toContain(
      `-R INPUT 1 ${now.slice("-A INPUT ".length)} on ${h.v4} (ipv4): comment updated in place, counters kept (` +
        `${counted.packets} packets, ${counted.bytes} bytes)`,
    );
    const s = await stateOf(p, "block");
    expect(s).toMatchObject({
      tag: before.tag,
      unique: before.unique,
      comment: "admin UI, closed",
      rules: { ipv4: now },
    });
    expect((await input(h)).map((r) => r.text)).toEqual([now]);
    // Nothing left to change; refresh reads the rule under its new text.
    await ok(p.preview(["--expect-no-changes"]));
    await ok(p.refresh());
    expect((await stateOf(p, "block")).missing).toEqual([]);
    await ok(p.destroy());
    expect(await input(h)).toEqual([]);
  }, 180_000);
});

/** A program whose `top` rule depends on a slow resource: the engine registers it (and checks it) only once
 * that is created, after `two` (position 2) went in. */
const TOP_LATER = `
const pulumi = require("@pulumi/pulumi");
const { PortRule } = require("pulumi-iptables");
const connection = new pulumi.Config().requireSecretObject("connection");
const slow = {
  async create(inputs) { await new Promise((r) => setTimeout(r, 3000)); return { id: "slow", outs: inputs }; },
};
class Slow extends pulumi.dynamic.Resource {
  constructor(name) { super(slow, name, {}); }
}
const rule = (name, port, position, opts) =>
  new PortRule(name, { connection, port, action: "DROP", ipVersion: "ipv4", position }, opts);
const two = rule("two", 9002, 2);
const top = rule("top", 9001, "top", { dependsOn: [new Slow("slow")] });
exports.placement = { top: top.placement, two: two.placement };
`;

/** Two rules above where explicit positions go, and policy ACCEPT (the provider's SSH gets in). */
const TWO_RULES =
  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
  "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
const [CONNTRACK, LO] = ["conntrack", "lo"];

describe("explicit positions across the engine's batches", () => {
  let h: LabHost;
  beforeAll(async () => {
    h = await lab.addHost({ rules: { v4: TWO_RULES } });
  });
  /** INPUT's rules: our ports, or which of the two hand-made ones. */
  const lines = async () =>
    (await input(h)).map((r) => /--dport (\d+)/.exec(r.text)?.[1] ?? (r.text.includes("-i lo") ? LO : CONNTRACK));

  it("position 2 is line 2 and top is line 1 of the same run, in three runs", async () => {
    const p = await programProject("positions", h, [
      { name: "two", args: { port: 9002, action: "DROP", ipVersion: "ipv4", position: 2 } },
      { name: "top", args: { port: 9001, action: "DROP", ipVersion: "ipv4", position: "top" } },
    ]);
    for (let run = 0; run < 3; run++) {
      await ok(p.up());
      expect(await lines()).toEqual(["9001", "9002", CONNTRACK, LO]);
      expect((await stateOf(p, "two")).line).toEqual({ ipv4: 2 });
      expect((await stateOf(p, "top")).line).toEqual({ ipv4: 1 });
      // "two" went in after "top", whichever the engine created first; when it waited, it says so.
      expect((await p.outputs()).rules.two.placement.ipv4).toMatch(
        /^line 2 \(position 2\)(; placed after this run's "top" \(position top\) went in)?$/,
      );
      await ok(p.destroy());
      expect(await lines()).toEqual([CONNTRACK, LO]);
    }
  }, 240_000);

  it("a top rule registered after position 2 went in (its dependsOn held it back): says it moved that one down", async () => {
    const p = await createProject("toplater", {
      files: { "index.js": TOP_LATER },
      withPackage: true,
      config: { "toplater:connection": { value: JSON.stringify(h.connection()), secret: true } },
    });
    const up = await ok(p.up());
    const note =
      `went in above this run's "two" (position 2), created before this rule was registered (a dependsOn held it ` +
      "back): each of them is one line lower than its position says now; give them dependsOn on this rule to " +
      "keep every position";
    expect(all(up)).toContain(`warning: position top: ${note}`);
    expect((await p.outputs()).placement.top.ipv4).toBe(`top of chain (position top); ${note}`);
    expect(await lines()).toEqual(["9001", CONNTRACK, "9002", LO]);
    await ok(p.destroy());
  }, 120_000);
});
