// Confirming and saving (confirm-save.ts) against a fake shell: the boot files saved only once
// confirmed, a failed or refused save undone, the boot files' SSH check, a fresh connection that fails.
import { describe, expect, it } from "vitest";
import { insertRuleText } from "../../fixtures/listing";
import { agentOn, expectValidShell, failure, first, guide, insert, text, withRule } from "./batches";
import { FakeHost } from "./fake";
import type { StepAnswer } from "./fake";

describe("the boot files", () => {
  const persisted = { persist: true };
  it("are saved only after the confirmation; a failed save undoes the change, checked by a listing", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }, { owner: {} }),
      { arm: {}, restore4: {}, save4: { out: withRule(4, 3, persisted) } },
      { confirm: { out: "confirmed" }, persist: { code: 1, err: "mv: cannot move: Read-only file system" } },
      { restore4: {}, save4: { out: guide(4) } },
      { persist: {} },
    ]);
    const e = await failure(agentOn(host).change(insert(persisted)));
    expect(e.message).toMatch(/Read-only file system, so the change was undone \(a listing shows it\)/);
    const order = host.scripts.map((s) =>
      /pulumi-iptables\.tx.*\n[\s\S]*restore/.test(s)
        ? "apply"
        : /confirmed/.test(s)
          ? "confirm"
          : /write\(\)/.test(s)
            ? "save"
            : "other",
    );
    expect(order.slice(1, 4)).toEqual(["apply", "confirm", "other"]);
    // One step confirms, then saves only if the confirmation succeeded.
    const commit = host.scripts[2];
    expect(commit.indexOf("write()")).toBeGreaterThan(commit.indexOf("echo confirmed"));
    expect(commit).toMatch(/if \[ "\$c" = 0 \]; then\n\S+ '@@pit-begin %s %s\\n' "\$PIT_M" persist\n/);
    expectValidShell(host);
  });
});

describe("the boot files' SSH check", () => {
  const persisted = { persist: true };
  // Live, SSH is let in only by a runtime-only (persist: false) PortRule's rule, which the files leave out.
  const SSH =
    '-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "pulumi-iptables:web/prod/ssh/0123456789ab" -j ACCEPT';
  const live = insertRuleText(guide(4), "filter", "INPUT", 3, SSH);
  const after = insertRuleText(live, "filter", "INPUT", 4, text(4, persisted));
  /** The boot file as read back: the live ruleset without the runtime-only rule, or with it untagged. */
  const file = (withSsh: boolean) =>
    withSsh ? insertRuleText(guide(4), "filter", "INPUT", 3, "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT") : guide(4);
  const steps = (boot: string, more: StepAnswer[] = []): StepAnswer[] => [
    first({ save4: live }, { owner: {} }),
    { arm: {}, restore4: {}, save4: { out: after } },
    { confirm: { out: "confirmed" }, persist: {}, boot: { out: boot } },
    ...more,
  ];

  it("a save whose file lets the provider in passes; the file of the provider's family is read back", async () => {
    const host = new FakeHost(steps(file(true)));
    const res = await agentOn(host).change(insert(persisted));
    expect(res.persisted?.files).toEqual(["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"]);
    expect(host.scripts[2]).toMatch(
      /'@@pit-begin %s %s\\n' "\$PIT_M" boot\n.*sed -n '\/\^\\\*filter\/,\/\^COMMIT\/p' \/etc\/iptables\/rules\.v4/,
    );
    expectValidShell(host);
  });

  it("a save whose file would lock SSH out is refused: the change undone, the files put back, checked by a listing", async () => {
    const host = new FakeHost(steps(file(false), [{ restore4: {}, unsave: {}, save4: { out: live } }]));
    const e = await failure(agentOn(host).change(insert(persisted)));
    expect(e.message).toBe(
      "saving the ruleset on root@198.18.0.10:22 with netfilter-persistent was refused: /etc/iptables/rules.v4 as this " +
        "save wrote it (the ruleset the host loads at boot) would lock the provider out of the host: new SSH connections " +
        `from 198.18.0.1 to port 22 are accepted now (by ${SSH}), and would then be refused (by the INPUT policy DROP), ` +
        "so no later pulumi refresh, up or destroy could reach it after its next reboot, so the change was undone (a " +
        "listing shows it) and /etc/iptables/rules.v4 and /etc/iptables/rules.v6 were put back as they were. Keep a " +
        "rule that accepts SSH in the boot files (persist: true on the PortRule that accepts it, or a hand-made rule) " +
        "and run pulumi up again",
    );
    const undo = host.scripts[3];
    expect(undo).toContain(`-D INPUT ${text(4, persisted).slice("-A INPUT ".length)}`);
    expect(undo).toMatch(/'@@pit-begin %s %s\\n' "\$PIT_M" unsave\n/);
    expect(host.scripts).toHaveLength(4); // no second save: the files were put back
    expectValidShell(host);
  });

  it("is not asked of a change that saves nothing (a persist: false delete only updates the lists)", async () => {
    const host = new FakeHost([
      first({ save4: live }),
      { arm: {}, restore4: {}, save4: { out: guide(4) } },
      { confirm: { out: "confirmed" }, persist: {} },
    ]);
    const tag = "pulumi-iptables:web/prod/ssh/0123456789ab";
    const res = await agentOn(host).change({
      kind: "delete",
      table: "filter",
      chain: "INPUT",
      families: [4],
      tag,
      rules: { 4: SSH },
      persist: false,
      guard: () => undefined, // the origin is known: the check could be made, but nothing is saved
    });
    expect(res.families[4]?.rule).toBe(SSH);
    expect(host.scripts[2]).not.toMatch(/' boot\n/);
  });

  it("a refused save whose files cannot be put back says so", async () => {
    const host = new FakeHost(
      steps(file(false), [
        { restore4: {}, unsave: { code: 1, err: "cp: Read-only file system" }, save4: { out: live } },
      ]),
    );
    const e = await failure(agentOn(host).change(insert(persisted)));
    expect(e.message).toMatch(
      /; undoing the change did not take: putting \/etc\/iptables\/rules\.v4 and \/etc\/iptables\/rules\.v6 back failed: cp: Read-only file system$/,
    );
  });
});

describe("a change that may cut off new SSH connections", () => {
  const drop22 = { port: 22, action: "DROP", allowLockout: true };
  const applied = (): StepAnswer => ({ persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4, 1, drop22) } });
  it("that cannot connect: not confirmed, the host reverts it", async () => {
    const host = new FakeHost([first({ save4: guide(4) }), applied()]);
    const fresh = new FakeHost([], ["drop"]);
    const e = await failure(agentOn(host, fresh).change(insert(drop22, { position: "top", freshConfirm: true })));
    expect(e.message).toMatch(/may cut off new SSH connections .* a fresh connection could not be made/);
    expect(e.message).toMatch(/not confirmed: the host reverts it by itself within 30s/);
    // Nothing was sent to confirm it.
    expect(host.scripts.some((s) => /" confirm\n/.test(s))).toBe(false);
  });
});
