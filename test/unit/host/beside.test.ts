import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { besideListing, judgeBeside } from "../../../provider/host/beside";
import type { Sections } from "../../../provider/host/protocol";
import { parseSpec } from "../../../provider/rules";
import { ROOT, readFamilyFile } from "../../fixtures/captures";

const nft = (name: string) => ({ code: 0, out: readFileSync(join(ROOT, "nft", `${name}.json.txt`), "utf8"), err: "" });
const docker = (f: 4 | 6) => ({ code: 0, out: readFamilyFile("nf_tables", f, "docker/save.txt"), err: "" });
const spec = (text: string) => parseSpec(text.split(" "));
const ACCEPT_8080 = spec("-p tcp -m tcp --dport 8080 -m comment --comment pulumi-iptables:a/b/c/abcd1234 -j ACCEPT");
const DROP_8080 = spec("-p tcp -m tcp --dport 8080 -j DROP");
const host = { backend: "nf_tables" as const, name: "198.18.1.2" };
const judge = (sections: Sections, s = ACCEPT_8080, chain = "INPUT", f: 4 | 6 = 4) =>
  judgeBeside(sections, f, { table: "filter", chain, spec: s }, host);

describe("judgeBeside: Docker and the host's nft tables, from what besideListing prints", () => {
  it("lists nft where it exists and nat per family without loading it on a legacy host", () => {
    const script = besideListing([4, 6]);
    expect(script).toContain("nft -j list ruleset");
    expect(script).toContain("grep -qx nat /proc/net/ip6_tables_names");
    expect(script).toContain("ip6tables-save -t nat");
  });

  it("an nft table with policy drop: an ACCEPT is not effective, naming the table and chain", () => {
    const b = judge({ nft: nft("inet-filter-drop") });
    expect(b.blockedBy).toBe(
      "nft inet filter input (hook input) drops: the chain's policy drop drops new tcp connections to port 8080",
    );
    expect(b.warnings[0]).toMatch(
      /does not open tcp 8080 on 198\.18\.1\.2 by itself.*accept the port in that nft chain too/,
    );
    expect(judge({ nft: nft("inet-filter-accept") })).toEqual({ warnings: [] });
  });

  it("a DROP is not judged against nft; nor are chains other than INPUT; no nft is nothing", () => {
    expect(judge({ nft: nft("inet-filter-drop") }, DROP_8080)).toEqual({ warnings: [] });
    expect(judge({ nft: nft("inet-filter-drop") }, ACCEPT_8080, "FORWARD")).toEqual({ warnings: [] });
    expect(judge({ nft: { code: 127, out: "", err: "" } })).toEqual({ warnings: [] });
  });

  it("an nft that fails or prints something else counts as may drop", () => {
    expect(judge({ nft: { code: 1, out: "", err: "Operation not permitted" } }).blockedBy).toMatch(
      /listing the ruleset failed \(exit 1: Operation not permitted\), so its tables may drop/,
    );
    expect(judge({ nft: { code: 0, out: "table inet filter {", err: "" } }).blockedBy).toMatch(
      /cannot read the nft ruleset/,
    );
  });

  it("a port Docker publishes: the INPUT rule warns and is not effective, in both families", () => {
    for (const f of [4, 6] as const) {
      const b = judge({ [`nat${f}`]: docker(f) }, DROP_8080, "INPUT", f);
      expect(b.blockedBy).toMatch(
        /^nat PREROUTING -> DOCKER: -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT/,
      );
      expect(b.warnings[0]).toMatch(/^Docker publishes tcp 8080 on 198\.18\.1\.2 .* write chain: "DOCKER-USER"/);
    }
    expect(judge({ nat4: docker(4) }, spec("-p tcp -m tcp --dport 2222 -j DROP"))).toEqual({ warnings: [] });
  });
});
