// Issue 16, "How it must be shown", adoption: a rule made by hand (`iptables -A INPUT -p tcp --dport 8080
// -j DROP`) brought under management with `adopt: true` under the real `pulumi` CLI: same line,
// counters kept, destroy gives it back untagged (persist false: it was lent; issue 20.3); without adopt,
// create warns and names it. Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/adopt.test.ts
import { beforeAll, describe, expect, it } from "vitest";
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
    const p = await programProject("twin", h, [{ name: "block", args: { port: 8080, action: "DROP" } }]);
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
    const p = await programProject("adopt", h, [{ name: "block", args: { port: 8080, action: "DROP", adopt: true } }]);

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
