/** What the iptables and nft models both say (provider/rules/ordinary.ts). */
import { describe, expect, it } from "vitest";
import { ALL, both, either, negate, NONE, not, portRanges, protocolName, SOME } from "../../../provider/rules/ordinary";

describe("Share: how much of the ordinary packets", () => {
  it("not turns all and none round and keeps some; negate does so only for a negated match", () => {
    expect([not(NONE), not(SOME), not(ALL)]).toEqual([ALL, SOME, NONE]);
    expect(negate(ALL, { negated: true })).toBe(NONE);
    expect(negate(ALL, { negated: false })).toBe(ALL);
  });

  it("both is the smaller share (all when there is none to take), either the larger", () => {
    expect(both(ALL, SOME)).toBe(SOME);
    expect(both(SOME, NONE, ALL)).toBe(NONE);
    expect(both()).toBe(ALL);
    expect(either(NONE, SOME)).toBe(SOME);
    expect(either(SOME, ALL)).toBe(ALL);
  });
});

describe("portRanges", () => {
  it("reads iptables' lists and ranges, open ends and reversed ranges", () => {
    expect(portRanges("53,80,8000:8100")).toEqual([
      [53, 53],
      [80, 80],
      [8000, 8100],
    ]);
    expect(portRanges("8000:")).toEqual([[8000, 65535]]);
    expect(portRanges(":1023")).toEqual([[0, 1023]]);
    expect(portRanges("9000:8000")).toEqual([[8000, 9000]]);
  });

  it("is undefined for names and garbage", () => {
    for (const v of ["ssh", "", "80,", "1-2", "80:90:100"]) expect(portRanges(v)).toBeUndefined();
  });
});

describe("protocolName", () => {
  it("names a protocol one way, by number or alias", () => {
    expect(["6", "17", "1", "58", "icmpv6", "0", "tcp", "sctp"].map(protocolName)).toEqual([
      "tcp",
      "udp",
      "icmp",
      "ipv6-icmp",
      "ipv6-icmp",
      "all",
      "tcp",
      "sctp",
    ]);
  });
});
