// Under the real pulumi CLI: the lockout guard, the "nothing listens" warning, the serialized
// provider (small, no absolute path), destroy by a newer build of the package than the one that
// created the stack, and the host key recorded at create being required afterwards.
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import { ROOT, packedPackage } from "../pulumi";
import { EMPTY, stateOf, useLab } from "./harness";
import { programProject, type ProgramRule } from "./program";
import * as lifecycle from "../../provider/provider";
import { HostKeyError, closeAll, forgetPins } from "../../provider/ssh";

const CHAIN =
  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
let lab: Lab;
let host: LabHost;
useLab(async (l) => {
  lab = l;
  // An empty filter table loaded at start: on nf_tables the table exists only once something creates it.
  host = await lab.addHost({ ssh: "lo", listen: { tcp: [2222] }, rules: { v4: EMPTY, v6: EMPTY } });
});
afterAll(() => closeAll());

const project = (name: string, rules: ProgramRule[], withPackage: boolean | string = true) =>
  programProject(name, host, rules, withPackage);

describe("safety", () => {
  it("refuses a DROP that would cut off the provider's own SSH session; lets one through that cannot", async () => {
    const before = await host.ruleset(4);
    const p = await project("lockout", [{ name: "ssh", args: { port: 22, action: "DROP", ipVersion: "ipv4" } }]);
    const up = await p.up();
    expect(up.code).not.toBe(0);
    expect(up.stdout + up.stderr).toMatch(/would match the provider's own SSH connection .*allowLockout: true/s);
    expect(await host.ruleset(4)).toBe(before);
    expect(await p.resources()).toHaveLength(0);
    // This rule only matches eth0, and this provider comes in on the host's loopback: the guard reads the
    // interface from the host's route back to the provider (ip route get), so it cannot cut the session and
    // goes ahead without allowLockout (before issue 23's guard it was refused, and needed the opt-in).
    await p.must([
      "config",
      "set",
      "lockout:rules",
      "--",
      JSON.stringify([{ name: "ssh", args: { port: 22, action: "DROP", ipVersion: "ipv4", inInterface: "eth0" } }]),
    ]);
    const ok = await p.up();
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout + ok.stderr).not.toMatch(/allowLockout is set|would match the provider's own SSH connection/);
    expect((await host.iptables(4, ["-S", "INPUT"])).stdout).toMatch(/-i eth0 -p tcp -m tcp --dport 22 .* -j DROP/);
    expect((await p.destroy()).code).toBe(0);
    expect(await host.ruleset(4)).toBe(before);
  });

  it("warns when nothing listens on an opened port, and says so in `listening`", async () => {
    const p = await project("listen", [
      { name: "served", args: { port: 2222, action: "ACCEPT", ipVersion: "ipv4" } },
      { name: "idle", args: { port: 2399, action: "ACCEPT", ipVersion: "ipv4" } },
    ]);
    const up = await p.up();
    expect(up.code, up.stdout + up.stderr).toBe(0);
    expect(up.stdout).toMatch(/nothing listens on tcp 2399/);
    expect(up.stdout).not.toMatch(/nothing listens on tcp 2222/);
    const out = (await p.outputs()).rules;
    expect([out.served.listening, out.idle.listening]).toEqual([true, false]);
    expect((await p.destroy()).code).toBe(0);
  });

  it("keeps the serialized provider small and free of this machine's paths; a newer build destroys the stack", async () => {
    const old = await packedPackage();
    const p = await project(
      "upgrade",
      [{ name: "app", args: { port: 2222, action: "ACCEPT", ipVersion: "both" } }],
      old,
    );
    expect((await p.up()).code).toBe(0);
    const [res] = await p.resources();
    const text: string = res.inputs.__provider;
    expect(text.length).toBeLessThan(2048);
    expect(text).toContain('require("pulumi-iptables/dist/provider');
    for (const path of [ROOT, "/tmp/", "/root/", p.dir]) expect(text).not.toContain(path);
    const tag = (await p.outputs()).rules.app.tag;
    expect((await host.iptables(4, ["-S", "INPUT"])).stdout).toContain(tag);

    // A newer build of the package, installed over the old one: its delete says who it is.
    const newerDir = mkdtempSync(join(ROOT, ".lab", "newer-"));
    const newer = join(newerDir, "package");
    cpSync(old, newer, { recursive: true });
    const pkg = JSON.parse(readFileSync(join(newer, "package.json"), "utf8"));
    writeFileSync(join(newer, "package.json"), JSON.stringify({ ...pkg, version: "99.0.0" }));
    appendFileSync(
      join(newer, "dist", "provider.js"),
      `\nconst __remove = exports.remove;\nexports.remove = async (...a) => { require("@pulumi/pulumi").log.info("pulumi-iptables 99.0.0 deleting"); return __remove(...a); };\n`,
    );
    cpSync(newer, join(p.dir, "node_modules", "pulumi-iptables"), { recursive: true, force: true });
    const destroy = await p.destroy();
    expect(destroy.code, destroy.stdout + destroy.stderr).toBe(0);
    expect(destroy.stdout).toContain("pulumi-iptables 99.0.0 deleting");
    expect((await host.iptables(4, ["-S", "INPUT"])).stdout).not.toContain(tag);
    expect((await host.iptables(6, ["-S", "INPUT"])).stdout).not.toContain(tag);
    rmSync(newerDir, { recursive: true, force: true });
  });

  it("replacing a rule by an identical one (up --replace) keeps the new rule: the tags differ", async () => {
    const p = await project("replace", [{ name: "app", args: { port: 2222, action: "ACCEPT", ipVersion: "ipv4" } }]);
    expect((await p.up()).code).toBe(0);
    const [recorded] = await p.resources();
    const before = { outputs: await stateOf(p, "app") };
    const replaced = await p.up(["--replace", recorded.urn]);
    expect(replaced.code, replaced.stdout + replaced.stderr).toBe(0);
    const after = { outputs: await stateOf(p, "app") };
    expect(after.outputs.tag).not.toBe(before.outputs.tag);
    const chain = (await host.iptables(4, ["-S", "INPUT"])).stdout;
    expect(chain).toContain(after.outputs.tag);
    expect(chain).not.toContain(before.outputs.tag);
    expect((await p.destroy()).code).toBe(0);
    expect((await host.iptables(4, ["-S", "INPUT"])).stdout).not.toContain("--dport 2222");
  });

  it("ipVersion both: when the IPv6 half fails, the IPv4 half is removed again", async () => {
    const h = await lab.addHost({ rules: { v4: CHAIN, v6: CHAIN } });
    // An ip6tables-restore that refuses everything, first on root's PATH, inside this host only.
    await h.sh(
      `mkdir -p /run/broken && printf '#!/bin/sh\\necho "ip6tables-restore: line 2 failed (lab fault)" >&2\\nexit 1\\n' > /run/broken/ip6tables-restore && chmod +x /run/broken/ip6tables-restore && mount --bind /run/broken /usr/local/sbin`,
    );
    const before = [await h.ruleset(4), await h.ruleset(6)];
    const { inputs } = await lifecycle.check(
      {},
      {
        connection: h.connection(),
        port: 8443,
        action: "ACCEPT",
        ipVersion: "both",
        identity: { project: "t", stack: "t", name: "half" },
      },
    );
    await expect(lifecycle.create(inputs as never)).rejects.toThrow(
      /ip6tables-restore .* refused the change: .*lab fault.*the IPv4 half was undone, and a listing shows none of it on the host/s,
    );
    expect([await h.ruleset(4), await h.ruleset(6)]).toEqual(before);
  });

  it("requires the host key seen at create from then on", async () => {
    const { inputs, failures } = await lifecycle.check(
      {},
      {
        connection: host.connection(),
        port: 2230,
        action: "ACCEPT",
        ipVersion: "ipv4",
        identity: { project: "t", stack: "t", name: "pinned" },
      },
    );
    expect(failures).toEqual([]);
    const created = await lifecycle.create(inputs as never);
    const outs = lifecycle.fromStored<lifecycle.PortRuleState>(created.outs); // recorded with hidden keys under __
    expect(outs.hostKeyFingerprint).toBe(host.hostKeyFingerprint);
    const forged = { ...outs, hostKeyFingerprint: `SHA256:${"A".repeat(43)}` };
    await expect(lifecycle.read(created.id, forged)).rejects.toThrow(/host key/i);
    await expect(lifecycle.remove(created.id, forged)).rejects.toThrow(/host key/i);
    expect((await host.iptables(4, ["-S", "INPUT"])).stdout).toContain(outs.tag);
    // The forged state pinned a second key to the host's address for the rest of this process: no key
    // meets both, so every connection there fails until the process ends (a new pulumi run).
    await expect(lifecycle.read(created.id, created.outs)).rejects.toThrow(HostKeyError);
    forgetPins();
    await lifecycle.remove(created.id, created.outs);
    expect((await host.iptables(4, ["-S", "INPUT"])).stdout).not.toContain(outs.tag);
  });
});
