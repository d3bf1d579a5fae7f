/** The other iptables backend's tables in the listing (provider/host/second.ts). */
import { describe, expect, it } from "vitest";
import { secondOf, secondScript } from "../../../provider/host/second";

describe("the other backend's tables", () => {
  it("lists legacy only where the kernel has its filter table loaded, nft through its own -save", () => {
    const script = secondScript([4, 6]);
    expect(script).toContain("grep -qx filter /proc/net/ip6_tables_names");
    expect(script).toContain("exec ip6tables-legacy-save -t filter");
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
});
