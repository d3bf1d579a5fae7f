// Issue 23, "How it must be shown": PortRule under the real `pulumi` CLI on a firewalld-zones host: the
// real firewalld 1.3.3 (Debian's package, test/lab/firewalld.ts) runs in the host's namespace with
// FirewallBackend=iptables, the public zone bound to eth0 (ssh, 9090/tcp) and the internal zone bound
// to eth1 (ssh and its defaults, 8080/tcp, a forward-port of 8443). An ACCEPT of 8080 (which public
// rejects) and a DROP of 9090 (which public allows), both families: probes from a client on each
// interface prove both; a DROP of 8443, which the internal zone forwards elsewhere, is placed but
// said not effective at up and refresh, naming firewalld's DNAT; refresh says effective with packets
// counted for the other two; destroy leaves the ruleset exactly as firewalld wrote it (firewalld
// still running).
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/firewalld.test.ts
import { afterAll, describe, expect, it } from "vitest";
import { firewalldStart, zoneCommands } from "../lab/firewalld";
import type { Lab, LabHost } from "../lab/lab";
import { managerArgv, managersRoot } from "../lab/managers";
import { addSecondLink, type SecondLink } from "../lab/second-link";
import type { PulumiProject } from "../pulumi";
import { all, FAMILIES, ok, onBoth, rulesets, seenOnBoth, stateOf, useLab } from "./harness";
import { programProject, type ProgramRule } from "./program";

let lab: Lab;
let h: LabHost;
let eth1: SecondLink;
let p: PulumiProject;

// firewalld's forward-port in the internal zone (eth1): a DROP of 8443 in INPUT never sees those packets.
const DNAT_8443 =
  "nat PREROUTING -> PREROUTING_ZONES -> PRE_internal -> PRE_internal_allow: -A PRE_internal_allow -p tcp -m tcp " +
  "--dport 8443 -j DNAT --to-destination 198.19.250.2:443 (sends tcp 8443 on eth1 to 198.19.250.2:443 through " +
  "FORWARD: they never reach INPUT; write the rule in FORWARD, DOCKER-USER on a Docker host, or the chain of the " +
  "tool that made the DNAT, matching the port the client asked for: -m conntrack --ctorigdstport 8443 --ctdir ORIGINAL)";

const RULES: ProgramRule[] = [
  { name: "open8080", args: { port: 8080, action: "ACCEPT", ipVersion: "both" } },
  { name: "close9090", args: { port: 9090, action: "DROP", ipVersion: "both" } },
  { name: "close8443", args: { port: 8443, action: "DROP", ipVersion: "ipv4" } },
];

useLab(async (l) => {
  const found = managersRoot();
  if ("missing" in found) throw new Error(`the firewalld e2e test needs firewalld: ${found.missing}`);
  lab = l;
  h = await lab.addHost({ backend: "nf_tables", listen: { tcp: [8080, 9090] } });
  eth1 = await addSecondLink(h);
  // REJECT's ICMP errors are rate-limited per peer: a probe must never see a REJECT as a DROP
  await h.sh("sysctl -q -w net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0");
  const zones = zoneCommands([
    { zone: "public", iface: "eth0", ports: ["9090/tcp"] },
    {
      zone: "internal",
      iface: "eth1",
      ports: ["8080/tcp"],
      forwardPorts: ["port=8443:proto=tcp:toport=443:toaddr=198.19.250.2"],
    },
  ]);
  const r = await h.exec(managerArgv(found.root, firewalldStart(zones)));
  if (r.code !== 0) throw new Error(`starting firewalld in ${h.name} failed (exit ${r.code}): ${r.stderr}`);
  p = await programProject("firewalld", h, RULES);
}, 120_000);

afterAll(async () => {
  await eth1?.remove();
});

/** What a client on each interface sees of `port`, v4 and v6. */
const seen = (port: number) => seenOnBoth(lab, h, eth1, port);
const each = onBoth;

describe("PortRule on a firewalld host (firewalld 1.3.3, iptables backend, zones on eth0 and eth1)", () => {
  it("opens the port the eth0 zone rejects and closes one it allows, on both interfaces, v4 and v6; refresh; destroy exact", async () => {
    for (const f of FAMILIES) {
      const save = await h.save(f);
      expect(save).toContain("-A INPUT_ZONES -i eth0 -g IN_public");
      expect(save).toContain("-A INPUT_ZONES -i eth1 -g IN_internal");
    }
    expect(await h.save(4, { table: "nat" })).toContain(
      "-A PRE_internal_allow -p tcp -m tcp --dport 8443 -j DNAT --to-destination 198.19.250.2:443",
    );
    expect(await seen(8080), "8080 before up").toEqual(each("refused", "open"));
    expect(await seen(9090), "9090 before up").toEqual(each("open", "refused"));
    const before = await rulesets(h);

    const up = await ok(p.up());
    expect(all(up)).toContain(`(ipv4): no line of INPUT makes it effective: ${DNAT_8443}`);
    const out = (await p.outputs()).rules;
    for (const f of FAMILIES) {
      const n = f === 4 ? "ipv4" : "ipv6";
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      const zonesLine = input.indexOf("-A INPUT -j INPUT_ZONES") + 1;
      for (const name of ["open8080", "close9090"]) {
        const at = input.findIndex((l) => l.includes(out[name].tag)) + 1;
        expect(at, `${name} v${f}: ${input.join("\n")}`).toBeGreaterThan(0);
        expect(at, `${name} v${f} goes above -j INPUT_ZONES`).toBeLessThan(zonesLine);
        expect(out[name].insertedAt[n]).toBeLessThan(zonesLine);
        expect(out[name].effective, `${name}: ${JSON.stringify(out[name].shadowedBy)}`).toBe(true);
      }
    }
    expect(await seen(8080), "8080 after up").toEqual(each("open", "open"));
    expect(await seen(9090), "9090 after up").toEqual(each("timeout", "timeout"));

    expect(out.close8443.effective).toBe(false);
    expect(out.close8443.shadowedBy.ipv4).toBe(DNAT_8443);
    expect(await lab.probe(h, 8443, { timeoutSec: 2 }), "8443 from eth0 after up: the DROP decides").toBe("timeout");

    await ok(p.refresh());
    const forwarded = await stateOf(p, "close8443");
    expect(forwarded.effective).toBe(false);
    expect(forwarded.shadowedBy.ipv4).toBe(DNAT_8443);
    for (const name of ["open8080", "close9090"]) {
      const s = await stateOf(p, name);
      expect(s.effective, `${name}: ${JSON.stringify(s.shadowedBy)}`).toBe(true);
      expect(s.counters.ipv4.packets, name).toBeGreaterThan(0);
      expect(s.counters.ipv6.packets, name).toBeGreaterThan(0);
    }

    await ok(p.destroy());
    expect(await rulesets(h)).toEqual(before);
    expect(await seen(8080), "8080 after destroy").toEqual(each("refused", "open"));
    expect(await seen(9090), "9090 after destroy").toEqual(each("open", "refused"));
  }, 600_000);
});
