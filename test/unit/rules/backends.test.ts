/** Both iptables backends at once (provider/rules/backends.ts), seen through placeRule and shadowing. */
import { describe, expect, it } from "vitest";
import { parseRuleset, placeRule, shadowing } from "../../../provider/rules";

const filter = (policy: string, rules: string[]) =>
  parseRuleset(
    ["*filter", `:INPUT ${policy} [0:0]`, ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ...rules, "COMMIT", ""].join(
      "\n",
    ),
  );
const rule = (port: number, action: string) => ["-p", "tcp", "-m", "tcp", "--dport", String(port), "-j", action];

describe("the other backend's tables", () => {
  it("an ACCEPT the legacy policy drops is not effective, and the reason names the legacy tables", () => {
    const other = {
      backend: "legacy" as const,
      ruleset: filter("DROP", ["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"]),
    };
    const placed = placeRule(filter("ACCEPT", []), {
      table: "filter",
      chain: "INPUT",
      rule: rule(8080, "ACCEPT"),
      other,
    });
    expect(placed.effective).toBe(false);
    expect(placed.shadowedBy?.why).toBe(
      "the legacy tables (the kernel applies them too): INPUT:end -> policy DROP (-P INPUT DROP) drops tcp 8080",
    );
    // The port it admits: effective.
    expect(
      placeRule(filter("ACCEPT", []), { table: "filter", chain: "INPUT", rule: rule(22, "ACCEPT"), other }).effective,
    ).toBe(true);
  });

  it("a DROP is effective whatever the other accepts; beside its REJECT either may answer first", () => {
    const rs = filter("ACCEPT", ["-A INPUT -p tcp -m tcp --dport 8080 -j DROP"]);
    const accepts = { backend: "nf_tables" as const, ruleset: filter("ACCEPT", []) };
    expect(shadowing(rs, { table: "filter", chain: "INPUT", line: 1, other: accepts })).toBeUndefined();
    const rejects = {
      backend: "nf_tables" as const,
      ruleset: filter("ACCEPT", ["-A INPUT -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset"]),
    };
    expect(shadowing(rs, { table: "filter", chain: "INPUT", line: 1, other: rejects })?.why).toMatch(
      /^the nf_tables tables \(the kernel applies them too\): INPUT:1 \(.*\) rejects tcp 8080$/,
    );
  });
});
