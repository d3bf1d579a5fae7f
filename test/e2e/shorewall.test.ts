// Issue 23, "How it must be shown": PortRule under the real `pulumi` CLI on a Shorewall host. The lab
// host's namespace runs the real Shorewall 5.2.8 and shorewall6 (Debian's packages, unpacked, behind
// private mounts: test/lab/managers.ts) with the package's one-interface example (net on eth0, policy
// net->all DROP, ending in `-j net-fw` dispatch on eth0), SSH and 8081 accepted from net. An ACCEPT of
// 8080 (which Shorewall drops) and a DROP of 8081 (which it accepts), both families: they go above the
// zone dispatch, probes over eth0 prove both, refresh says effective with packets counted, destroy
// gives back the ruleset exactly as Shorewall wrote it.
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/shorewall.test.ts
import { describe, expect, it } from "vitest";
import { shorewall } from "../fixtures/manager-samples";
import type { Lab, LabHost } from "../lab/lab";
import { managerArgv, managersRoot } from "../lab/managers";
import type { PulumiProject } from "../pulumi";
import { FAMILIES, ok, rulesets, stateOf, useLab } from "./harness";
import { programProject, type ProgramRule } from "./program";

let lab: Lab;
let h: LabHost;
let p: PulumiProject;

const RULES: ProgramRule[] = [
  { name: "open8080", args: { port: 8080, action: "ACCEPT", ipVersion: "both" } },
  { name: "close8081", args: { port: 8081, action: "DROP", ipVersion: "both" } },
];
const SHOREWALL_RULES = "SSH(ACCEPT)\tnet\t\t$FW\nACCEPT\t\tnet\t\t$FW\t\ttcp\t8081";

useLab(async (l) => {
  const found = managersRoot();
  if ("missing" in found) throw new Error(`the Shorewall e2e test needs Shorewall: ${found.missing}`);
  lab = l;
  h = await lab.addHost({ backend: "nf_tables", listen: { tcp: [8080, 8081] } });
  const body = [
    ...shorewall("shorewall", "one-interface", SHOREWALL_RULES),
    ...shorewall("shorewall6", "one-interface", SHOREWALL_RULES),
  ];
  const r = await h.exec(managerArgv(found.root, body));
  if (r.code !== 0) throw new Error(`starting Shorewall in ${h.name} failed (exit ${r.code}): ${r.stderr}`);
  p = await programProject("shorewall", h, RULES);
}, 180_000);

describe("PortRule on a Shorewall host (Shorewall 5.2.8 one-interface example, nf_tables)", () => {
  it("opens the port Shorewall drops and closes one it accepts, v4 and v6, over eth0; refresh; destroy exact", async () => {
    for (const f of FAMILIES) {
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      expect(input[0], `v${f}: Shorewall's zone dispatch comes first`).toBe("-A INPUT -i eth0 -j net-fw");
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 before up`).toBe("timeout");
      expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 }), `v${f} 8081 before up`).toBe("open");
    }
    const before = await rulesets(h);

    await ok(p.up());
    const out = (await p.outputs()).rules;
    for (const f of FAMILIES) {
      const n = f === 4 ? "ipv4" : "ipv6";
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      const dispatch = input.indexOf("-A INPUT -i eth0 -j net-fw") + 1;
      for (const name of ["open8080", "close8081"]) {
        const at = input.findIndex((l) => l.includes(out[name].tag)) + 1;
        expect(at, `${name} v${f}: ${input.join("\n")}`).toBeGreaterThan(0);
        expect(at, `${name} v${f} goes above Shorewall's -i eth0 -j net-fw`).toBeLessThan(dispatch);
        expect(out[name].insertedAt[n]).toBe(at);
        expect(out[name].effective, `${name}: ${JSON.stringify(out[name].shadowedBy)}`).toBe(true);
      }
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 after up`).toBe("open");
      expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 }), `v${f} 8081 after up`).toBe("timeout");
    }

    await ok(p.refresh());
    for (const name of ["open8080", "close8081"]) {
      const s = await stateOf(p, name);
      expect(s.effective, `${name}: ${JSON.stringify(s.shadowedBy)}`).toBe(true);
      expect(s.counters.ipv4.packets, name).toBeGreaterThan(0);
      expect(s.counters.ipv6.packets, name).toBeGreaterThan(0);
    }

    await ok(p.destroy());
    expect(await rulesets(h), "destroy leaves the ruleset exactly as Shorewall wrote it").toEqual(before);
    for (const f of FAMILIES) {
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 after destroy`).toBe("timeout");
      expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 }), `v${f} 8081 after destroy`).toBe("open");
    }
  }, 600_000);
});
