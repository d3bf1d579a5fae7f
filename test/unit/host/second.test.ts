/** The other iptables backend's tables in the listing (provider/host/second.ts). */
import { describe, expect, it } from "vitest";
import { secondOf, secondScript } from "../../../provider/host/second";

describe("the other backend's tables", () => {
  it("lists legacy only where the kernel has its filter or nat table loaded, nft through its own -save", () => {
    const script = secondScript([4, 6]);
    expect(script).toContain("for t in filter nat; do");
    expect(script).toContain('grep -qx "$t" /proc/net/ip6_tables_names');
    expect(script).toContain('ip6tables-legacy-save -t "$t" || exit 1');
    expect(script).toContain("exec iptables-nft-save");
  });

  it("reads a filter table where one was printed, naming the other backend", () => {
    const save = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    const other = secondOf(
      { second4: { code: 0, out: save, err: "" }, second6: { code: 0, out: "", err: "" } },
      "nf_tables",
    );
    expect(other?.[4]?.backend).toBe("legacy");
    expect(other?.[4]?.ruleset.tables.get("filter")?.chains.get("INPUT")?.policy).toBe("DROP");
    expect(other?.[6]).toBeUndefined();
    expect(secondOf({ second4: { code: 127, out: "", err: "" } }, "legacy")).toBeUndefined();
  });

  it("reads the other backend's nat table, alone or after its filter table", () => {
    const nat =
      "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 8081\nCOMMIT\n";
    const filter = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    const other = secondOf(
      { second4: { code: 0, out: nat, err: "" }, second6: { code: 0, out: filter + nat, err: "" } },
      "nf_tables",
    );
    expect(other?.[4]?.ruleset.tables.get("nat")?.chains.get("PREROUTING")?.rules).toHaveLength(1);
    expect([...(other?.[6]?.ruleset.tables.keys() ?? [])]).toEqual(["filter", "nat"]);
  });
});
