// Issue 24, items 2 and 4, as the user meets them under the real CLI:
// - the README's block example (no ipVersion) blocks the port over IPv4 and IPv6, probed from the client
//   namespace; a stack whose rule was created when ipVersion defaulted to ipv4 is neither replaced nor
//   changed by the upgrade, and preview warns that IPv6 still reaches the port;
// - refresh says what another tool changed: a rule moved and shadowed by a DROP inserted above it, a family
//   deleted, a rule deleted altogether; `pulumi up --refresh` brings the counters into the stack outputs.
// Run inside the lab, after `npm run build`:
//   bash test/lab/in-lab.sh npx vitest run test/e2e/refresh.test.ts
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { all, EMPTY, FAMILIES, ok, stateOf, useLab } from "./harness";
import { programProject as project, type ProgramRule as Rule, setRules } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** The README's first two examples, as written there. */
const README: Rule[] = [
  { name: "allow-app", args: { port: 2222, action: "ACCEPT", ipVersion: "both" } },
  { name: "block-admin", args: { port: 8080, action: "DROP", comment: "old admin UI" } },
];

/** Each family's result of a probe of `port`. */
const probes = async (h: LabHost, port: number) =>
  Object.fromEntries(await Promise.all(FAMILIES.map(async (f) => [`v${f}`, await lab.probe(h, port, { family: f })])));

describe("the README's examples on a host with IPv6", () => {
  let h: LabHost;
  let p: PulumiProject;
  beforeAll(async () => {
    h = await lab.addHost({ rules: { v4: EMPTY, v6: EMPTY }, listen: { tcp: [2222, 8080, 8081] } });
    p = await project("readme", h, README);
  }, 120_000);

  it("block-admin (no ipVersion) blocks 8080 over IPv4 and IPv6; other ports stay open", async () => {
    expect(await probes(h, 8080)).toEqual({ v4: "open", v6: "open" });
    await ok(p.up());
    const out = (await p.outputs()).rules;
    expect(Object.keys(out["block-admin"].rules)).toEqual(["ipv4", "ipv6"]);
    expect(await probes(h, 8080)).toEqual({ v4: "timeout", v6: "timeout" });
    expect(await probes(h, 8081)).toEqual({ v4: "open", v6: "open" });
    expect(await probes(h, 2222)).toEqual({ v4: "open", v6: "open" });
  }, 120_000);

  it("refresh says how many packets each rule counted; up --refresh brings the counters into the outputs", async () => {
    const refresh = await ok(p.refresh());
    const s = await stateOf(p, "block-admin");
    expect(s.packets).toBeGreaterThan(0);
    expect(all(refresh)).toContain(
      `block-admin: the rule on INPUT of ${h.v4} (DROP tcp 8080) counted ${s.packets} packets since the last refresh: ` +
        `${s.packets} packets, ${s.bytes} bytes in all`,
    );
    // Nothing moved it (allow-app may have: block-admin goes to the top, and may go in after it).
    expect(all(refresh)).not.toMatch(/block-admin: [^\n]*(moved|missing|gone|not in effect)/);
    expect((await p.outputs()).rules["block-admin"].packets).toBe(0); // refresh leaves the stack outputs as they were
    await lab.probe(h, 8080, { family: 6 });
    await ok(p.up(["--refresh"]));
    const outs = (await p.outputs()).rules["block-admin"];
    expect(outs.packets).toBeGreaterThan(s.packets);
    expect(outs.counters.ipv6.packets).toBeGreaterThan(0);
  }, 120_000);

  it("refresh warns, naming the resource, when another tool moves, shadows or deletes a rule", async () => {
    const before = await stateOf(p, "allow-app");
    const block = await stateOf(p, "block-admin");
    // Another tool: a DROP of 2222 at the top of IPv4's INPUT, block-admin's IPv6 rule deleted.
    expect((await h.iptables(4, ["-I", "INPUT", "1", "-p", "tcp", "--dport", "2222", "-j", "DROP"])).code).toBe(0);
    expect((await h.iptables(6, ["-D", "INPUT", ...splitRule(block.rules.ipv6)])).code).toBe(0);
    const refresh = await ok(p.refresh());
    const s = await stateOf(p, "allow-app");
    const allow = `allow-app: the rule on INPUT of ${h.v4} (ACCEPT tcp 2222)`;
    expect(s.shadowedBy.ipv4).toContain("-A INPUT -p tcp -m tcp --dport 2222 -j DROP");
    const text = all(refresh);
    expect(text).toContain(
      `${allow} moved from line ${before.line.ipv4} to line ${before.line.ipv4 + 1} (ipv4): rules above it were ` +
        `inserted or deleted (inserted at line ${before.insertedAt.ipv4}: ${before.placement.ipv4})`,
    );
    expect(text).toContain(
      `${allow} is not in effect (ipv4): ${s.shadowedBy.ipv4}; its packets are decided there, not by this rule`,
    );
    expect(text).toContain(
      `block-admin: the rule on INPUT of ${h.v4} (DROP tcp 8080) is missing in ipv6: deleted by hand or by another tool. ` +
        "The next pulumi up replaces the rule",
    );
    // Which of the two went in first decides their order: allow-app's IPv6 rule moved up only if
    // block-admin's was above it.
    const v6move = `${allow} moved from line ${before.line.ipv6} to line ${before.line.ipv6 - 1} (ipv6)`;
    if (block.line.ipv6 < before.line.ipv6)
      expect(text).toContain(
        `${v6move}: rules above it were inserted or deleted (inserted at line ${before.insertedAt.ipv6}: ${before.placement.ipv6})`,
      );
    else expect(text).not.toMatch(/allow-app: [^\n]*moved [^\n]*\(ipv6\)/);
    expect(text).not.toMatch(/allow-app: [^\n]*not in effect \(ipv6\)/);
    expect(text).not.toMatch(/block-admin: [^\n]*fewer packets/); // the missing family says why
    expect(await probes(h, 2222)).toEqual({ v4: "timeout", v6: "open" });
    expect(await probes(h, 8080)).toEqual({ v4: "timeout", v6: "open" });

    // The rule deleted altogether: refresh drops it from state and says so.
    expect((await h.iptables(4, ["-D", "INPUT", "1"])).code).toBe(0);
    for (const f of FAMILIES)
      expect((await h.iptables(f, ["-D", "INPUT", ...splitRule(s.rules[`ipv${f}`])])).code).toBe(0);
    const gone = await ok(p.refresh());
    expect(all(gone)).toContain(
      `${allow} is gone (ipv4, ipv6): deleted by hand or by another tool. Refresh drops it from state; the next pulumi up creates it again`,
    );
    expect(await stateOf(p, "allow-app")).toBeUndefined();

    // up puts back what is gone and missing; both ports answer as the program says again.
    await ok(p.up());
    expect(await probes(h, 8080)).toEqual({ v4: "timeout", v6: "timeout" });
    expect(await probes(h, 2222)).toEqual({ v4: "open", v6: "open" });
    await ok(p.destroy());
    expect(await probes(h, 8080)).toEqual({ v4: "open", v6: "open" });
  }, 240_000);
});

describe("a stack whose DROP was created when ipVersion defaulted to ipv4", () => {
  it("is neither replaced nor changed by the upgrade, and preview says IPv6 still reaches the port", async () => {
    const h = await lab.addHost({ rules: { v4: EMPTY, v6: EMPTY }, listen: { tcp: [8080] } });
    const block: Rule = { name: "block-admin", args: { port: 8080, action: "DROP" } };
    const p = await project("former", h, [{ ...block, args: { ...block.args, ipVersion: "ipv4" } }]);
    await ok(p.up());
    // The state a version before the default changed wrote: no `defaults`, ipVersion ipv4.
    const state = await p.state();
    for (const r of state.deployment.resources)
      for (const part of [r.inputs, r.outputs]) if (part) for (const k of ["defaults", "__defaults"]) delete part[k];
    const file = join(p.dir, "former-state.json");
    writeFileSync(file, JSON.stringify(state));
    await p.must(["stack", "import", "--file", file]);
    await setRules(p, "former", [block]);

    const preview = await ok(p.preview(["--expect-no-changes"]));
    expect(all(preview)).toContain(
      `block-admin: DROP of tcp 8080 on ${h.v4} was created when ipVersion defaulted to ipv4 and stays ipv4, so the port ` +
        `is still reachable over IPv6: set ipVersion: "both" to block IPv6 too (replaces the rule), or ipVersion: "ipv4" ` +
        "to keep it as it is",
    );
    await ok(p.up(["--expect-no-changes"]));
    expect(await probes(h, 8080)).toEqual({ v4: "timeout", v6: "open" });
    await ok(p.destroy());
  }, 180_000);
});

/** A rule as `iptables -S` prints it, without `-A CHAIN`, as argv (quoted comments kept whole). */
function splitRule(rule: string): string[] {
  const words = rule.match(/"[^"]*"|\S+/g) ?? [];
  return words.slice(2).map((w) => w.replace(/^"(.*)"$/, "$1"));
}
