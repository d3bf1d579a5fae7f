// Issue 5, "How it must be shown": PortRule under the real `pulumi` CLI (local file backend) against
// lab hosts, for both iptables backends and both families. No mocks: real sshd, real iptables, real
// traffic probes from the workstation namespace. Run inside the lab, after `npm run build`:
//   bash test/lab/in-lab.sh npx vitest run test/e2e/portrule.test.ts
import { beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { all, ALLOW_GUIDE, EMPTY, FAMILIES, ok, rulesets, stateOf, useLab } from "./harness";
import { programProject as project, type ProgramRule as Rule, setRules } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

describe.each(["nf_tables", "legacy"] as const)("PortRule end to end (%s)", (backend) => {
  describe("the allow guide: policy DROP, [ESTABLISHED,RELATED accept; lo accept]", () => {
    let h: LabHost;
    let p: PulumiProject;
    const allow: Rule[] = [
      { name: "allow", args: { port: 2222, protocol: "tcp", action: "ACCEPT", ipVersion: "both" } },
    ];
    beforeAll(async () => {
      h = await lab.addHost({
        backend,
        rules: { v4: ALLOW_GUIDE, v6: ALLOW_GUIDE },
        listen: { tcp: [2222] },
        ssh: "lo",
      });
      p = await project("allow", h, allow);
    });

    it("up of ACCEPT tcp 2222 goes to line 3, clients connect on v4 and v6, refresh counts packets", async () => {
      for (const f of FAMILIES)
        expect(await lab.probe(h, 2222, { family: f, timeoutSec: 2 }), `v${f} before up`).toBe("timeout");
      const before = await rulesets(h);

      await ok(p.up());
      const out = (await p.outputs()).rules.allow;
      expect(out.insertedAt).toEqual({ ipv4: 3, ipv6: 3 });
      expect(out.backend).toMatch(backend === "nf_tables" ? /nf_tables/ : /legacy/);
      expect(out.listening).toBe(true);
      expect(out.hostKeyFingerprint).toBe(h.hostKeyFingerprint);
      for (const f of FAMILIES) {
        const lines = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT"));
        expect(lines[2], `v${f}: ${lines.join("\n")}`).toContain("--dport 2222");
        expect(lines[2]).toContain(out.tag);
      }

      for (const f of FAMILIES)
        expect(await lab.probe(h, 2222, { family: f, timeoutSec: 2 }), `v${f} after up`).toBe("open");

      await ok(p.refresh());
      const s = await stateOf(p, "allow");
      expect(s.packets).toBeGreaterThan(0);
      expect(s.counters.ipv4.packets).toBeGreaterThan(0);
      expect(s.counters.ipv6.packets).toBeGreaterThan(0);
      expect(s.line).toEqual({ ipv4: 3, ipv6: 3 });
      expect(s.effective).toBe(true);

      // A broader DROP inserted by hand above our ACCEPT (below lo, which carries the provider's SSH).
      for (const f of FAMILIES) expect((await h.iptables(f, ["-I", "INPUT", "3", "-j", "DROP"])).code).toBe(0);
      await ok(p.refresh());
      const shadowed = await stateOf(p, "allow");
      expect(shadowed.effective).toBe(false);
      expect(shadowed.shadowedBy.ipv4).toContain("-j DROP");
      expect(shadowed.shadowedBy.ipv6).toContain("-j DROP");
      expect(shadowed.line).toEqual({ ipv4: 4, ipv6: 4 });
      for (const f of FAMILIES) expect((await h.iptables(f, ["-D", "INPUT", "-j", "DROP"])).code).toBe(0);

      await ok(p.destroy());
      expect(await p.resources()).toHaveLength(0);
      expect(await rulesets(h)).toEqual(before);
      for (const f of FAMILIES)
        expect(await lab.probe(h, 2222, { family: f, timeoutSec: 2 }), `v${f} after destroy`).toBe("timeout");
    });
  });

  describe("the block guide: empty chain", () => {
    let h: LabHost;
    let p: PulumiProject;
    const drop: Rule[] = [{ name: "block", args: { port: 8080, action: "DROP", ipVersion: "both" } }];
    beforeAll(async () => {
      h = await lab.addHost({ backend, rules: { v4: EMPTY, v6: EMPTY }, listen: { tcp: [8080, 8081] } });
      p = await project("block", h, drop);
    });

    it("preview shows the rule and leaves the host untouched; DROP times out, REJECT refuses; destroy restores the ruleset", async () => {
      const before = await rulesets(h);
      for (const f of FAMILIES) expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 })).toBe("open");

      const preview = await ok(p.preview());
      expect(preview.stdout).toContain("--dport 8080");
      expect(preview.stdout).toMatch(/-j DROP/);
      expect(await rulesets(h)).toEqual(before);
      expect(await p.resources()).toHaveLength(0);

      await ok(p.up());
      const out = (await p.outputs()).rules.block;
      expect(out.insertedAt).toEqual({ ipv4: 1, ipv6: 1 });
      for (const f of FAMILIES) {
        expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 with DROP`).toBe("timeout");
        expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 }), `v${f} 8081 with DROP`).toBe("open");
      }

      await setRules(p, "block", [
        { name: "block", args: { ...drop[0].args, action: "REJECT", rejectWith: "tcp-reset" } },
      ]);
      const up2 = await ok(p.up());
      expect(up2.stdout).toMatch(/replace/);
      const out2 = (await p.outputs()).rules.block;
      expect(out2.tag).not.toBe(out.tag);
      for (const f of FAMILIES) {
        const t0 = Date.now();
        expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 }), `v${f} 8080 with REJECT`).toBe("refused");
        expect(Date.now() - t0).toBeLessThan(1500);
        expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 })).toBe("open");
        const ours = (await h.save(f)).split("\n").filter((l) => l.includes("--dport 8080"));
        expect(ours, `v${f}: the replaced rule is gone, only the new one is there`).toHaveLength(1);
        expect(ours[0]).toContain("tcp-reset");
      }

      await ok(p.destroy());
      expect(await p.resources()).toHaveLength(0);
      expect(await rulesets(h)).toEqual(before);
      for (const f of FAMILIES) expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 })).toBe("open");
    });

    it("a hand-made rule identical to ours except the tag survives up and destroy", async () => {
      const args = { port: 9090, action: "DROP", ipVersion: "both" };
      await setRules(p, "block", [{ name: "twin", args }]);
      // The exact form iptables -S prints for our rule, with another comment.
      const handmade = [
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "9090",
        "-m",
        "comment",
        "--comment",
        "handmade",
        "-j",
        "DROP",
      ];
      for (const f of FAMILIES) expect((await h.iptables(f, ["-A", "INPUT", ...handmade])).code).toBe(0);
      const before = await rulesets(h);

      await ok(p.up());
      const out = (await p.outputs()).rules.twin;
      for (const f of FAMILIES) {
        const fam = f === 4 ? "ipv4" : "ipv6";
        // Identical except the tag: replacing our comment by "handmade" gives the hand-made rule.
        const ours = String(out.rules[fam]).replace(/--comment ("[^"]*"|\S+)/, "--comment handmade");
        expect(ours).toBe(`-A INPUT ${handmade.join(" ")}`);
        expect((await h.save(f)).split("\n").filter((l) => l.includes("--dport 9090"))).toHaveLength(2);
      }

      await ok(p.destroy());
      expect(await rulesets(h)).toEqual(before);
      for (const f of FAMILIES) {
        const left = (await h.save(f)).split("\n").filter((l) => l.includes("--dport 9090"));
        expect(left).toEqual([`-A INPUT ${handmade.join(" ")}`]);
        expect((await h.iptables(f, ["-D", "INPUT", ...handmade])).code).toBe(0);
      }
    });

    it("a rule deleted by hand leaves the state at refresh", async () => {
      await setRules(p, "block", [{ name: "gone", args: { port: 9191, action: "DROP", ipVersion: "both" } }]);
      const before = await rulesets(h);
      await ok(p.up());
      const out = (await p.outputs()).rules.gone;
      expect(await p.resources()).toHaveLength(1);
      for (const f of FAMILIES) {
        const text = String(out.rules[f === 4 ? "ipv4" : "ipv6"]);
        expect(text).toMatch(/^-A INPUT /);
        const del = await h.exec([
          "sh",
          "-c",
          `${f === 4 ? "iptables" : "ip6tables"} -w 5 ${text.replace(/^-A /, "-D ")}`,
        ]);
        expect(del.code, del.stderr).toBe(0);
      }
      expect(await rulesets(h)).toEqual(before);

      await ok(p.refresh());
      expect(await p.resources()).toHaveLength(0);
      // Nothing left to destroy, and destroy still succeeds.
      await ok(p.destroy());
      expect(await rulesets(h)).toEqual(before);
    });
  });
});

// Error cases: one backend is enough.
describe("PortRule errors (nft)", () => {
  let h: LabHost;
  let other: LabHost;
  let p: PulumiProject;
  beforeAll(async () => {
    [h, other] = await Promise.all([
      lab.addHost({ backend: "nf_tables", rules: { v4: EMPTY, v6: EMPTY }, listen: { tcp: [8081] } }),
      lab.addHost({ backend: "nf_tables" }),
    ]);
    p = await project("errs", h, []);
  });

  it.each([
    ["port", { port: 70000, action: "DROP" }, /70000|65535/],
    ["source", { port: 8081, action: "DROP", source: "10.0.0.0/33" }, /10\.0\.0\.0\/33|\/33/],
    ["rejectWith", { port: 8081, action: "ACCEPT", rejectWith: "tcp-reset" }, /REJECT/],
    ["comment", { port: 8081, action: "DROP", comment: '"; reboot #' }, /comment/],
  ])("bad %s: preview fails naming the property, the host is untouched", async (prop, args, detail) => {
    const before = await rulesets(h);
    await setRules(p, "errs", [{ name: "bad", args: { ipVersion: "both", ...args } }]);
    const r = await p.preview();
    expect(r.code, all(r)).not.toBe(0);
    expect(all(r)).toMatch(new RegExp(`\\b${prop}\\b`));
    expect(all(r)).toMatch(detail);
    expect(all(r)).not.toMatch(/TypeError|at Object\.|at async/);
    const up = await p.up();
    expect(up.code, all(up)).not.toBe(0);
    expect(await rulesets(h)).toEqual(before);
    expect(await p.resources()).toHaveLength(0);
  });

  it.each([
    [
      "wrong host key",
      () => ({ ...h.connection(), hostKey: other.hostKey }),
      (out: string) => {
        // Names the key the host presented, by its fingerprint, and the one expected.
        expect(out).toMatch(/host key verification failed/i);
        expect(out).toContain(h.hostKeyFingerprint);
        expect(out).toContain(other.hostKeyFingerprint);
      },
    ],
    [
      "unreachable host",
      () => ({ ...h.connection(), port: 2, dialErrorLimit: 2 }),
      (out: string) => {
        expect(out).toMatch(/failed/i);
        expect(out).toMatch(/ECONNREFUSED|refused/i);
        // Each failed dial is logged through Pulumi's log, then it gives up after dialErrorLimit.
        expect(out).toMatch(/Dial 1\/2 to \S+:2 failed/);
      },
    ],
    [
      "sudo without NOPASSWD",
      () => ({ ...h.connection("nopasswd"), sudo: true }),
      (out: string) => {
        expect(out).toMatch(/sudo on \S+ asks for a password: pit-nopw needs passwordless sudo for \/bin\/sh/);
        expect(out).toMatch(/NOPASSWD: \/bin\/sh/);
      },
    ],
  ])("%s: up fails with a clear error and the host is unchanged", async (_what, conn, assertMessage) => {
    const before = await rulesets(h);
    await setRules(p, "errs", [
      { name: "r", args: { port: 8081, action: "DROP", ipVersion: "both" }, connection: conn() },
    ]);
    const t0 = Date.now();
    const up = await p.up();
    expect(up.code, all(up)).not.toBe(0);
    assertMessage(all(up));
    expect(Date.now() - t0, "a clear error, not a hang").toBeLessThan(60_000);
    expect(await rulesets(h)).toEqual(before);
    expect(await p.resources()).toHaveLength(0);
  });

  it("sudo with NOPASSWD works", async () => {
    const before = await rulesets(h);
    await setRules(p, "errs", [
      {
        name: "r",
        args: { port: 8081, action: "DROP", ipVersion: "both" },
        connection: { ...h.connection("sudo"), sudo: true },
      },
    ]);
    await ok(p.up());
    expect((await p.outputs()).rules.r.insertedAt).toEqual({ ipv4: 1, ipv6: 1 });
    for (const f of FAMILIES) expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 })).toBe("timeout");
    await ok(p.destroy());
    expect(await rulesets(h)).toEqual(before);
    for (const f of FAMILIES) expect(await lab.probe(h, 8081, { family: f, timeoutSec: 2 })).toBe("open");
  });
});
