/** Could a rule match such a packet (provider/rules/overlap.ts): the lockout guard's question. */
import { describe, expect, it } from "vitest";
import { matchesPacket, parseSpec } from "../../../provider/rules";

describe("matchesPacket", () => {
  it("matchesPacket answers the lockout question", () => {
    const ssh = parseSpec(["-s", "198.18.0.0/24", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "DROP"]);
    expect(matchesPacket(ssh, { protocol: "tcp", source: "198.18.0.7", dport: 22 })).toBe(true);
    expect(matchesPacket(ssh, { protocol: "tcp", source: "198.18.1.7", dport: 22 })).toBe(false);
    expect(matchesPacket(ssh, { protocol: "tcp", source: "198.18.0.7", dport: 2222 })).toBe(false);
    expect(matchesPacket(ssh, { protocol: "udp", source: "198.18.0.7", dport: 22 })).toBe(false);
    expect(
      matchesPacket(parseSpec(["-i", "eth0", "-p", "tcp", "-m", "multiport", "--dports", "1:1024", "-j", "DROP"]), {
        protocol: "tcp",
        source: "198.18.0.7",
        dport: 22,
      }),
    ).toBe(true);
    expect(
      matchesPacket(parseSpec(["-i", "eth0", "-j", "DROP"]), { protocol: "tcp", dport: 22, inInterface: "eth1" }),
    ).toBe(false);
  });
});
