/**
 * The host's own addresses as the destinations of ordinary packets (provider/rules/destinations.ts),
 * seen through placeRule and shadowing: a rule naming one of them (`-d`) matches the packets to it,
 * one naming an address the host does not have matches none; a DNAT bound to one address (Docker's
 * `-p 198.18.0.2:8080:80`) sends only the packets to it away; a DNAT to another of the host's
 * addresses stays on the host.
 */
import { describe, expect, it } from "vitest";
import { parseRuleset, placeRule, shadowing } from "../../../provider/rules";
import { possibleVerdicts } from "../../../provider/rules/place";

const filter = (rules: string[], policy = "ACCEPT") =>
  parseRuleset(
    ["*filter", `:INPUT ${policy} [0:0]`, ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ...rules, "COMMIT", ""].join(
      "\n",
    ),
  );
const natOf = (rules: string[], chains: string[] = []) =>
  parseRuleset(
    ["*nat", ":PREROUTING ACCEPT [0:0]", ...chains.map((c) => `:${c} - [0:0]`), ...rules, "COMMIT", ""].join("\n"),
  );
const rule = (port: number, action: string) => ["-p", "tcp", "-m", "tcp", "--dport", String(port), "-j", action];
const INPUT = { table: "filter", chain: "INPUT" } as const;
const TWO = ["198.18.0.2", "198.18.1.2"];

describe("the host's addresses", () => {
  it("a rule naming one of the host's addresses matches the packets to it: a DROP goes above its ACCEPT", () => {
    const rs = filter(["-A INPUT -d 198.18.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT"]);
    const placed = placeRule(rs, { ...INPUT, rule: rule(8080, "DROP"), addresses: TWO });
    expect(placed).toMatchObject({ line: 1, effective: true });
    expect(placed.reason).toBe(
      "before line 1 (-A INPUT -d 198.18.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT): below it, INPUT:1 (-A INPUT -d 198.18.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT) accepts tcp 8080 to 198.18.1.2",
    );
    // Below it, only the packets to that address are decided otherwise.
    const s = shadowing(
      filter([
        rs.tables.get("filter")!.chains.get("INPUT")!.rules[0].text,
        "-A INPUT -p tcp -m tcp --dport 8080 -j DROP",
      ]),
      {
        ...INPUT,
        line: 2,
        addresses: TWO,
      },
    );
    expect(s?.packets).toBe("tcp 8080 to 198.18.1.2");
    // The host's only address: every ordinary packet.
    expect(placeRule(rs, { ...INPUT, rule: rule(8080, "DROP"), addresses: ["198.18.1.2"] }).line).toBe(1);
    // Where the host's addresses are not known, an exception as before.
    expect(placeRule(rs, { ...INPUT, rule: rule(8080, "DROP") })).toMatchObject({ line: 2, effective: true });
  });

  it("a rule naming an address the host does not have stays an exception above ours", () => {
    const rs = filter(["-A INPUT -d 198.19.0.251/32 -p tcp -m tcp --dport 8080 -j ACCEPT"]);
    expect(placeRule(rs, { ...INPUT, rule: rule(8080, "DROP"), addresses: TWO })).toMatchObject({
      line: 2,
      effective: true,
    });
    // A network holding all of them matches all; a negated one the others.
    const net = filter(["-A INPUT -d 198.18.0.0/16 -p tcp -m tcp --dport 8080 -j ACCEPT"]);
    expect(placeRule(net, { ...INPUT, rule: rule(8080, "DROP"), addresses: TWO }).line).toBe(1);
    const neg = filter(["-A INPUT ! -d 198.18.0.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT"]);
    expect(placeRule(neg, { ...INPUT, rule: rule(8080, "DROP"), addresses: TWO }).line).toBe(1);
    expect(placeRule(neg, { ...INPUT, rule: rule(8080, "DROP"), addresses: ["198.18.0.2"] }).line).toBe(2);
  });

  it("the addresses no rule tells apart are judged once; each group is one set of packets", () => {
    const rs = filter(["-A INPUT -d 198.18.1.0/24 -p tcp -m tcp --dport 8080 -j REJECT"]);
    const three = ["198.18.0.2", "198.18.1.2", "198.18.1.9"];
    const verdicts = possibleVerdicts(rs, { ...INPUT, rule: rule(8080, "DROP"), line: 2, addresses: three });
    expect(verdicts.map((v) => [v.to, v.verdicts])).toEqual([
      ["198.18.0.2", ["DROP"]],
      ["198.18.1.2", ["REJECT"]],
    ]);
  });

  it("Docker publishing on one host address: only the packets to it are DNAT-ed away", () => {
    const nat = natOf(
      [
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A DOCKER -d 198.18.0.2/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
      ],
      ["DOCKER"],
    );
    const rs = filter(["-A INPUT -p tcp -m tcp --dport 8080 -j DROP"]);
    const s = shadowing(rs, { ...INPUT, line: 1, nat, interfaces: ["eth0"], addresses: TWO });
    expect(s?.verdict).toBe("FORWARD");
    expect(s?.packets).toBe("tcp 8080 on eth0 to 198.18.0.2");
    expect(s?.why).toContain("sends tcp 8080 on eth0 to 198.18.0.2 to 172.17.0.2:80 through FORWARD");
    // A host whose only address is another one: the DNAT never applies.
    expect(shadowing(rs, { ...INPUT, line: 1, nat, interfaces: ["eth0"], addresses: ["198.18.1.2"] })).toBeUndefined();
  });

  it("a DNAT to another of the host's addresses stays on the host, judged under its new port", () => {
    const nat = natOf(["-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.1.2:9090"]);
    const rs = filter(["-A INPUT -d 198.18.1.2/32 -p tcp -m tcp --dport 9090 -j REJECT"], "DROP");
    const placed = placeRule(rs, { ...INPUT, rule: rule(8080, "ACCEPT"), nat, addresses: TWO });
    expect(placed.effective).toBe(false);
    expect(placed.shadowedBy?.why).toBe(
      "nat PREROUTING: -A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.1.2:9090 (sends tcp 8080 to 198.18.0.2 to port 9090); then INPUT:1 (-A INPUT -d 198.18.1.2/32 -p tcp -m tcp --dport 9090 -j REJECT) rejects tcp 9090",
    );
    // Without the host's addresses, the same DNAT counted as sent away (an ACCEPT then admits them).
    expect(placeRule(rs, { ...INPUT, rule: rule(8080, "ACCEPT"), nat }).effective).toBe(true);
  });
});

describe("the other backend's nat PREROUTING", () => {
  const legacy = (rules: string[]) => ({
    backend: "legacy" as const,
    ruleset: natOf(rules),
  });

  it("a port the other backend DNATs away is not effective on INPUT, and the reason names its tables", () => {
    const other = legacy(["-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.19.250.2"]);
    const rs = filter(["-A INPUT -p tcp -m tcp --dport 8080 -j DROP"]);
    const s = shadowing(rs, { ...INPUT, line: 1, other });
    expect(s?.verdict).toBe("FORWARD");
    expect(s?.why).toMatch(/^the legacy tables' nat PREROUTING: -A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT/);
    expect(shadowing(rs, { ...INPUT, line: 1 })).toBeUndefined();
  });

  it("where both backends translate a port, either may come first: both fates count", () => {
    const nat = natOf(["-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 8081"]);
    const other = legacy(["-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.19.250.2"]);
    const rs = filter(["-A INPUT -p tcp -m tcp --dport 8081 -j DROP"]);
    const v = possibleVerdicts(rs, { ...INPUT, rule: rule(8080, "DROP"), line: 2, nat, other });
    expect(v[0].verdicts.sort()).toEqual(["DROP", "FORWARD"]);
    // Only one translating: that one applies, whichever backend holds it.
    expect(possibleVerdicts(rs, { ...INPUT, rule: rule(8080, "ACCEPT"), line: 2, nat })[0].verdicts).toEqual(["DROP"]);
  });
});
