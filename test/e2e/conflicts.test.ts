// Issue 24.3 and 24.6 under the real pulumi CLI: two PortRules that contradict each other fail in
// preview (and in an up without preview) naming both, before anything changes; a narrower source says
// which wins; explicit positions land at the lines they name whatever order the engine creates them in.
// Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/conflicts.test.ts
import { describe, expect, it } from "vitest";
import type { Lab } from "../lab/lab";
import { all, ok, rulesets, stateOf, useLab } from "./harness";
import { programProject } from "./program";

const START =
  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";

let lab: Lab;
useLab((l) => {
  lab = l;
});

describe("conflicts between the PortRules of a run", () => {
  it("ACCEPT and DROP of tcp 9500: preview and up fail naming both, and the host is untouched", async () => {
    const h = await lab.addHost({ rules: { v4: START } });
    const before = await rulesets(h);
    const p = await programProject("clash", h, [
      { name: "allow", args: { port: 9500, action: "ACCEPT" } },
      { name: "block", args: { port: 9500, action: "DROP" } },
    ]);
    const message =
      'PortRule "allow" (ACCEPT tcp 9500, position auto) and PortRule "block" (DROP tcp 9500, position auto) ' +
      `match the same packets on ${h.v4} (filter INPUT, ipv4 and ipv6) with different verdicts, and neither says which ` +
      "wins: whichever pulumi up inserted second would go above the other and decide those packets. Say which " +
      "wins: give the exception a source inside the other's (it goes above it, for that source; position " +
      '"auto" or "top" for it, "auto" or "bottom" for the other), or give both explicit, different positions ' +
      '("top" = line 1 < 2 < ... < "bottom": the smaller one is above), or remove one of them';
    const preview = await p.preview();
    expect(preview.code, all(preview)).not.toBe(0);
    expect(all(preview)).toContain(message);
    const up = await p.up();
    expect(up.code, all(up)).not.toBe(0);
    expect(all(up)).toContain(message);
    expect(await rulesets(h)).toEqual(before);
    expect(await p.resources()).toHaveLength(0);
  });

  it("a narrower source says which wins: up applies both, the exception above", async () => {
    const h = await lab.addHost({ rules: { v4: START } });
    const p = await programProject("exception", h, [
      { name: "block", args: { port: 9500, action: "DROP" } },
      { name: "admins", args: { port: 9500, action: "ACCEPT", source: "198.18.99.0/24" } },
    ]);
    await ok(p.preview());
    await ok(p.up());
    const [block, admins] = [await stateOf(p, "block"), await stateOf(p, "admins")];
    expect(admins.line.ipv4).toBeLessThan(block.line.ipv4);
    expect([admins.effective, block.effective]).toEqual([true, true]);
    await ok(p.destroy());
  });
});

describe("explicit positions in one run", () => {
  // Within one batch (the creates that reach the host together) top goes in first, then position 2:
  // lines 1 and 2 (test/unit/host/order.test.ts plans both arrival orders). Creates the engine starts
  // apart go in separate batches, in the engine's order: then what state and the messages say must
  // agree with the chain as listed.
  it("top and position 2: state and messages say where each went in and where it is", async () => {
    const h = await lab.addHost({ rules: { v4: START } });
    const p = await programProject("positions", h, [
      { name: "second", args: { port: 9602, action: "ACCEPT", position: 2, ipVersion: "ipv4" } },
      { name: "first", args: { port: 9601, action: "ACCEPT", position: "top", ipVersion: "ipv4" } },
    ]);
    const up = all(await ok(p.up()));
    const [first, second] = [await stateOf(p, "first"), await stateOf(p, "second")];
    const listed = (await h.ruleset(4)).split("\n").filter((l) => l.startsWith("-A INPUT"));
    const lineOf = (port: number) => listed.findIndex((l) => l.includes(`--dport ${port} `)) + 1;
    expect([first.line, second.line]).toEqual([{ ipv4: lineOf(9601) }, { ipv4: lineOf(9602) }]);
    expect([first.insertedAt, second.insertedAt]).toEqual([{ ipv4: 1 }, { ipv4: 2 }]);
    expect(first.line).toEqual({ ipv4: 1 });
    const inserted = `-I INPUT 2 -p tcp -m tcp --dport 9602 -m comment --comment "${second.tag}" -j ACCEPT on ${h.v4} (ipv4): line 2 (position 2)`;
    expect(up).toContain(inserted);
    expect(up).toContain(
      `-I INPUT 1 -p tcp -m tcp --dport 9601 -m comment --comment "${first.tag}" -j ACCEPT on ${h.v4} (ipv4): top of chain (position top)`,
    );
    if (second.line.ipv4 === 2) expect(up).not.toContain("the chain changed above it");
    else
      expect(second.placement.ipv4).toBe(
        "line 2 (position 2); now at line 3: the chain changed above it after it went in",
      );
    await ok(p.destroy());
  });
});
