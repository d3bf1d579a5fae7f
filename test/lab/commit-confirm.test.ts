// Commit-confirm on a real host when /run is full or a rollback cannot be restored (issue 21.1): the
// arm step fails before anything is applied, and REAP reports only what a revert really restored,
// once (the `<id>.reverted` directories go once reported). The provider's exact scripts, real
// iptables, under dash (this machine's userland) and busybox ash (the embedded host).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { armStep, REAP, TX_DIR } from "../../provider/host/commit";
import { TRANSIENT } from "../../provider/host/persist";
import { framed, limitsFor, lock, preamble } from "../../provider/host/protocol";
import { check, create } from "../../provider/provider";
import { closeAll } from "../../provider/ssh";
import { Lab } from "./lab";
import type { LabHost } from "./lab";

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create();
});
afterAll(async () => {
  await closeAll();
  await lab?.destroy();
});

describe.each([["dash", undefined] as const, ["busybox ash", "embedded"] as const])("under %s", (_name, userland) => {
  let h: LabHost;
  beforeAll(async () => {
    h = await lab.addHost(userland ? { userland } : {});
  });

  /** Runs the provider's text in a shell on the host (as a conversation's shell does). */
  const remote = async (text: string) => {
    const script = framed(preamble(limitsFor(5, 600)) + text);
    return script.parse(await h.sh(script.script));
  };
  const pending = async () => (await h.sh(`ls ${TX_DIR} 2>/dev/null; true`)).trim();

  it("issue 21.1: an arm that cannot be written on a full /run stops the change before anything is applied", async () => {
    const before = await h.ruleset(4);
    // /run shrunk and filled: directories and empty files can still be made, and the list of
    // persist: false tags (written before the arm) has room in the page it already holds.
    await h.sh(
      `echo pulumi-iptables:commit/lab/none/000000000000 >>${TRANSIENT} && mount -o remount,size=256k /run && { dd if=/dev/zero of=/run/pit-fill bs=4k 2>/dev/null; true; }`,
    );
    try {
      const { inputs, failures } = await check(
        {},
        {
          connection: h.connection(),
          port: 8111,
          action: "DROP",
          identity: { project: "commit", stack: "lab", name: "full" },
        },
      );
      expect(failures).toEqual([]);
      await expect(create(inputs as any)).rejects.toThrow(
        /arming the rollback on \S+ failed: .*(No space left on device|could not write \S+ whole \(is \/run full\?\)).*, and a listing shows none of the change on the host/s,
      );
    } finally {
      await h.sh("rm -f /run/pit-fill && mount -o remount,size=50% /run");
    }
    expect(await h.ruleset(4)).toBe(before);
    // Nothing half-armed is left for a later run to "revert".
    expect(await pending()).toBe("");
  });

  it("issue 21.1: REAP says 'reverted' only for a rollback that restored every line, and reports each once", async () => {
    const limits = limitsFor(5, 600);
    const rule = (port: number) => ["INPUT", "-p", "tcp", "--dport", String(port), "-j", "ACCEPT"];
    await h.iptables(4, ["-A", ...rule(9101)]);
    await h.iptables(4, ["-A", ...rule(9102)]);
    // Three unconfirmed transactions, armed by the provider's own step: one whose undo restores, one
    // whose undo cannot (its rule is not there to delete), and one its watchdog already reverted.
    const arm = (id: string, port: number, after = limits) =>
      remote(armStep(id, "filter", { 4: [`-D ${rule(port).join(" ")}`] }, after));
    for (const [id, port] of [
      ["aaaaaaaaaaa1", 9101],
      ["aaaaaaaaaaa2", 9199],
    ] as const)
      expect((await arm(id, port)).arm?.code).toBe(0);
    expect((await arm("aaaaaaaaaaa3", 9102, limitsFor(5, 1))).arm?.code).toBe(0);
    await h.waitFor(async () => (await pending()).includes("aaaaaaaaaaa3.reverted"), "the watchdog's revert", 20_000);

    const reap = (await remote(REAP)).reap;
    expect(reap?.code).toBe(0);
    const lines = reap!.out.split("\n").sort();
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe("aaaaaaaaaaa1 reverted");
    expect(lines[1]).toMatch(/^aaaaaaaaaaa2 NOT reverted: .*not undone: -D INPUT -p tcp --dport 9199 -j ACCEPT/);
    expect(lines[2]).toBe("aaaaaaaaaaa3 reverted");
    const rules = (await h.iptables(4, ["-S", "INPUT"])).stdout;
    expect(rules).not.toContain("--dport 9101");
    expect(rules).not.toContain("--dport 9102");
    // Reported once: nothing pending or reverted is left, and the next REAP says nothing.
    expect(await pending()).toBe("");
    expect((await remote(REAP)).reap?.out).toBe("");
  });

  it("issue 21.2: a stack whose lock wait runs out reverts nothing and lists nothing (REAP runs only under the lock)", async () => {
    const rule = ["INPUT", "-p", "tcp", "--dport", "9201", "-j", "ACCEPT"];
    await h.iptables(4, ["-A", ...rule]);
    // Another stack's transaction in flight: armed, its rule applied, not yet confirmed.
    expect(
      (await remote(armStep("bbbbbbbbbbb1", "filter", { 4: [`-D ${rule.join(" ")}`] }, limitsFor(5, 600)))).arm?.code,
    ).toBe(0);
    // That stack's shell holds the lock (the provider's own lock text) for longer than our wait.
    const holder = h.exec([
      "sh",
      "-c",
      `${preamble(limitsFor(5, 600))}${lock(limitsFor(5, 600))}\n: >/run/pit-held; sleep 12`,
    ]);
    await h.waitFor(
      async () => (await h.exec(["test", "-e", "/run/pit-held"])).code === 0,
      "the other stack's lock",
      10_000,
    );
    // A connection of its own, so that its perDialTimeout (1 s: a lock wait of 5 s) is the one used.
    await closeAll();
    const { inputs, failures } = await check(
      {},
      {
        connection: { ...h.connection(), perDialTimeout: 1 },
        port: 8121,
        action: "DROP",
        identity: { project: "commit", stack: "lab", name: "busy" },
      },
    );
    expect(failures).toEqual([]);
    await expect(create(inputs as any)).rejects.toThrow(/could not take the host's lock on \S+ within 5s/);
    // The other stack's change is untouched: still applied, still pending for that stack to confirm.
    expect((await h.iptables(4, ["-C", ...rule])).code).toBe(0);
    expect(await pending()).toBe("bbbbbbbbbbb1");
    await holder;
    await h.sh("rm -f /run/pit-held");
    expect((await remote(REAP)).reap?.out).toBe("bbbbbbbbbbb1 reverted");
  });
});
