// Issue 23, "How it must be shown": PortRule under the real `pulumi` CLI on a Shorewall host. The lab
// host's namespace runs the real Shorewall 5.2.8 and shorewall6 (Debian's packages, unpacked, behind
// private mounts: test/lab/managers.ts) with the package's two-interfaces router example: net on eth0
// (policy DROP), loc on eth1 (a second link with a client of its own, test/lab/second-link.ts; policy
// REJECT), INPUT dispatching `-i eth0 -j net-fw`, `-i eth1 -j <loc>`. Added: SSH and 8081 accepted
// from net (the provider comes in over eth0), 8082 from loc, and (IPv4) a DNAT of net's 8083 to a loc
// host. An ACCEPT of 8080 (dropped on eth0, rejected on eth1), DROPs of 8081 and 8082 (each accepted on
// one interface), both families: they go above the zone dispatch and probes from a client on each
// interface prove them; a DROP of 8083, which Shorewall DNATs elsewhere, is placed but said not
// effective at up and refresh, naming Shorewall's DNAT; refresh says effective with packets counted for
// the others; destroy leaves the ruleset exactly as Shorewall wrote it.
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/shorewall.test.ts
import { afterAll, describe, expect, it } from "vitest";
import { shorewall } from "../fixtures/manager-samples";
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

const RULES: ProgramRule[] = [
  { name: "open8080", args: { port: 8080, action: "ACCEPT", ipVersion: "both" } },
  { name: "close8081", args: { port: 8081, action: "DROP", ipVersion: "both" } },
  { name: "close8082", args: { port: 8082, action: "DROP", ipVersion: "both" } },
  { name: "close8083", args: { port: 8083, action: "DROP", ipVersion: "ipv4" } },
];
const EFFECTIVE = ["open8080", "close8081", "close8082"];
const ADDED = "SSH(ACCEPT)\tnet\t\t$FW\nACCEPT\t\tnet\t\t$FW\t\ttcp\t8081\nACCEPT\t\tloc\t\t$FW\t\ttcp\t8082";
const DNAT = "DNAT\t\tnet\t\tloc:198.19.250.2\ttcp\t8083";

// Shorewall's DNAT of net's 8083: a DROP of 8083 in INPUT never sees those packets.
const DNAT_8083 =
  "nat PREROUTING: -A PREROUTING -i eth0 -p tcp -m tcp --dport 8083 -j DNAT --to-destination 198.19.250.2 " +
  "(sends tcp 8083 on eth0 to 198.19.250.2 through FORWARD: they never reach INPUT; write the rule in FORWARD, " +
  "DOCKER-USER on a Docker host, or the chain of the tool that made the DNAT, matching the port the client " +
  "asked for: -m conntrack --ctorigdstport 8083 --ctdir ORIGINAL)";

useLab(async (l) => {
  const found = managersRoot();
  if ("missing" in found) throw new Error(`the Shorewall e2e test needs Shorewall: ${found.missing}`);
  lab = l;
  h = await lab.addHost({ backend: "nf_tables", listen: { tcp: [8080, 8081, 8082, 8083] } });
  eth1 = await addSecondLink(h);
  const body = [
    ...shorewall("shorewall", "two-interfaces", `${ADDED}\n${DNAT}`),
    ...shorewall("shorewall6", "two-interfaces", ADDED),
  ];
  const r = await h.exec(managerArgv(found.root, body));
  if (r.code !== 0) throw new Error(`starting Shorewall in ${h.name} failed (exit ${r.code}): ${r.stderr}`);
  p = await programProject("shorewall", h, RULES);
}, 180_000);

afterAll(async () => {
  await eth1?.remove();
});

/** What a client on each interface sees of `port`, v4 and v6. */
const seen = (port: number) => seenOnBoth(lab, h, eth1, port);
const each = onBoth;

/** What the clients see of the three ports the effective rules are about. */
const ports = async () => ({ 8080: await seen(8080), 8081: await seen(8081), 8082: await seen(8082) });
const SHOREWALL = {
  8080: each("timeout", "refused"),
  8081: each("open", "refused"),
  8082: each("timeout", "open"),
};

describe("PortRule on a Shorewall host (Shorewall 5.2.8 two-interfaces example, nf_tables)", () => {
  it("opens and closes ports the zones of eth0 and eth1 treat differently, v4 and v6; a DNAT-ed port; refresh; destroy exact", async () => {
    for (const f of FAMILIES) {
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      expect(input[0], `v${f}: Shorewall's zone dispatch comes first`).toBe("-A INPUT -i eth0 -j net-fw");
      expect(input[1], `v${f}`).toMatch(/^-A INPUT -i eth1 -j \S+$/);
    }
    expect(await h.save(4, { table: "nat" })).toContain(
      "-A PREROUTING -i eth0 -p tcp -m tcp --dport 8083 -j DNAT --to-destination 198.19.250.2",
    );
    expect(await ports(), "before up").toEqual(SHOREWALL);
    const before = await rulesets(h);

    const up = await ok(p.up());
    expect(all(up)).toContain(`(ipv4): no line of INPUT makes it effective: ${DNAT_8083}`);
    const out = (await p.outputs()).rules;
    for (const f of FAMILIES) {
      const n = f === 4 ? "ipv4" : "ipv6";
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      const dispatch = input.indexOf("-A INPUT -i eth0 -j net-fw") + 1;
      for (const name of EFFECTIVE) {
        const at = input.findIndex((l) => l.includes(out[name].tag)) + 1;
        expect(at, `${name} v${f}: ${input.join("\n")}`).toBeGreaterThan(0);
        expect(at, `${name} v${f} goes above Shorewall's -i eth0 -j net-fw`).toBeLessThan(dispatch);
        expect(out[name].insertedAt[n]).toBe(at);
        expect(out[name].effective, `${name}: ${JSON.stringify(out[name].shadowedBy)}`).toBe(true);
      }
    }
    expect(await ports(), "after up").toEqual({
      8080: each("open", "open"),
      8081: each("timeout", "timeout"),
      8082: each("timeout", "timeout"),
    });
    expect(out.close8083.effective).toBe(false);
    expect(out.close8083.shadowedBy.ipv4).toBe(DNAT_8083);

    await ok(p.refresh());
    const forwarded = await stateOf(p, "close8083");
    expect(forwarded.effective).toBe(false);
    expect(forwarded.shadowedBy.ipv4).toBe(DNAT_8083);
    for (const name of EFFECTIVE) {
      const s = await stateOf(p, name);
      expect(s.effective, `${name}: ${JSON.stringify(s.shadowedBy)}`).toBe(true);
      expect(s.counters.ipv4.packets, name).toBeGreaterThan(0);
      expect(s.counters.ipv6.packets, name).toBeGreaterThan(0);
    }

    await ok(p.destroy());
    expect(await rulesets(h), "destroy leaves the ruleset exactly as Shorewall wrote it").toEqual(before);
    expect(await ports(), "after destroy").toEqual(SHOREWALL);
  }, 600_000);
});
