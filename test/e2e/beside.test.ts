// Issue 16, "How it must be shown": what is beside iptables on a host, under the real `pulumi` CLI.
// - an nftables host: the distribution's `table inet filter` with policy drop beside iptables-nft;
// - a Docker-like host: a container network namespace behind a bridge inside the lab host, the nat and
//   filter rules as dockerd writes them (test/fixtures/scenarios.ts "docker", after moby's own
//   iptables docs), a published port.
// The kernel judges: probes from the workstation, the client namespace. Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/beside.test.ts
import { execFile, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { SCENARIOS } from "../fixtures/scenarios";
import { all, ok, stateOf, useLab } from "./harness";
import { programProject, setRules } from "./program";

/** `nc -z` from the workstation, optionally from one of its addresses: open, or timeout. */
function probe(host: string, port: number, from?: string): Promise<"open" | "timeout" | string> {
  return new Promise((resolve) =>
    execFile("nc", ["-vz", "-w", "2", ...(from ? ["-s", from] : []), host, String(port)], (err, _o, stderr) =>
      resolve(!err ? "open" : /timed out|in progress/i.test(stderr) ? "timeout" : stderr.trim()),
    ),
  );
}

let lab: Lab;
useLab((l) => {
  lab = l;
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
    p = await programProject("nft", h, [{ name: "allow", args: { port: 8080, action: "ACCEPT", ipVersion: "ipv4" } }]);
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

describe("a Docker-like host: a container behind a bridge, Docker's nat and filter rules, 8080 published to its port 80", () => {
  let h: LabHost;
  let p: PulumiProject;
  let container: number | undefined;
  let second: string;
  let before: string;
  beforeAll(async () => {
    const docker = SCENARIOS.find((s) => s.name === "docker")!.rules(4);
    h = await lab.addHost({ rules: { v4: docker } });
    // The container: its own network namespace inside the lab host, on the docker0 bridge.
    await h.sh(
      [
        "ip link add docker0 type bridge",
        "ip addr add 198.19.0.1/16 dev docker0",
        "ip link set docker0 up",
        "ip netns add ctr",
        "ip link add vethc type veth peer name eth0 netns ctr",
        "ip link set vethc master docker0 up",
        "ip -n ctr addr add 198.19.0.2/16 dev eth0",
        "ip -n ctr link set eth0 up",
        "ip -n ctr link set lo up",
        "ip -n ctr route add default via 198.19.0.1",
        "sysctl -qw net.ipv4.ip_forward=1",
      ].join(" && "),
    );
    // Its service on port 80 (ended in afterAll; `timeout` ends it should this run die first).
    const child = spawn(
      "nsenter",
      ["-t", String(h.pid), "-n", "-m", "--", "ip", "netns", "exec", "ctr", "timeout", "900", "nc", "-lk", "-p", "80"],
      { stdio: "ignore", detached: true },
    );
    child.unref();
    container = child.pid;
    await h.waitFor(async () => (await probe(h.v4, 8080)) === "open", "the published port 8080 answering");
    // A second client address in the workstation: the one a source-limited ACCEPT lets in.
    second = `198.18.${h.slot}.3`;
    await new Promise<void>((resolve, reject) =>
      execFile("ip", ["addr", "add", `${second}/24`, "dev", `pv${h.slot}`], (e) => (e ? reject(e) : resolve())),
    );
    before = await h.ruleset(4);
    p = await programProject("docker", h, [{ name: "input", args: { port: 8080, action: "DROP", ipVersion: "ipv4" } }]);
  });
  afterAll(() => {
    if (container) process.kill(container, "SIGTERM");
  });

  it("a PortRule on INPUT warns that Docker bypasses INPUT, reports effective: false, and indeed blocks nothing", async () => {
    const up = await ok(p.up());
    // Docker's DNAT is judged as any DNAT in nat PREROUTING: the DROP is not effective, and why says what to write.
    expect(all(up)).toContain(
      "nat PREROUTING -> DOCKER: -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination",
    );
    expect(all(up)).toContain("never reach INPUT; write the rule in FORWARD, DOCKER-USER on a Docker host");
    const s = await stateOf(p, "input");
    expect(s.effective).toBe(false);
    expect(s.shadowedBy.ipv4).toMatch(
      /^nat PREROUTING -> DOCKER: -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT/,
    );
    expect(await probe(h.v4, 8080)).toBe("open");
  });

  it("a DOCKER-USER PortRule DROP blocks the published port, placed before Docker's RETURN", async () => {
    await setRules(p, "docker", [
      { name: "block", args: { port: 8080, action: "DROP", ipVersion: "ipv4", chain: "DOCKER-USER" } },
    ]);
    await ok(p.up());
    const s = await stateOf(p, "block");
    expect(s.rules.ipv4).toBe(
      `-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8080 --ctdir ORIGINAL -m comment --comment "${s.tag}" -j DROP`,
    );
    expect(s.insertedAt).toEqual({ ipv4: 1 });
    const chain = (await h.save(4)).split("\n").filter((l) => l.startsWith("-A DOCKER-USER"));
    expect(chain).toEqual([s.rules.ipv4, "-A DOCKER-USER -j RETURN"]);
    expect(await probe(h.v4, 8080)).toBe("timeout");
    expect(await probe(h.v4, 8080, second)).toBe("timeout");
  });

  it("an ACCEPT with source lets that one client in; destroy restores Docker's ruleset", async () => {
    await setRules(p, "docker", [
      { name: "block", args: { port: 8080, action: "DROP", ipVersion: "ipv4", chain: "DOCKER-USER" } },
      {
        name: "admin",
        args: { port: 8080, action: "ACCEPT", ipVersion: "ipv4", chain: "DOCKER-USER", source: `${second}/32` },
      },
    ]);
    await ok(p.up());
    const admin = await stateOf(p, "admin");
    expect(admin.insertedAt).toEqual({ ipv4: 1 });
    expect(admin.effective).toBe(true);
    expect(await probe(h.v4, 8080, second)).toBe("open");
    expect(await probe(h.v4, 8080)).toBe("timeout");
    await ok(p.destroy());
    expect(await h.ruleset(4)).toBe(before);
    expect(await probe(h.v4, 8080)).toBe("open");
  });
});
