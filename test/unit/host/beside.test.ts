import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { besideListing, besideWant, judgeBeside } from "../../../provider/host/beside";
import { framed, limitsFor, preamble } from "../../../provider/host/protocol";
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

describe("judgeBeside: the host's nft tables, from what besideListing prints (and the nat table it lists for placement)", () => {
  it("lists nft where it exists and nat per family without loading it on a legacy host", () => {
    const script = besideListing([4, 6]);
    expect(script).toContain("nft -j list ruleset");
    expect(script).toContain("grep -qx nat /proc/net/ip6_tables_names");
    expect(script).toContain("nat=$(ip6tables -w 5 -t nat -S)");
    // Only what is asked for: nat alone for a DROP on INPUT, nothing for other chains.
    expect(besideListing([4], besideWant([{ chain: "INPUT", target: "DROP" }]))).not.toContain("nft");
    expect(besideListing([4], besideWant([{ chain: "FORWARD", target: "ACCEPT" }]))).toBe("");
  });

  it("on an iptables-nft host lists the nft tables but iptables' own, and the nat table", () => {
    // Commands that answer as an iptables-nft host with Docker and an inet table that drops would.
    const bin = mkdtempSync(join(tmpdir(), "pit-beside-"));
    const calls = join(bin, "calls");
    const fake = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> ${calls}\n${body}`);
      chmodSync(join(bin, name), 0o755);
    };
    try {
      const drop = nft("inet-filter-drop").out.trim().replace(/\n/g, "");
      fake(
        "iptables",
        `case "$*" in
  --version) echo "iptables v1.8.9 (nf_tables)" ;;
  "-w 5 -t nat -S") printf '%s\\n' '-P PREROUTING ACCEPT' '-N DOCKER' '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER' '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80' ;;
esac`,
      );
      fake(
        "nft",
        `case "$*" in
  "list chains") printf '%s\\n' 'table ip filter {' '	chain INPUT {' '		type filter hook input priority filter; policy accept;' '	}' '}' 'table ip nat {' '}' 'table ip6 filter {' '}' 'table inet filter {' '	chain input {' '		type filter hook input priority filter; policy drop;' '	}' '}' ;;
  "-j list table inet filter") cat <<'EOF2'
${drop}
EOF2
;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac`,
      );
      const script = framed(`${preamble(limitsFor(10, 30))}${besideListing([4])}`);
      const env = { PATH: `${bin}:/usr/bin:/bin` };
      const sections = script.parse(execFileSync("/bin/sh", ["-c", script.script], { encoding: "utf8", env }));
      expect(sections.nft.code, sections.nft.err).toBe(0);
      // The nat table as iptables-save prints it, for placement (Docker's DNAT is judged there).
      expect(sections.nat4.out).toContain(
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
      );
      const b = judge(sections);
      expect(b.blockedBy).toMatch(/^nft inet filter input \(hook input\) drops/);
      expect(b.warnings.join("\n")).toMatch(/nft inet filter input \(hook input\) drops/);
      // iptables' own tables are never listed through nft (on a Kubernetes node they hold every rule).
      const made = readFileSync(calls, "utf8");
      expect(made).toContain("nft -j list table inet filter");
      expect(made).not.toMatch(/nft -j list (ruleset|table ip6? (filter|nat))/);
      expect(made).not.toMatch(/iptables-save/);
      // Which tables there are comes from nft list chains, which fetches no rules (nft list tables does).
      expect(made).not.toContain("nft list tables");
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
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

  it("a port Docker publishes is left to placement (nat PREROUTING, test/unit/rules/docker.test.ts): nothing here", () => {
    for (const f of [4, 6] as const) {
      expect(judge({ [`nat${f}`]: docker(f) }, DROP_8080, "INPUT", f)).toEqual({ warnings: [] });
      expect(judge({ [`nat${f}`]: docker(f) }, ACCEPT_8080, "INPUT", f)).toEqual({ warnings: [] });
    }
  });
});
