/** Could a rule match such a packet (provider/rules/overlap.ts): the lockout guard's question. */
import { describe, expect, it } from "vitest";
import { matchesPacket, parseSpec } from "../../../provider/rules";
import { mayOverlap } from "../../../provider/rules/overlap";

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

describe("mayOverlap: one dimension at a time", () => {
  const may = (a: string, b: string) => mayOverlap(parseSpec(a.split(" ")), parseSpec(b.split(" ")));

  it("addresses: a network and what lies in it overlap; other networks and the other family do not", () => {
    expect(may("-s 198.18.0.0/24", "-s 198.18.0.128/25")).toBe(true);
    expect(may("-s 198.18.0.0/24", "-s 198.18.1.0/24")).toBe(false);
    expect(may("-s 198.18.0.0/24", "-s fd00::1")).toBe(false);
    expect(may("! -s 198.18.0.0/24", "-s 198.18.0.7")).toBe(false);
    expect(may("! -s 198.18.0.0/24", "-s 198.18.0.0/16")).toBe(true);
    expect(may("-s 198.18.0.7", "! -s 198.18.0.0/24")).toBe(false);
    expect(may("! -s 198.18.0.7", "! -s 198.18.0.8")).toBe(true);
    expect(may("-s not-an-address", "-s 198.18.0.7")).toBe(true); // unreadable: may
  });

  it("interfaces: a + wildcard covers every name it starts", () => {
    expect(may("-i eth+", "-i eth0")).toBe(true);
    expect(may("-i eth+", "-i wlan0")).toBe(false);
    expect(may("-i eth+", "-i et+")).toBe(true);
    expect(may("-i eth+", "-i wl+")).toBe(false);
    expect(may("-i eth0", "-i eth1")).toBe(false);
    expect(may("! -i eth+", "-i eth1")).toBe(false);
  });

  it("protocols by name or number; all overlaps every one", () => {
    expect(may("-p tcp", "-p 6")).toBe(true);
    expect(may("-p all", "-p udp")).toBe(true);
    expect(may("-p tcp", "-p udp")).toBe(false);
  });

  it("ports: lists and ranges; --ports is the source or the destination port", () => {
    const dport = (v: string) => `-p tcp -m tcp --dport ${v}`;
    expect(may("-p tcp -m multiport --dports 80,8000:8100", dport("8080"))).toBe(true);
    expect(may("-p tcp -m multiport --dports 80,8000:8100", dport("9000"))).toBe(false);
    expect(may("-p tcp -m tcp ! --dport 8000:8100", dport("8080"))).toBe(false);
    expect(may("-p tcp -m tcp ! --dport 8000:8100", dport("7990:8010"))).toBe(true);
    expect(may("-p tcp -m multiport --ports 22", "-p tcp -m tcp --sport 1000 --dport 2000")).toBe(false);
    expect(may("-p tcp -m multiport --ports 22", "-p tcp -m tcp --sport 22 --dport 2000")).toBe(true);
  });

  it("connection states share a state or not; values compared as they are (icmp types) may always overlap", () => {
    expect(may("-m conntrack --ctstate NEW", "-m conntrack --ctstate RELATED,ESTABLISHED")).toBe(false);
    expect(may("-m conntrack --ctstate NEW", "-m conntrack --ctstate NEW,ESTABLISHED")).toBe(true);
    expect(may("-m conntrack ! --ctstate NEW", "-m conntrack --ctstate NEW")).toBe(false);
    expect(may("-p icmp -m icmp --icmp-type 8", "-p icmp -m icmp --icmp-type 0")).toBe(true);
    expect(may("-p icmp -m icmp ! --icmp-type 8", "-p icmp -m icmp --icmp-type 8")).toBe(false);
  });
});
