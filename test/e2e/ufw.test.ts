// Issue 11, "How it must be shown": PortRule under the real `pulumi` CLI on a lab host where the real
// ufw (Debian's package, test/lab/ufw.ts) is enabled with `ufw allow 22/tcp`, `ufw deny 8080/tcp`,
// `ufw allow 9090/tcp`. An ACCEPT of the port ufw denies and a DROP of a port ufw allows, both
// families: probes prove both; refresh says effective with packets counted; a contrary rule put
// above by hand makes refresh say effective: false and name it; destroy gives back ufw's ruleset.
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/ufw.test.ts
import { describe, expect, it } from "vitest";
import type { Family, Lab, LabHost } from "../lab/lab";
import { ufwRoot, ufwScript } from "../lab/ufw";
import type { PulumiProject } from "../pulumi";
import { FAMILIES, ok, rulesets, stateOf, useLab } from "./harness";
import { programProject, type ProgramRule } from "./program";

const chainPrefix = (f: Family) => (f === 4 ? "ufw" : "ufw6");

let lab: Lab;
let h: LabHost;
let p: PulumiProject;

const RULES: ProgramRule[] = [
  { name: "open8080", args: { port: 8080, action: "ACCEPT", ipVersion: "both" } },
  { name: "close9090", args: { port: 9090, action: "DROP", ipVersion: "both" } },
];

useLab(async (l) => {
  const found = ufwRoot();
  if ("missing" in found) throw new Error(`the ufw e2e test needs ufw: ${found.missing}`);
  lab = l;
  h = await lab.addHost({ backend: "nf_tables", listen: { tcp: [8080, 9090] } });
  const script = ufwScript(found.root, ["ufw allow 22/tcp", "ufw deny 8080/tcp", "ufw allow 9090/tcp"]);
  const r = await h.exec(["unshare", "--mount", "sh", "-c", script]);
  if (r.code !== 0) throw new Error(`enabling ufw in ${h.name} failed (exit ${r.code}): ${r.stderr}`);
  p = await programProject("ufw", h, RULES);
}, 120_000);

describe("PortRule on a ufw host (ufw 0.36.2, nf_tables)", () => {
  it("opens the port ufw denies and closes one it allows, v4 and v6; refresh, a contrary rule by hand, destroy", async () => {
    for (const f of FAMILIES) {
      expect(await h.save(f)).toContain(`-A ${chainPrefix(f)}-user-input -p tcp -m tcp --dport 8080 -j DROP`);
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 before up`).toBe("timeout");
      expect(await lab.probe(h, 9090, { family: f, timeoutSec: 2 }), `v${f} 9090 before up`).toBe("open");
    }
    const before = await rulesets(h);

    await ok(p.up());
    const out = (await p.outputs()).rules;
    for (const f of FAMILIES) {
      const n = f === 4 ? "ipv4" : "ipv6";
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      const ufwLine = input.indexOf(`-A INPUT -j ${chainPrefix(f)}-before-input`) + 1;
      for (const name of ["open8080", "close9090"]) {
        const at = input.findIndex((l) => l.includes(out[name].tag)) + 1;
        expect(at, `${name} v${f}: ${input.join("\n")}`).toBeGreaterThan(0);
        expect(at, `${name} v${f} goes above -j ${chainPrefix(f)}-before-input`).toBeLessThan(ufwLine + 1);
        expect(out[name].insertedAt[n]).toBeLessThanOrEqual(ufwLine);
        expect(out[name].effective).toBe(true);
      }
      expect(out.open8080.placement[n]).toContain(`-A ${chainPrefix(f)}-user-input -p tcp -m tcp --dport 8080 -j DROP`);
      expect(out.close9090.placement[n]).toContain(
        `-A ${chainPrefix(f)}-user-input -p tcp -m tcp --dport 9090 -j ACCEPT`,
      );
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 after up`).toBe("open");
      expect(await lab.probe(h, 9090, { family: f, timeoutSec: 2 }), `v${f} 9090 after up`).toBe("timeout");
    }

    await ok(p.refresh());
    for (const name of ["open8080", "close9090"]) {
      const s = await stateOf(p, name);
      expect(s.effective, `${name}: ${JSON.stringify(s.shadowedBy)}`).toBe(true);
      expect(s.counters.ipv4.packets, name).toBeGreaterThan(0);
      expect(s.counters.ipv6.packets, name).toBeGreaterThan(0);
    }

    // A hand-made DROP of 8080 above everything: our ACCEPT is no longer effective, and refresh names it.
    for (const f of FAMILIES)
      expect(
        (await h.iptables(f, ["-I", "INPUT", "1", "-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "DROP"])).code,
      ).toBe(0);
    await ok(p.refresh());
    const shadowed = await stateOf(p, "open8080");
    expect(shadowed.effective).toBe(false);
    for (const n of ["ipv4", "ipv6"])
      expect(shadowed.shadowedBy[n]).toBe(
        "INPUT:1 (-A INPUT -p tcp -m tcp --dport 8080 -j DROP) drops tcp 8080 on eth0",
      );
    expect((await stateOf(p, "close9090")).effective).toBe(true);
    for (const f of FAMILIES)
      expect(
        (await h.iptables(f, ["-D", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "DROP"])).code,
      ).toBe(0);

    await ok(p.destroy());
    expect(await rulesets(h)).toEqual(before);
    for (const f of FAMILIES) {
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 after destroy`).toBe("timeout");
      expect(await lab.probe(h, 9090, { family: f, timeoutSec: 2 }), `v${f} 9090 after destroy`).toBe("open");
    }
  }, 600_000);
});
