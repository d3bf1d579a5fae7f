// What a refresh says changed: the rule gone, missing in a family, moved, not in effect and why, and its counters.
import { describe, expect, it } from "vitest";
import { driftOf } from "../../../provider/drift";
import type { PortRuleState } from "../../../provider/state";

const before = {
  identity: { project: "web", stack: "prod", name: "block-admin" },
  tag: "pulumi-iptables:web/prod/block-admin/abc",
  host: "198.18.0.10",
  chain: "INPUT",
  action: "DROP",
  protocol: "tcp",
  ports: "8080",
  ipVersion: "both",
  insertedAt: { ipv4: 1, ipv6: 1 },
  placement: { ipv4: "top of an empty chain", ipv6: "top of an empty chain" },
  line: { ipv4: 1, ipv6: 1 },
  shadowedBy: {},
  missing: [],
  effective: true,
  packets: 3,
  bytes: 180,
} as unknown as PortRuleState;
const RULE = "block-admin: the rule on INPUT of 198.18.0.10 (DROP tcp 8080)";
const changed = (change: Partial<PortRuleState>) => ({ ...before, ...change }) as PortRuleState;

describe("driftOf", () => {
  it("nothing changed: nothing to say", () => {
    expect(driftOf(before, changed({}))).toEqual({ warnings: [], info: [] });
  });

  it("gone: refresh drops it, the next up creates it again", () => {
    expect(driftOf(before, undefined).warnings).toEqual([
      `${RULE} is gone (ipv4, ipv6): deleted by hand or by another tool. Refresh drops it from state; the next pulumi up creates it again`,
    ]);
  });

  it("missing in one family: the next up replaces it (and the counters that fell with it are not news)", () => {
    const d = driftOf(before, changed({ missing: ["ipv6"], line: { ipv4: 1 }, effective: false, packets: 1 }));
    expect(d).toEqual({
      warnings: [
        `${RULE} is missing in ipv6: deleted by hand or by another tool. The next pulumi up replaces the rule`,
      ],
      info: [],
    });
  });

  it("moved: from which line to which, and where placement had put it", () => {
    expect(driftOf(before, changed({ line: { ipv4: 2, ipv6: 1 } })).warnings).toEqual([
      `${RULE} moved from line 1 to line 2 (ipv4): rules above it were inserted or deleted (inserted at line 1: top of an empty chain)`,
    ]);
  });

  it("not in effect: names the rule that decides its packets", () => {
    const by = "INPUT:1 (-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT) accepts tcp 8080";
    const d = driftOf(before, changed({ line: { ipv4: 2, ipv6: 1 }, shadowedBy: { ipv4: by }, effective: false }));
    expect(d.warnings).toContain(
      `${RULE} is not in effect (ipv4): ${by}; its packets are decided there, not by this rule`,
    );
  });

  it("counters: how many packets since the last refresh, or that they went back", () => {
    expect(driftOf(before, changed({ packets: 5, bytes: 300 })).info).toEqual([
      `${RULE} counted 2 packets since the last refresh: 5 packets, 300 bytes in all`,
    ]);
    expect(driftOf(before, changed({ packets: 0, bytes: 0 })).info).toEqual([
      `${RULE} has fewer packets than at the last refresh (counters reset, or the ruleset reloaded): 0 packets, 0 bytes in all`,
    ]);
  });
});
