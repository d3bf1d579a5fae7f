import { describe, expect, it } from "vitest";
import { check, parseRuleset, parseSpec, placeRule, renderRule, ruleText } from "../../../provider/rules";
import { BACKENDS, readFamilyFile } from "../../fixtures/captures";

const TAG = "pulumi-iptables:web/prod/block/abcd1234";
const checked = (news: Record<string, unknown>) =>
  check({}, { connection: { host: "198.18.0.10" }, port: 8080, action: "DROP", ...news });
const inputs = (news: Record<string, unknown>) => {
  const r = checked(news);
  expect(r.failures).toEqual([]);
  return r.inputs;
};

describe("DOCKER-USER: the original destination port, through the flag table", () => {
  it.each([
    [{}, `-p tcp -m conntrack --ctorigdstport 8080 --ctdir ORIGINAL -m comment --comment ${TAG} -j DROP`],
    [
      { port: "8000-8100", protocol: "udp", source: "198.18.7.0/24", action: "ACCEPT" },
      `-s 198.18.7.0/24 -p udp -m conntrack --ctorigdstport 8000:8100 --ctdir ORIGINAL -m comment --comment ${TAG} -j ACCEPT`,
    ],
  ])("%j renders as iptables -S prints it, and parses back to the same model", (news, text) => {
    const i = inputs({ chain: "DOCKER-USER", ...news });
    const argv = renderRule(i, 4, TAG);
    expect(argv.join(" ")).toBe(text);
    const spec = parseSpec(argv);
    expect(spec.opaque).toEqual([]);
    expect(spec.match.ctorigdstport).toEqual({ value: i.ports, negated: false });
    expect(spec.match.ctdir).toEqual({ value: "ORIGINAL", negated: false });
    expect(spec.match.dport).toBeUndefined();
    // the rule as iptables-save lists it reads back to the same argv
    const rs = parseRuleset(`*filter\n:DOCKER-USER - [0:0]\n${ruleText("DOCKER-USER", argv)}\nCOMMIT\n`);
    expect(rs.tables.get("filter")!.chains.get("DOCKER-USER")!.rules[0].tokens).toEqual(argv);
  });

  it("other chains keep --dport", () => {
    expect(renderRule(inputs({ chain: "FORWARD" }), 4, TAG).join(" ")).toContain("-m tcp --dport 8080");
  });

  it("refuses a port list and another table, saying what to write", () => {
    expect(checked({ chain: "DOCKER-USER", port: [80, 443] }).failures).toEqual([
      {
        property: "port",
        reason: expect.stringMatching(
          /--ctorigdstport, which takes one port or one range, not a list: make one PortRule per port/,
        ),
      },
    ]);
    expect(checked({ chain: "DOCKER-USER", table: "mangle" }).failures.map((f) => f.property)).toContain("table");
  });
});

describe("Docker's published ports are one case of nat PREROUTING (place.ts follows Docker's DNAT as any other)", () => {
  const argv = (rule: string) => rule.split(" ");
  const place = (rs: ReturnType<typeof parseRuleset>, rule: string, addresses?: string[]) =>
    placeRule(rs, { table: "filter", chain: "INPUT", rule: argv(rule), nat: rs, addresses });

  for (const backend of BACKENDS) {
    it(`${backend}: a DROP of 8080 on INPUT is not effective, naming Docker's DNAT and what to write; 2222 and udp 8080 are not Docker's`, () => {
      const rs = parseRuleset(readFamilyFile(backend, 4, "docker/save.txt"));
      const p = place(rs, "-p tcp -m tcp --dport 8080 -j DROP");
      expect(p.effective).toBe(false);
      expect(p.shadowedBy?.verdict).toBe("FORWARD");
      expect(p.shadowedBy?.why).toContain(
        "nat PREROUTING -> DOCKER: -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.19.0.2:80",
      );
      expect(p.shadowedBy?.why).toContain("never reach INPUT");
      expect(p.shadowedBy?.why).toContain("DOCKER-USER on a Docker host");
      expect(p.shadowedBy?.why).toContain("-m conntrack --ctorigdstport 8080 --ctdir ORIGINAL");
      expect(place(rs, "-p tcp -m multiport --dports 8000:8100 -j DROP").effective).toBe(false);
      expect(place(rs, "-p tcp -m tcp --dport 2222 -j DROP").effective).toBe(true);
      expect(place(rs, "-p udp -m udp --dport 8080 -j DROP").effective).toBe(true);
      // An ACCEPT of a published port: Docker forwards its packets anyway, so it is redundant, not shadowed.
      expect(place(rs, "-p tcp -m tcp --dport 8080 -j ACCEPT").effective).toBe(true);
      const v6 = parseRuleset(readFamilyFile(backend, 6, "docker/save.txt"));
      expect(place(v6, "-p tcp -m tcp --dport 8080 -j DROP").shadowedBy?.why).toContain("to [fd00:dc::2]:80");
    });
  }

  it("a DOCKER chain nothing in PREROUTING jumps to sends nothing away; a DNAT bound to one host address, only its packets", () => {
    const rs = (prerouting: string, dnat: string) =>
      parseRuleset(
        `*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n${prerouting}${dnat}\nCOMMIT\n`,
      );
    const dnat =
      "-A DOCKER -d 198.18.1.2/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.19.0.2:80";
    const drop = "-p tcp -m tcp --dport 8080 -j DROP";
    expect(place(rs("", dnat), drop, ["198.18.1.2"]).effective).toBe(true);
    const jump = "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n";
    expect(place(rs(jump, dnat), drop, ["198.18.1.2"]).effective).toBe(false);
    expect(place(rs(jump, dnat), drop, ["198.18.1.2", "198.18.0.2"]).shadowedBy?.why).toMatch(/to 198\.18\.1\.2/);
  });
});
