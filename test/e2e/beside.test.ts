// Issue 16, "How it must be shown": what is beside iptables on a host, under the real `pulumi` CLI.
// - an nftables host: the distribution's `table inet filter` with policy drop beside iptables-nft;
// - a Docker-like host: a container network namespace behind a bridge inside the lab host, the nat and
//   filter rules as dockerd writes them (test/fixtures/scenarios.ts "docker", after moby's own
//   iptables docs), a published port.
// The kernel judges: probes from the workstation, the client namespace. Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/beside.test.ts
import { execFile, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "../lab/lab";
import type { LabHost } from "../lab/lab";
import type { CliResult, PulumiProject } from "../pulumi";
import { programProject, removeProjects, setRules } from "./program";

const all = (r: CliResult) => r.stdout + r.stderr;
async function ok(r: Promise<CliResult>): Promise<CliResult> {
  const res = await r;
  expect(res.code, all(res)).toBe(0);
  return res;
}
const stateOf = async (p: PulumiProject, name: string): Promise<any> =>
  (await p.resources()).find((x) => String(x.urn).endsWith(`::${name}`))?.outputs;

/** `nc -z` from the workstation, optionally from one of its addresses: open, or timeout. */
function probe(host: string, port: number, from?: string): Promise<"open" | "timeout" | string> {
  return new Promise((resolve) =>
    execFile("nc", ["-vz", "-w", "2", ...(from ? ["-s", from] : []), host, String(port)], (err, _o, stderr) =>
      resolve(!err ? "open" : /timed out|in progress/i.test(stderr) ? "timeout" : stderr.trim()),
    ),
  );
}

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create();
});
afterAll(async () => {
  removeProjects();
  await lab?.destroy();
});

const INET_FILTER = `table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		tcp dport 22 accept
	}
}
`;

describe("an nftables host: table inet filter with policy drop beside iptables-nft", () => {
  let h: LabHost;
  let p: PulumiProject;
  beforeAll(async () => {
    h = await lab.addHost({ listen: { tcp: [8080] } });
    const r = await h.exec(["nft", "-f", "-"], INET_FILTER);
    expect(r.code, r.stderr).toBe(0);
    p = await programProject("nft", h, [{ name: "allow", args: { port: 8080, action: "ACCEPT" } }]);
  });

  it("an iptables ACCEPT reports effective: false naming the nft chain, and the probe agrees", async () => {
    const up = await ok(p.up());
    expect(all(up)).toContain("does not open tcp 8080");
    expect(all(up)).toContain("nft inet filter input (hook input) drops");
    const s = await stateOf(p, "allow");
    expect(s.effective).toBe(false);
    expect(s.shadowedBy.ipv4).toBe(
      "nft inet filter input (hook input) drops: the chain's policy drop drops new tcp connections to port 8080",
    );
    expect((await h.save(4)).split("\n").filter((l) => l.includes("--dport 8080"))).toHaveLength(1);
    expect(await probe(h.v4, 8080)).toBe("timeout");
  });

  it("after the nft table accepts the port, refresh reports effective and the probe connects; destroy", async () => {
    const r = await h.exec(["nft", "add", "rule", "inet", "filter", "input", "tcp", "dport", "8080", "accept"]);
    expect(r.code, r.stderr).toBe(0);
    await ok(p.refresh());
    const s = await stateOf(p, "allow");
    expect(s.effective).toBe(true);
    expect(s.shadowedBy).toEqual({});
    expect(await probe(h.v4, 8080)).toBe("open");
    await ok(p.destroy());
    expect((await h.save(4)).split("\n").filter((l) => l.includes("--dport 8080"))).toEqual([]);
  });
});
