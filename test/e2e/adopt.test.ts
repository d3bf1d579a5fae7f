// Issue 16, "How it must be shown", adoption: a rule made by hand (`iptables -A INPUT -p tcp --dport 8080
// -j DROP`) brought under management with `adopt: true` under the real `pulumi` CLI: same line,
// counters kept, destroy gives it back untagged (persist false: it was lent; issue 20.3); without adopt,
// create warns and names it. Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/adopt.test.ts
import { beforeAll, describe, expect, it } from "vitest";
import { planBatch } from "../../provider/host/plan";
import type { ChangeRequest, HostFacts } from "../../provider/host/types";
import { check, makeTag, parseRuleset, renderRule, ruleText } from "../../provider/rules";
import type { Lab, LabHost } from "../lab/lab";
import { all, ok, stateOf, useLab } from "./harness";
import { programProject } from "./program";

const HAND_MADE =
  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp --dport 8080 -j DROP\n" +
  "-A INPUT -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n";
const TWIN = "-A INPUT -p tcp -m tcp --dport 8080 -j DROP";

/** INPUT as iptables-save -c lists it: [counters, text] per rule. */
async function input(h: LabHost): Promise<{ packets: number; text: string }[]> {
  return (await h.save(4, { counters: true, table: "filter" })).split("\n").flatMap((l) => {
    const m = /^\[(\d+):\d+\] (-A INPUT .*)$/.exec(l);
    return m ? [{ packets: Number(m[1]), text: m[2] }] : [];
  });
}

let lab: Lab;
useLab((l) => {
  lab = l;
});

describe("adopting a hand-made DROP 8080 (nf_tables)", () => {
  let h: LabHost;
  beforeAll(async () => {
    h = await lab.addHost({ rules: { v4: HAND_MADE }, listen: { tcp: [8080] } });
    // Traffic the hand-made rule counts: these probes time out.
    for (let i = 0; i < 2; i++) expect(await lab.probe(h, 8080, { timeoutSec: 1 })).toBe("timeout");
  });

  it("without adopt: up warns and names the untagged twin; the tagged rule goes beside it; destroy leaves the hand-made one", async () => {
    const p = await programProject("twin", h, [
      { name: "block", args: { port: 8080, action: "DROP", ipVersion: "ipv4" } },
    ]);
    const up = await ok(p.up());
    expect(all(up)).toContain(`already holds this rule without a tag at line 2 (${TWIN}`);
    expect(all(up)).toContain("set adopt: true to take it over in place");
    const rules = await input(h);
    expect(rules.filter((r) => r.text.includes("--dport 8080"))).toHaveLength(2);
    await ok(p.destroy());
    expect((await input(h)).map((r) => r.text)).toEqual([
      "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
      TWIN,
      "-A INPUT -p udp -m udp --dport 53 -j ACCEPT",
    ]);
  });

  it("with adopt: preview says what up will take over; up tags it at line 2 with its counters; refresh treats it as ours; destroy gives it back", async () => {
    const before = await input(h);
    const counted = before[1].packets;
    expect(counted).toBeGreaterThan(0);
    const p = await programProject("adopt", h, [
      { name: "block", args: { port: 8080, action: "DROP", ipVersion: "ipv4", adopt: true } },
    ]);

    const preview = await ok(p.preview());
    expect(all(preview)).toContain(`adopt: up takes over ${TWIN} where INPUT on ${h.v4} holds it without a tag`);
    expect(all(preview)).toContain("preview cannot reach the host");
    expect(await input(h)).toEqual(before); // preview touched nothing

    const up = await ok(p.up());
    expect(all(up)).not.toContain("without a tag at line");
    const state = await stateOf(p, "block");
    expect(state.adopted.ipv4).toMatchObject({ line: 2, rule: TWIN });
    expect(state.adopted.ipv4.packets).toBeGreaterThanOrEqual(counted);
    expect(state.insertedAt).toEqual({ ipv4: 2 });
    expect(state.placement.ipv4).toMatch(/^adopted: line 2 held this rule without a tag/);
    const after = await input(h);
    expect(after.map((r) => r.text)).toEqual([
      before[0].text,
      `-A INPUT -p tcp -m tcp --dport 8080 -m comment --comment "${state.tag}" -j DROP`,
      before[2].text,
    ]);
    expect(after[1].packets).toBeGreaterThanOrEqual(counted); // the hand-made rule's counters, kept
    expect(await lab.probe(h, 8080, { timeoutSec: 1 })).toBe("timeout");

    await ok(p.refresh());
    const refreshed = await stateOf(p, "block");
    expect(refreshed.line).toEqual({ ipv4: 2 });
    expect(refreshed.packets).toBeGreaterThan(counted); // the probe after up counted too
    expect(refreshed.effective).toBe(true);

    // persist false: the hand-made rule was lent to the PortRule; destroy gives it back untagged, counters kept.
    const destroyed = await ok(p.destroy());
    expect(all(destroyed)).toContain(`gave back: line 2 holds the hand-made rule again (${TWIN})`);
    const given = await input(h);
    expect(given.map((r) => r.text)).toEqual(before.map((r) => r.text));
    expect(given[1].packets).toBeGreaterThan(counted);
    expect(await lab.probe(h, 8080, { timeoutSec: 1 })).toBe("timeout");
  });
});

describe("issue 21.5: adoption and give-back with a writer that ignores the lock (real iptables, both backends)", () => {
  // The restore lines the provider plans from a listing are run by hand after a foreign rule went in at
  // line 1 (a writer that ignores the lock, between the listing and the restore), which moved the
  // operator's 443 ACCEPT from line 1 to line 2: the old plan's `-R INPUT 2` overwrote it; the new lines
  // act on the exact rule text and leave every other rule alone.
  const OPERATOR = "-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT";
  const UDP = "-A INPUT -p udp -m udp --dport 53 -j ACCEPT";
  const FOREIGN = "-A INPUT -s 198.18.99.9/32 -j DROP";
  const START = `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n[12:720] ${OPERATOR}\n[7:420] ${TWIN}\n[3:180] ${UDP}\nCOMMIT\n`;
  const TAG = makeTag({ project: "lab", stack: "dev", name: "block" }, "21f5a0b1");
  const checked = check({}, { connection: { host: "198.18.0.10" }, port: 8080, action: "DROP", ipVersion: "ipv4" });
  const spec = renderRule(checked.inputs, 4, TAG);
  const tagged = ruleText("INPUT", spec);
  const facts: HostFacts = {
    backend: "nf_tables",
    version: "1.8.9",
    hostKeyFingerprint: "SHA256:x",
    persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
  };
  const ctx = { target: "lab", facts };
  /** What the old plan wrote to tag (or give back) rule 2: a replace by line number. */
  const oldReplace = (text: string) => `-R INPUT 2 -c 7 420 ${text.slice("-A INPUT ".length)}`;
  const adopt: ChangeRequest = {
    kind: "insert",
    table: "filter",
    chain: "INPUT",
    specs: { 4: spec },
    tag: TAG,
    position: "auto",
    persist: true,
    twins: { 4: TWIN },
    adopt: true,
  };
  const giveBack: ChangeRequest = {
    kind: "delete",
    table: "filter",
    chain: "INPUT",
    families: [4],
    tag: TAG,
    rules: { 4: tagged },
    persist: false,
    giveBack: { 4: TWIN },
  };

  for (const backend of ["nf_tables", "legacy"] as const) {
    it(`${backend}: the old -R overwrote the operator's 443 rule; the new lines swap only the exact rule, counters kept`, async () => {
      expect(checked.failures).toEqual([]);
      const h = await lab.addHost({ backend });
      const run = async (argv: string[], stdin?: string) => {
        const r = await h.exec(argv, stdin);
        return { code: r.code, err: r.stderr.trim() };
      };
      const load = async (text: string) =>
        expect(await run(["iptables-restore", "-w", "5", "--counters"], text)).toEqual({ code: 0, err: "" });
      const restore = (lines: string[]) =>
        run(["iptables-restore", "-w", "5", "--noflush"], `*filter\n${lines.join("\n")}\nCOMMIT\n`);
      const listing = () => h.save(4, { counters: true, table: "filter" });
      const rules = async () => (await input(h)).map((r) => r.text);
      const packetsOf = async (text: string) => (await input(h)).find((r) => r.text === text)?.packets;
      const foreignAtLine1 = async () =>
        expect((await h.iptables(4, ["-I", "INPUT", "1", ...FOREIGN.split(" ").slice(2)])).code).toBe(0);
      const plan = async (req: ChangeRequest) => {
        const r = planBatch([req], new Map([[4, parseRuleset(await listing())]]), ctx);
        expect(r.failed.size).toBe(0);
        return r.plans.get(req)![4]!;
      };

      // Adoption planned from the listing (the twin is line 2), then the foreign rule goes in at line 1.
      await load(START);
      const adopted = await plan(adopt);
      expect(adopted).toMatchObject({ line: 2, adopted: true });
      expect(adopted.apply.concat(adopted.undo).some((l) => l.startsWith("-R"))).toBe(false);
      await foreignAtLine1();
      const raced = await listing();

      // The old plan replaced whatever was line 2 by then: the operator's 443 ACCEPT; the twin stayed untagged.
      expect(await restore([oldReplace(tagged)])).toEqual({ code: 0, err: "" });
      expect(await rules()).toEqual([FOREIGN, tagged, TWIN, UDP]);

      // The new lines on the same raced chain: the 443 rule stays with its counters, the twin is tagged with its.
      await load(raced);
      expect(await restore(adopted.apply)).toEqual({ code: 0, err: "" });
      expect(await rules()).toEqual([FOREIGN, tagged, OPERATOR, UDP]);
      expect(await packetsOf(tagged)).toBe(7);
      expect(await packetsOf(OPERATOR)).toBeGreaterThanOrEqual(12);
      // Its undo, the mirror image: the hand-made rule is back with its counters, nothing else changed.
      expect(await restore(adopted.undo)).toEqual({ code: 0, err: "" });
      expect(await rules()).toEqual([FOREIGN, TWIN, OPERATOR, UDP]);
      expect(await packetsOf(TWIN)).toBe(7);

      // The hand-made rule gone meanwhile: the restore fails as a whole and nothing changes.
      await load(raced);
      expect((await h.iptables(4, ["-D", "INPUT", ...TWIN.split(" ").slice(2)])).code).toBe(0);
      const without = await h.ruleset(4);
      expect((await restore(adopted.apply)).code).not.toBe(0);
      expect(await h.ruleset(4)).toBe(without);

      // Give-back (destroy with persist: false) planned from the listing of the adopted rule at line 2, then
      // the foreign rule at line 1 again: the old -R overwrote the 443 rule, the new lines do not.
      await load(START);
      expect(await restore(adopted.apply)).toEqual({ code: 0, err: "" });
      expect(await rules()).toEqual([OPERATOR, tagged, UDP]);
      const given = await plan(giveBack);
      expect(given).toMatchObject({ line: 2 });
      expect(given.apply.concat(given.undo).some((l) => l.startsWith("-R"))).toBe(false);
      await foreignAtLine1();
      const racedBack = await listing();
      expect(await restore([oldReplace(TWIN)])).toEqual({ code: 0, err: "" });
      expect(await rules()).toEqual([FOREIGN, TWIN, tagged, UDP]);
      await load(racedBack);
      expect(await restore(given.apply)).toEqual({ code: 0, err: "" });
      expect(await rules()).toEqual([FOREIGN, TWIN, OPERATOR, UDP]);
      expect(await packetsOf(TWIN)).toBe(7);
      expect(await packetsOf(OPERATOR)).toBeGreaterThanOrEqual(12);
    });
  }
});
