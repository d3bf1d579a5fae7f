// Under the real pulumi CLI: after `pulumi up`, another sshd with another host key takes the host's
// address (or the jump host's). Each later run is a new provider process: refresh, an up that
// replaces the rule, and destroy must each refuse it inside the handshake, naming both keys, and the
// impostor's sshd (LogLevel VERBOSE) must see no authentication attempt: no password, no key offered.
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AUTH_ATTEMPT, LAB_PASSWORD } from "../lab/lab";
import type { Impostor, Lab, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { all, ok, stateOf, useLab } from "./harness";
import { programProject, setRules } from "./program";

let lab: Lab;
let target: LabHost;
let jump: LabHost;
useLab(async (l) => {
  lab = l;
  [target, jump] = await Promise.all([lab.addHost(), lab.addHost()]);
  // The jump host reaches the target through the workstation.
  writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
  await jump.sh(`ip route replace 198.18.${target.slot}.0/24 via ${jump.clientV4}`);
  await target.sh(`ip route replace 198.18.${jump.slot}.0/24 via ${target.clientV4}`);
});

/** Runs refresh, an up that replaces the rule, and destroy while `impostor` holds the address. */
async function refusedThrice(p: PulumiProject, name: string, real: LabHost, impostor: Impostor) {
  const runs = {
    refresh: await p.refresh(),
    "up (a replacement)": await (async () => {
      await setRules(p, name, [{ name: "app", args: { port: 2261, action: "ACCEPT", ipVersion: "ipv4" } }]);
      return p.up();
    })(),
    destroy: await p.destroy(),
  };
  for (const [what, r] of Object.entries(runs)) {
    const out = all(r);
    expect(r.code, `${what}: ${out}`).not.toBe(0);
    expect(out, what).toMatch(
      new RegExp(`host key verification failed for [a-z-]+@${real.v4.replace(/\./g, "\\.")}:22`),
    );
    expect(out, what).toContain(impostor.fingerprint);
    expect(out, what).toContain(real.hostKeyFingerprint);
    expect(out, what).toMatch(/before any password or key was sent/);
    expect(out, what).toMatch(/set\s+hostKey to it/);
  }
  const log = impostor.log();
  expect(log.match(/Connection from/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
  expect(log).not.toMatch(AUTH_ATTEMPT);
}

describe("an impostor takes the address after pulumi up", () => {
  it("of the host: refresh, up (replacement) and destroy are refused before any credential is sent", async () => {
    const name = "impostor";
    const p = await programProject(name, target, [
      { name: "app", args: { port: 2260, action: "ACCEPT", ipVersion: "ipv4" } },
    ]);
    // A password as well as the key: neither may reach the impostor.
    await p.must([
      "config",
      "set",
      "--secret",
      `${name}:connection`,
      "--",
      JSON.stringify({ ...target.connection(), password: LAB_PASSWORD }),
    ]);
    await ok(p.up());
    expect((await p.outputs()).rules.app.hostKeyFingerprint).toBe(target.hostKeyFingerprint);
    const impostor = await target.impersonate();
    try {
      await refusedThrice(p, name, target, impostor);
    } finally {
      await impostor.leave();
    }
    // The real host back: the rule is still there, and destroy removes it.
    expect((await target.iptables(4, ["-S", "INPUT"])).stdout).toContain("--dport 2260");
    await ok(p.destroy());
    expect((await target.iptables(4, ["-S", "INPUT"])).stdout).not.toContain("--dport 2260");
  });

  it("of the jump host: its key, recorded at create, is required the same way", async () => {
    const name = "jumpimpostor";
    const p = await programProject(name, target, [
      { name: "app", args: { port: 2260, action: "ACCEPT", ipVersion: "ipv4" } },
    ]);
    const via = { ...target.connection(), proxy: { ...jump.connection("sudo"), password: LAB_PASSWORD } };
    await p.must(["config", "set", "--secret", `${name}:connection`, "--", JSON.stringify(via)]);
    await ok(p.up());
    const res = { outputs: await stateOf(p, "app") };
    expect(res.outputs.hostKeyFingerprint).toBe(target.hostKeyFingerprint);
    expect(res.outputs.proxyHostKeyFingerprint).toBe(jump.hostKeyFingerprint);
    const impostor = await jump.impersonate();
    try {
      await refusedThrice(p, name, jump, impostor);
    } finally {
      await impostor.leave();
    }
    await ok(p.destroy());
    expect((await target.iptables(4, ["-S", "INPUT"])).stdout).not.toContain("--dport 2260");
  });
});
