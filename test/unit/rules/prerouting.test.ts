/**
 * nat PREROUTING before filter INPUT (provider/rules/prerouting.ts), seen through placeRule and
 * shadowing: a port DNAT-ed elsewhere goes through FORWARD, a REDIRECT is judged under its new port.
 */
import { describe, expect, it } from "vitest";
import { parseRuleset, placeRule, shadowing } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";

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
const at = (line: number) => ({ table: "filter", chain: "INPUT", line });

describe("nat PREROUTING before INPUT", () => {
  it("a DROP for a port Docker publishes is not effective: shadowedBy names the DNAT and says what to write", () => {
    const nat = parseRuleset(readFamilyFile("nf_tables", 4, "docker/save.txt"));
    const rs = filter(["-A INPUT -p tcp -m tcp --dport 8080 -j DROP"]);
    const s = shadowing(rs, { ...at(1), nat, interfaces: ["eth0"] });
    expect(s?.why).toMatch(/^nat PREROUTING -> DOCKER: -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT/);
    expect(s?.why).toContain("through FORWARD: they never reach INPUT");
    expect(s?.why).toContain("-m conntrack --ctorigdstport 8080 --ctdir ORIGINAL");
    expect(s?.verdict).toBe("FORWARD");
    // Arriving on docker0 the DNAT does not apply: the DROP decides those.
    expect(shadowing(rs, { ...at(1), nat, interfaces: ["docker0"] })).toBeUndefined();
    // An ACCEPT for the published port is redundant, not shadowed.
    const placed = placeRule(filter([]), { table: "filter", chain: "INPUT", rule: rule(8080, "ACCEPT"), nat });
    expect(placed.effective).toBe(true);
  });

  it("a REDIRECT is judged on INPUT under the translated port", () => {
    const nat = natOf(["-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 8081"]);
    const rs = filter(["-A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT"], "DROP");
    const placed = placeRule(rs, { table: "filter", chain: "INPUT", rule: rule(8080, "DROP"), nat });
    expect(placed.effective).toBe(false);
    expect(placed.shadowedBy?.why).toBe(
      "nat PREROUTING: -A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 8081 (sends tcp 8080 to port 8081); then INPUT:1 (-A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT) accepts tcp 8081",
    );
    // A DROP for the port it is redirected to decides them.
    const to = placeRule(rs, { table: "filter", chain: "INPUT", rule: rule(8081, "DROP"), nat });
    expect(to).toMatchObject({ line: 1, effective: true });
    // Without the nat table, the old judgement.
    expect(placeRule(rs, { table: "filter", chain: "INPUT", rule: rule(8080, "DROP") }).effective).toBe(true);
  });

  it("a REDIRECTed packet keeps the port the client asked for: Shorewall's --ctorigdstport ACCEPT matches it", () => {
    // Shorewall's `REDIRECT net 8085 tcp 8086` (test/fixtures/managers/shorewall-one-interface): the
    // kernel accepted 8086 under a DROP of 8086 placed at line 1, which the model called effective.
    const nat = natOf(["-A PREROUTING -i eth0 -p tcp -m tcp --dport 8086 -j REDIRECT --to-ports 8085"]);
    const rs = filter(["-A INPUT -p tcp -m tcp --dport 8085 -m conntrack --ctorigdstport 8086 -j ACCEPT"], "DROP");
    const placed = placeRule(rs, {
      table: "filter",
      chain: "INPUT",
      rule: rule(8086, "DROP"),
      nat,
      interfaces: ["eth0"],
    });
    expect(placed.effective).toBe(false);
    expect(placed.shadowedBy?.why).toContain("accepts tcp 8085");
    // Asked for directly, 8085 is not the port the ACCEPT names: the policy drops it.
    expect(
      placeRule(rs, { table: "filter", chain: "INPUT", rule: rule(8085, "ACCEPT"), nat, interfaces: ["eth0"] })
        .effective,
    ).toBe(true);
    expect(
      placeRule(rs, { table: "filter", chain: "INPUT", rule: rule(8085, "DROP"), nat, interfaces: ["eth0"] }).effective,
    ).toBe(true);
  });

  it("a DNAT bound to one interface sends only that interface's packets away", () => {
    const nat = natOf(
      ["-A PREROUTING -i eth1 -j FWD", "-A FWD -p tcp -m tcp --dport 9000 -j DNAT --to-destination 198.18.9.2:80"],
      ["FWD"],
    );
    const s = shadowing(filter(["-A INPUT -p tcp -m tcp --dport 9000 -j DROP"]), {
      ...at(1),
      nat,
      interfaces: ["eth0", "eth1"],
    });
    expect(s?.packets).toBe("tcp 9000 on eth1");
    expect(s?.path).toBe("nat PREROUTING:1 -> FWD:1");
  });
});
