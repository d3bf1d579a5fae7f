// Issue 20, item 3, under the real pulumi CLI: on a default-DROP host whose hand-made SSH accept is in
// the boot files, a PortRule adopting it (persist false) beside another PortRule with persist: true
// keeps the boot files accepting SSH, after up and after destroy: judged by the lockout guard's model
// on rules.v4 and by a reboot (the tables flushed, rules.v4 loaded by netfilter-persistent) and a real
// connection to sshd. And a save whose boot file would no longer let the provider in, where the live
// ruleset does, is refused: the change undone, rules.v4 as it was. Run inside the lab:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/boot-ssh.test.ts
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import { sshFate } from "../../provider/host/lockout";
import { parseRuleset } from "../../provider/rules";
import { all, ok, stateOf, useLab } from "./harness";
import { programProject, setRules } from "./program";

const HAND_MADE_SSH = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT";
const DEFAULT_DROP = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
${HAND_MADE_SSH}
COMMIT
`;
const SSH = { name: "ssh", args: { port: 22, action: "ACCEPT", ipVersion: "ipv4", adopt: true } };
const APP = { name: "app", args: { port: 8080, action: "ACCEPT", ipVersion: "ipv4", persist: true } };

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** The host's rules.v4 as the host sees it, or "" if absent. */
const rulesV4 = (h: LabHost) => {
  const f = join(h.etcIptables, "rules.v4");
  return existsSync(f) ? readFileSync(f, "utf8") : "";
};

/** INPUT as `iptables -S` lists it, without the policy line. */
const input = async (h: LabHost) =>
  (await h.iptables(4, ["-S", "INPUT"])).stdout.split("\n").filter((l) => l.startsWith("-A "));

/** rules.v4 judged by the model: does it accept new SSH connections from the provider's address? */
const bootAcceptsSsh = (h: LabHost) => sshFate(parseRuleset(rulesV4(h)), { clientAddress: h.clientV4, serverPort: 22 });

/** A reboot (tables flushed, /run emptied, rules.v4 loaded), then sshd must answer from the provider's address. */
async function rebootAndConnect(h: LabHost): Promise<void> {
  await h.reboot();
  expect(await input(h)).toContain(HAND_MADE_SSH);
  expect(await lab.probe(h, 22)).toBe("open");
}

describe("issue 20.3: boot files keep SSH", () => {
  it("an adopted SSH accept (persist false) stays in rules.v4 beside a persisted rule, after up and after destroy", async () => {
    const h = await lab.addHost({ rules: { v4: DEFAULT_DROP }, listen: { tcp: [8080] } });
    await h.sh("netfilter-persistent save"); // the operator's boot files hold the hand-made rule
    expect(rulesV4(h)).toContain(`${HAND_MADE_SSH}\n`);
    const p = await programProject("boot-ssh", h, [SSH, APP]);

    await ok(p.up());
    const ssh = await stateOf(p, "ssh");
    const app = await stateOf(p, "app");
    expect(ssh.adopted.ipv4).toMatchObject({ line: 3, rule: HAND_MADE_SSH });
    expect(await input(h)).toContain(ssh.rules.ipv4);
    // The files hold the hand-made rule as it was (untagged), and the persisted rule.
    expect(rulesV4(h)).toContain(`${HAND_MADE_SSH}\n`);
    expect(rulesV4(h)).not.toContain(ssh.tag);
    expect(rulesV4(h)).toContain(app.tag);
    expect(bootAcceptsSsh(h)).toEqual({ accepted: true, by: HAND_MADE_SSH });
    await rebootAndConnect(h);
    expect(await lab.probe(h, 8080)).toBe("open");

    // After the reboot the hand-made rule is back untagged: refresh drops the adoption, up adopts it again.
    await ok(p.refresh());
    await ok(p.up());
    const again = await stateOf(p, "ssh");
    expect(again.adopted.ipv4).toMatchObject({ line: 3, rule: HAND_MADE_SSH });

    // Destroy gives the hand-made rule back (persist false: it was lent) and removes the persisted one.
    const destroyed = await ok(p.destroy());
    expect(all(destroyed)).toContain(`gave back: line 3 holds the hand-made rule again (${HAND_MADE_SSH})`);
    expect(await input(h)).toEqual([
      "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-A INPUT -i lo -j ACCEPT",
      HAND_MADE_SSH,
    ]);
    expect(rulesV4(h)).toContain(`${HAND_MADE_SSH}\n`);
    expect(rulesV4(h)).not.toContain(app.tag);
    expect(bootAcceptsSsh(h)).toEqual({ accepted: true, by: HAND_MADE_SSH });
    await rebootAndConnect(h);
    expect(await lab.probe(h, 8080, { timeoutSec: 1 })).toBe("timeout");
  });

  it("refuses a save whose rules.v4 would lock SSH out where the live ruleset lets it in, and undoes it", async () => {
    const h = await lab.addHost({ rules: { v4: DEFAULT_DROP }, listen: { tcp: [8080] } });
    // SSH accepted live only by a runtime-only PortRule (the hand-made accept removed by hand).
    const p = await programProject("boot-lockout", h, [
      { name: "ssh", args: { port: 22, action: "ACCEPT", ipVersion: "ipv4" } },
    ]);
    await ok(p.up());
    const ssh = await stateOf(p, "ssh");
    await h.iptables(4, ["-D", ...HAND_MADE_SSH.split(" ").slice(1)]);
    expect(await input(h)).toContain(ssh.rules.ipv4);
    const before = { live: await h.ruleset(4), file: rulesV4(h) };

    await setRules(p, "boot-lockout", [{ name: "ssh", args: { port: 22, action: "ACCEPT", ipVersion: "ipv4" } }, APP]);
    const up = await p.up();
    expect(up.code).not.toBe(0);
    const said = all(up).replace(/\s+/g, " ");
    expect(said).toContain(
      `was refused: /etc/iptables/rules.v4 as this save wrote it (the ruleset the host loads at boot) would lock the provider out of the host: new SSH connections from ${h.clientV4} to port 22 are accepted now (by ${ssh.rules.ipv4}), and would then be refused (by the INPUT policy DROP)`,
    );
    expect(said).toContain("so the change was undone (a listing shows it) and /etc/iptables/rules.v4 and");
    expect(said).toContain("were put back as they were");
    expect(await h.ruleset(4)).toBe(before.live);
    expect(rulesV4(h)).toBe(before.file);
    expect((await p.resources()).map((r) => String(r.urn).split("::").pop())).not.toContain("app");
  });
});
