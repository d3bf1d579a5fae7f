import { describe, expect, it } from "vitest";
import {
  check,
  dockerWarning,
  parseRuleset,
  parseSpec,
  publishedPorts,
  renderRule,
  ruleText,
} from "../../../provider/rules";
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

describe("publishedPorts: Docker's DNAT rules in nat DOCKER, as dockerd writes them", () => {
  for (const backend of BACKENDS) {
    it(`${backend}: 8080 is published to the container's port 80; 2222 and udp 8080 are not`, () => {
      const nat = parseRuleset(readFamilyFile(backend, 4, "docker/save.txt"));
      const found = publishedPorts(nat, { protocol: "tcp", ports: "8080" });
      expect(found).toEqual([
        {
          rule: "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.19.0.2:80",
          to: "198.19.0.2:80",
          address: undefined,
        },
      ]);
      expect(publishedPorts(nat, { protocol: "tcp", ports: "8000:8100" })).toHaveLength(1);
      expect(publishedPorts(nat, { protocol: "tcp", ports: "22,8080" })).toHaveLength(1);
      expect(publishedPorts(nat, { protocol: "tcp", ports: "2222" })).toEqual([]);
      expect(publishedPorts(nat, { protocol: "udp", ports: "8080" })).toEqual([]);
      const v6 = parseRuleset(readFamilyFile(backend, 6, "docker/save.txt"));
      expect(publishedPorts(v6, { protocol: "tcp", ports: "8080" })[0].to).toBe("[fd00:dc::2]:80");
    });
  }

  it("a DOCKER chain nothing in PREROUTING jumps to publishes nothing; a host address is named", () => {
    const nat = (prerouting: string, dnat: string) =>
      parseRuleset(`*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n${prerouting}${dnat}\nCOMMIT\n`);
    const dnat =
      "-A DOCKER -d 198.18.1.2/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.19.0.2:80";
    expect(publishedPorts(nat("", dnat), { protocol: "tcp", ports: "8080" })).toEqual([]);
    const jump = "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n";
    expect(publishedPorts(nat(jump, dnat), { protocol: "tcp", ports: "8080" })[0].address).toBe("198.18.1.2/32");
  });

  it("the warning names Docker's rule and says what to write instead", () => {
    const nat = parseRuleset(readFamilyFile("nf_tables", 4, "docker/save.txt"));
    const w = dockerWarning(
      { chain: "INPUT", protocol: "tcp", ports: "8080", action: "DROP" },
      publishedPorts(nat, { protocol: "tcp", ports: "8080" }),
      "198.18.1.2",
    );
    expect(w).toContain(
      "Docker publishes tcp 8080 on 198.18.1.2 (-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT",
    );
    expect(w).toContain("never reach INPUT");
    expect(w).toContain('write chain: "DOCKER-USER"');
    expect(w).toContain("--ctorigdstport 8080 --ctdir ORIGINAL");
  });
});
