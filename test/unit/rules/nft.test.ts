import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nftVerdicts, parseNft, type NftPackets } from "../../../provider/rules";
import { ROOT } from "../../fixtures/captures";

/** `nft -j list ruleset` as captured by scripts/capture-nft.ts from test/fixtures/nft/<name>.nft. */
const capture = (name: string) => parseNft(readFileSync(join(ROOT, "nft", `${name}.json.txt`), "utf8"));
const tcp = (ports: string, family: 4 | 6 = 4): NftPackets => ({ family, protocol: "tcp", ports });
const udp = (ports: string, family: 4 | 6 = 4): NftPackets => ({ family, protocol: "udp", ports });
const summary = (name: string, p: NftPackets, iptablesNft = true) =>
  nftVerdicts(capture(name), p, { iptablesNft }).map((j) => `${j.table} ${j.chain}: ${j.verdict}`);

describe("nft -j list ruleset: the base chains on the input hook beside iptables", () => {
  it("Debian's stock /etc/nftables.conf accepts (no policy); iptables-nft's own ip/ip6 filter tables are left to the iptables model", () => {
    for (const f of [4, 6] as const)
      expect(summary("debian-default", tcp("8080", f))).toEqual(["inet filter input: accepts"]);
    const [j] = nftVerdicts(capture("debian-default"), tcp("8080"), { iptablesNft: true });
    expect(j.why).toContain("the chain's policy accept accepts new tcp connections to port 8080");
  });

  it("with iptables-legacy, an nft table called ip filter is the host's own and is judged too", () => {
    expect(summary("debian-default", tcp("8080"), false)).toEqual([
      "inet filter input: accepts",
      "ip filter INPUT: accepts",
    ]);
  });

  it("table inet filter with policy drop drops a port it does not accept, accepts SSH, in both families", () => {
    for (const f of [4, 6] as const) {
      expect(summary("inet-filter-drop", tcp("8080", f))).toEqual(["inet filter input: drops"]);
      expect(summary("inet-filter-drop", tcp("22", f))).toEqual(["inet filter input: accepts"]);
    }
    const [j] = nftVerdicts(capture("inet-filter-drop"), tcp("8080"), { iptablesNft: true });
    expect(j).toMatchObject({ table: "inet filter", chain: "input", hook: "input" });
    expect(j.why).toBe("the chain's policy drop drops new tcp connections to port 8080");
    const [ssh] = nftVerdicts(capture("inet-filter-drop"), tcp("22"), { iptablesNft: true });
    expect(ssh.why).toMatch(/^inet filter input rule \(handle \d+\) .*"dport".*22.* accepts/);
  });

  it("after the table accepts the port (anonymous set, ct state new; a named interval set for UDP)", () => {
    expect(summary("inet-filter-accept", tcp("8080"))).toEqual(["inet filter input: accepts"]);
    expect(summary("inet-filter-accept", tcp("8080", 6))).toEqual(["inet filter input: accepts"]);
    expect(summary("inet-filter-accept", tcp("8081"))).toEqual(["inet filter input: drops"]);
    expect(summary("inet-filter-accept", udp("5000:5100"))).toEqual(["inet filter input: accepts"]);
    expect(summary("inet-filter-accept", udp("53,6000"))).toEqual(["inet filter input: drops"]);
    // a range only partly in the set: the rest falls to the policy
    expect(summary("inet-filter-accept", udp("5050:5200"))).toEqual(["inet filter input: drops"]);
    // UDP to the TCP ports: the tcp payload match implies its protocol
    expect(summary("inet-filter-accept", udp("8080"))).toEqual(["inet filter input: drops"]);
  });

  it("firewalld's shape: jump to the zones, goto the zone, allow SSH; the trailing reject takes the rest", () => {
    expect(summary("firewalld-like", tcp("22"))).toEqual(["inet firewalld filter_INPUT: accepts"]);
    expect(summary("firewalld-like", tcp("22", 6))).toEqual(["inet firewalld filter_INPUT: accepts"]);
    expect(summary("firewalld-like", tcp("8080"))).toEqual(["inet firewalld filter_INPUT: drops"]);
    const [j] = nftVerdicts(capture("firewalld-like"), tcp("8080"), { iptablesNft: true });
    expect(j.why).toMatch(/^inet firewalld filter_INPUT rule .*"reject".* drops new tcp connections to port 8080$/);
    // DHCPv6 is allowed only to fe80::/64, an address ordinary packets are not sent to
    expect(summary("firewalld-like", udp("546", 6))).toEqual(["inet firewalld filter_INPUT: drops"]);
  });

  it("what it cannot read (a mark, a rate limit) counts as may drop; a family's own table only for that family; priority order", () => {
    expect(summary("opaque", tcp("8080"))).toEqual(["ip extra input: drops"]);
    const [mark] = nftVerdicts(capture("opaque"), tcp("9090"), { iptablesNft: true });
    expect(mark.verdict).toBe("may drop");
    expect(mark.why).toMatch(
      /"mark".* may drop some new tcp connections to port 9090 \(accepted otherwise by the chain's policy accept\)/,
    );
    expect(summary("opaque", tcp("8080", 6))).toEqual(["ip6 v6only input: accepts"]);
    expect(summary("opaque", tcp("9090", 6))).toEqual(["ip6 v6only input: drops"]);
  });

  it("verdict maps, as nftables' own examples write them: the entry holding the packets decides", () => {
    expect(summary("vmap", tcp("22"))).toEqual(["inet filter input: accepts"]);
    expect(summary("vmap", tcp("8080"))).toEqual(["inet filter input: accepts"]); // jump web, accepted there
    expect(summary("vmap", tcp("8081"))).toEqual(["inet filter input: drops"]); // web returns: the policy
    expect(summary("vmap", tcp("9000"))).toEqual(["inet filter input: drops"]);
    expect(summary("vmap", tcp("2222"))).toEqual(["inet filter input: drops"]); // in no entry: the policy
    // partly in the map's 8000-8100 entry: the rest falls to the policy
    expect(summary("vmap", tcp("7990:8010"))).toEqual(["inet filter input: drops"]);
  });

  describe("one match kind at a time, in rulesets written the way nft -j prints them", () => {
    const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });
    const match = (left: unknown, right: unknown, op = "==") => ({ match: { op, left, right } });
    /** One table `inet t` with a base chain `input` (policy accept unless given) holding one rule per argument. */
    const ruleset = (rules: unknown[][], policy = "accept", extra: unknown[] = []) =>
      parseNft(
        JSON.stringify({
          nftables: [
            { chain: { family: "inet", table: "t", name: "input", hook: "input", prio: 0, policy } },
            ...rules.map((expr, handle) => ({ rule: { family: "inet", table: "t", chain: "input", handle, expr } })),
            ...extra,
          ],
        }),
      );
    const verdict = (rules: unknown[][], policy?: string, extra?: unknown[]) =>
      nftVerdicts(ruleset(rules, policy, extra), tcp("8080"), { iptablesNft: true }).map((j) => j.verdict);
    const drop = { drop: null };

    it("addresses and interfaces a rule names are exceptions; their negations take every ordinary packet", () => {
      const saddr = payload("ip", "saddr");
      expect(verdict([[match(saddr, { prefix: { addr: "198.18.0.0", len: 24 } }), drop]])).toEqual(["accepts"]);
      expect(verdict([[match(saddr, "198.18.0.1", "!="), drop]])).toEqual(["drops"]);
      expect(verdict([[match({ meta: { key: "iifname" } }, "eth0"), drop]])).toEqual(["accepts"]);
      expect(verdict([[match({ meta: { key: "iifname" } }, "lo", "!="), drop]])).toEqual(["drops"]);
    });

    it("another family's, protocol's or header's match takes none of them", () => {
      expect(verdict([[match(payload("ip6", "nexthdr"), "tcp"), drop]])).toEqual(["accepts"]);
      expect(verdict([[match(payload("icmp", "type"), "echo-request"), drop]])).toEqual(["accepts"]);
      expect(verdict([[match({ meta: { key: "nfproto" } }, "ipv6"), drop]])).toEqual(["accepts"]);
      expect(verdict([[match({ meta: { key: "protocol" } }, "ip"), drop]])).toEqual(["drops"]);
      expect(verdict([[match(payload("ip", "protocol"), "6"), drop]])).toEqual(["drops"]); // 6 is tcp
    });

    it("what ordinary packets are (ether, to the host, new, original direction, local) is read", () => {
      expect(verdict([[match({ meta: { key: "iiftype" } }, "ether"), drop]])).toEqual(["drops"]);
      expect(verdict([[match({ meta: { key: "pkttype" } }, "host"), drop]])).toEqual(["drops"]);
      expect(verdict([[match({ ct: { key: "direction" } }, "original"), drop]])).toEqual(["drops"]);
      expect(verdict([[match({ ct: { key: "status" } }, "dnat"), drop]])).toEqual(["accepts"]);
      expect(verdict([[match({ ct: { key: "status" } }, "dnat", "!="), drop]])).toEqual(["drops"]);
      const local = match({ fib: { result: "type", flags: ["daddr"] } }, "local");
      expect(verdict([[local, { accept: null }]], "drop")).toEqual(["accepts"]);
    });

    it("what it cannot read (a source port, a port name, a mark, a rate limit, a queue) may drop", () => {
      expect(verdict([[match(payload("tcp", "sport"), 1024), drop]])).toEqual(["may drop"]);
      expect(verdict([[match(payload("tcp", "dport"), { set: ["http"] }), drop]])).toEqual(["may drop"]);
      expect(verdict([[match({ ct: { key: "mark" } }, 1), drop]])).toEqual(["may drop"]);
      expect(verdict([[match({ meta: { key: "mark" } }, 1), drop]])).toEqual(["may drop"]);
      expect(verdict([[{ limit: { rate: 10, per: "second" } }, drop]])).toEqual(["may drop"]);
      expect(verdict([[{ queue: { num: 1 } }]])).toEqual(["may drop"]);
      expect(verdict([[{ vmap: { key: { ct: { key: "state" } }, data: "@map" } }]])).toEqual(["may drop"]);
    });

    it("a jump to a chain that is not there, or jumps nested too deep, cannot be read", () => {
      const [missing] = nftVerdicts(ruleset([[{ jump: { target: "nowhere" } }]]), tcp("8080"), {
        iptablesNft: true,
      });
      expect(missing.why).toMatch(/no chain nowhere decides new tcp connections to port 8080 in a way/);
      const loop = { chain: { family: "inet", table: "t", name: "loop" } };
      const again = { rule: { family: "inet", table: "t", chain: "loop", expr: [{ jump: { target: "loop" } }] } };
      const [deep] = nftVerdicts(ruleset([[{ jump: { target: "loop" } }]], "accept", [loop, again]), tcp("8080"), {
        iptablesNft: true,
      });
      expect(deep.why).toMatch(/^loop: jumps nested more than 16 deep/);
    });
  });
});
