// Healing drift: what up does about a rule a refresh found out of effect (pure), in the words preview says.
import { describe, expect, it } from "vitest";
import { healOf } from "../../../provider/heal";
import type { PortRuleState } from "../../../provider/state";

const BY = "INPUT:1 (-A INPUT -p tcp -m tcp --dport 8080 -j DROP) drops tcp 8080";
const state = {
  identity: { project: "web", stack: "prod", name: "allow-app" },
  tag: "pulumi-iptables:web/prod/allow-app/abc",
  host: "198.18.0.10",
  chain: "INPUT",
  action: "ACCEPT",
  protocol: "tcp",
  ports: "8080",
  ipVersion: "both",
  position: "auto",
  heal: true,
  line: { ipv4: 4, ipv6: 3 },
  shadowedBy: { ipv4: BY },
  placeable: { ipv4: { line: 1 } },
  shadowTag: {},
  missing: [],
  effective: false,
} as unknown as PortRuleState;
const WHO = "allow-app: INPUT of 198.18.0.10 (ACCEPT tcp 8080)";
const with_ = (change: Record<string, unknown>) => ({ ...state, ...change }) as PortRuleState;

describe("healOf", () => {
  it("in effect, or a family missing (up replaces it then): nothing", () => {
    expect(healOf(with_({ shadowedBy: {}, effective: true }))).toBeUndefined();
    expect(healOf(with_({ missing: ["ipv6"] }))).toBeUndefined();
  });

  it("auto, heal on, a line makes it effective: moves the shadowed family, saying why and where", () => {
    expect(healOf(state)).toEqual({
      move: ["ipv4"],
      reason: `${WHO} moves: ${BY} above it (ipv4): up puts it at line 1`,
    });
  });

  it("heal: false only reports, with the same reason", () => {
    expect(healOf(with_({ heal: false }))).toEqual({
      report: `${WHO} is not in effect: ${BY} above it (ipv4): up puts it at line 1; not moved: heal is false`,
    });
  });

  it("an explicit position is the program's: reported, not moved", () => {
    expect(healOf(with_({ position: "top" }))).toEqual({
      report: `${WHO} is not in effect: ${BY} above it (ipv4); not moved: position top is the program's`,
    });
    expect(healOf(with_({ position: 3 }))).toHaveProperty("report");
  });

  it("no line makes it effective (Docker, nft, a rule still above at the best line): reported the same every time", () => {
    const nft = "nft inet x c (hook input) drops new tcp connections to port 8080";
    const r = healOf(with_({ shadowedBy: { ipv4: nft }, placeable: {} }));
    expect(r).toEqual({
      report: `${WHO} is not in effect: ${nft} above it (ipv4): no line of INPUT makes it effective (${nft}); not moved`,
    });
    expect(healOf(with_({ shadowedBy: { ipv4: nft }, placeable: {} }))).toEqual(r);
    const still = healOf(with_({ placeable: { ipv4: { line: 1, shadowedBy: nft } } }));
    expect(still).toEqual({
      report: `${WHO} is not in effect: ${BY} above it (ipv4): no line of INPUT makes it effective (${nft}); not moved`,
    });
  });

  it("state written before heal existed: heal on, but where it would go is not recorded until a refresh: reported", () => {
    const { heal: _h, placeable: _p, ...old } = state as unknown as Record<string, unknown>;
    expect(healOf(old as unknown as PortRuleState)).toEqual({
      report: `${WHO} is not in effect: ${BY} above it (ipv4): where it would go is not in state yet (run pulumi refresh, or up --refresh); not moved`,
    });
  });

  it("a rule shadowed by another PortRule's (this stack's or another's) is reported, not fought over", () => {
    const mine = healOf(with_({ shadowTag: { ipv4: "pulumi-iptables:web/prod/block-all/def" } }));
    expect(mine).toEqual({
      report: `${WHO} is not in effect: ${BY} above it (ipv4): that rule belongs to PortRule "block-all" of this stack, not fought over; not moved`,
    });
    const theirs = healOf(with_({ shadowTag: { ipv4: "pulumi-iptables:ops/staging/deny/123" } }));
    expect(theirs).toHaveProperty("report", expect.stringContaining(`PortRule "deny" of stack ops/staging,`));
  });

  it("both families: moves the one a line heals, says why the other stays", () => {
    const nft = "nft inet x c (hook input) drops new tcp connections to port 8080";
    const r = healOf(with_({ shadowedBy: { ipv4: BY, ipv6: nft } }));
    expect(r).toEqual({
      move: ["ipv4"],
      reason:
        `${WHO} moves: ${BY} above it (ipv4): up puts it at line 1; ` +
        `${nft} above it (ipv6): no line of INPUT makes it effective (${nft})`,
    });
  });
});
