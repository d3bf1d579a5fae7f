// Commit-confirm on a real host when /run is full or a rollback cannot be restored (issue 21.1): the
// arm step fails before anything is applied, and REAP reports only what a revert really restored,
// once (the `<id>.reverted` directories go once reported); REAP only under the lock (21.2); the
// confirmation and the rollback claim a transaction with one `mv`, and the confirmation is the lock
// holder's (21.3); an undo puts a deleted rule back in a chain that has shrunk, and says where (21.4).
// The provider's exact scripts, real iptables, under dash (this machine's userland) and busybox ash
// (the embedded host).
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { HostAgent } from "../../provider/host/agent";
import { armStep, CLAIM_LOST, confirmStep, REAP, TX_DIR, txDir, unitsOf } from "../../provider/host/commit";
import { TRANSIENT } from "../../provider/host/persist";
import { framed, limitsFor, LOCK_IDENTITY, lock, preamble } from "../../provider/host/protocol";
import { freshSession } from "../../provider/host/batch";
import { check, create } from "../../provider/provider";
import { check as checkRule, renderRule } from "../../provider/rules";
import { closeAll, getSession } from "../../provider/ssh";
import type { Session } from "../../provider/ssh";
import { Lab } from "./lab";
import type { LabHost } from "./lab";

let lab: Lab;
/** The checked inputs of an IPv4 DROP of tcp `port` on `host` (stack commit/lab, resource `name`). */
async function dropRule(host: LabHost, port: number, name: string, connection: Record<string, unknown> = {}) {
  const { inputs, failures } = await check(
    {},
    {
      connection: { ...host.connection(), ...connection },
      port,
      action: "DROP",
      ipVersion: "ipv4",
      identity: { project: "commit", stack: "lab", name },
    },
  );
  expect(failures).toEqual([]);
  return inputs as any;
}
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
      const inputs = await dropRule(h, 8111, "full");
      await expect(create(inputs)).rejects.toThrow(
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
    const rule = (port: number) => ["INPUT", "-p", "tcp", "-m", "tcp", "--dport", String(port), "-j", "ACCEPT"];
    await h.iptables(4, ["-A", ...rule(9101)]);
    await h.iptables(4, ["-A", ...rule(9102)]);
    // Three unconfirmed transactions, armed by the provider's own step: one whose undo restores, one
    // whose undo cannot (its chain is gone: the rule cannot be put back), and one its watchdog already
    // reverted. The undo lines are in the form iptables -S lists (the provider's exact text).
    const arm = (id: string, lines: string[], after = limits) => remote(armStep(id, "filter", { 4: lines }, after));
    const gone = "-I PIT-GONE 1 -p tcp -m tcp --dport 9199 -j ACCEPT";
    expect((await arm("aaaaaaaaaaa1", [`-D ${rule(9101).join(" ")}`])).arm?.code).toBe(0);
    expect((await arm("aaaaaaaaaaa2", [gone])).arm?.code).toBe(0);
    expect((await arm("aaaaaaaaaaa3", [`-D ${rule(9102).join(" ")}`], limitsFor(5, 1))).arm?.code).toBe(0);
    await h.waitFor(async () => (await pending()).includes("aaaaaaaaaaa3.reverted"), "the watchdog's revert", 20_000);

    const reap = (await remote(REAP)).reap;
    expect(reap?.code).toBe(0);
    const lines = reap!.out.split("\n").sort();
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe("aaaaaaaaaaa1 reverted");
    expect(lines[1]).toMatch(
      /^aaaaaaaaaaa2 NOT reverted: .*not undone: -I PIT-GONE 1 -p tcp -m tcp --dport 9199 -j ACCEPT/,
    );
    expect(lines[2]).toBe("aaaaaaaaaaa3 reverted");
    const rules = (await h.iptables(4, ["-S", "INPUT"])).stdout;
    expect(rules).not.toContain("--dport 9101");
    expect(rules).not.toContain("--dport 9102");
    // Reported once: nothing pending or reverted is left, and the next REAP says nothing.
    expect(await pending()).toBe("");
    expect((await remote(REAP)).reap?.out).toBe("");
  });

  it("a change on a read-only /run is refused before anything runs: the lock cannot be had, and the message says why", async () => {
    const before = await h.ruleset(4);
    await h.sh("mount -o remount,ro /run");
    try {
      const inputs = await dropRule(h, 8112, "ro");
      await expect(create(inputs)).rejects.toThrow(
        userland
          ? /could not take the lock on \S+: .*the lock link \/run\/pulumi-iptables\.lock-pid cannot be made: .*Read-only file system/s
          : /could not take the lock on \S+: .*Read-only file system.*the lock file \/run\/pulumi-iptables\.lock cannot be opened for writing: it needs root \(log in as root or set connection\.sudo\) and a writable \/run/s,
      );
    } finally {
      await h.sh("mount -o remount,rw /run");
    }
    expect(await h.ruleset(4)).toBe(before);
  });

  it("adversary seed 9090: a watchdog that cannot take the lock on a read-only /run tries again each second and reverts once it can", async () => {
    const rule = ["INPUT", "-p", "tcp", "-m", "tcp", "--dport", "9103", "-j", "ACCEPT"];
    await h.iptables(4, ["-A", ...rule]);
    const id = "aaaaaaaaaab1";
    // However it goes, nothing of this transaction is left for the next tests' REAP to report.
    onTestFinished(async () => {
      await h.sh("mount -o remount,rw /run");
      await h.waitFor(async () => ![id, `${id}.reverting`].includes(await pending()), "the revert's end", 20_000);
      await remote(REAP);
    });
    const after = 6;
    const armed = Date.now();
    expect((await remote(armStep(id, "filter", { 4: [`-D ${rule.join(" ")}`] }, limitsFor(5, after)))).arm?.code).toBe(
      0,
    );
    await h.sh("mount -o remount,ro /run");
    try {
      // /run went read-only while the watchdog slept (on a loaded machine the arm's round trip can take
      // seconds: the test says so rather than judge a watchdog that woke first).
      expect(Date.now() - armed, "/run was made read-only after the watchdog woke").toBeLessThan(after * 1000);
      // Past its deadline the watchdog is still there, waiting, and nothing was reverted.
      await h.waitFor(async () => Date.now() - armed > (after + 2) * 1000, "the watchdog's deadline", 20_000);
      const w = (await h.sh(`cat ${txDir(id)}/pid`)).trim();
      expect((await h.exec(["test", "-d", `/proc/${w.split(":")[0]}`])).code).toBe(0);
      expect((await h.iptables(4, ["-C", ...rule])).code).toBe(0);
      expect(await pending()).toBe(id);
    } finally {
      await h.sh("mount -o remount,rw /run");
    }
    await h.waitFor(async () => (await h.iptables(4, ["-C", ...rule])).code !== 0, "the rollback", 20_000);
    await h.waitFor(async () => (await pending()) === `${id}.reverted`, "the revert's end", 20_000);
    expect((await remote(REAP)).reap?.out).toBe(`${id} reverted`);
  });

  it("issue 21.2: a stack whose lock wait runs out reverts nothing and lists nothing (REAP runs only under the lock)", async () => {
    const rule = ["INPUT", "-p", "tcp", "-m", "tcp", "--dport", "9201", "-j", "ACCEPT"];
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
    const inputs = await dropRule(h, 8121, "busy", { perDialTimeout: 1 });
    await expect(create(inputs)).rejects.toThrow(/could not take the host's lock on \S+ within 5s/);
    // The other stack's change is untouched: still applied, still pending for that stack to confirm.
    expect((await h.iptables(4, ["-C", ...rule])).code).toBe(0);
    expect(await pending()).toBe("bbbbbbbbbbb1");
    await holder;
    await h.sh("rm -f /run/pit-held");
    expect((await remote(REAP)).reap?.out).toBe("bbbbbbbbbbb1 reverted");
  });

  it("issue 21.3: a confirmation that comes while the rollback reverts loses the claim, says so, and the revert completes", async () => {
    const rule = ["INPUT", "-p", "tcp", "-m", "tcp", "--dport", "9301", "-j", "ACCEPT"];
    await h.iptables(4, ["-A", ...rule]);
    const id = "ccccccccccc1";
    const d = txDir(id);
    // Armed with a 2 s rollback; its undo file becomes a FIFO at once, so the revert, once it has
    // claimed the transaction, waits in the middle (reading its undo lines) until the test feeds it.
    const armed = await remote(
      `${armStep(id, "filter", { 4: [`-D ${rule.join(" ")}`] }, limitsFor(5, 2))}
cp ${d}/undo4 /run/pit-undo && rm ${d}/undo4 && mkfifo ${d}/undo4`,
    );
    expect(armed.arm?.code).toBe(0);
    await h.waitFor(async () => (await pending()).includes(`${id}.reverting`), "the watchdog's claim", 20_000);

    // The confirmation lost: it says the change was reverted and stops nothing.
    const confirm = (await remote(confirmStep(id))).confirm;
    expect(confirm?.code).toBe(CLAIM_LOST);
    expect(confirm?.err).toMatch(/its rollback claimed it first: the host reverted the change/);
    expect(confirm?.out).toBe("");
    expect(await pending()).toBe(`${id}.reverting`);
    const reverter = (await h.sh(`cat ${d}.reverting/reverter`)).trim();
    expect((await h.exec(["test", "-d", `/proc/${reverter.split(":")[0]}`])).code).toBe(0);

    // The revert goes on to the end.
    await h.sh(`cat /run/pit-undo >${d}.reverting/undo4 && rm /run/pit-undo`);
    await h.waitFor(async () => (await pending()) === `${id}.reverted`, "the revert", 20_000);
    expect((await h.iptables(4, ["-C", ...rule])).code).toBe(1);
    expect((await remote(REAP)).reap?.out).toBe(`${id} reverted`);
    expect(await pending()).toBe("");
  });

  it("issue 21.3: a fresh-connection confirmation after the lock holder's connection dropped confirms nothing; the host reverts", async () => {
    await closeAll();
    const { inputs, failures } = checkRule(
      {},
      { connection: h.connection(), port: 9302, action: "DROP", ipVersion: "ipv4" },
    );
    expect(failures).toEqual([]);
    const tag = "pulumi-iptables:commit/lab/fresh/0123456789ab";
    const spec = renderRule(inputs, 4, tag);
    const main = getSession(inputs.connection);
    // The fresh connection is made once the change is applied: just then the transaction's own
    // connection drops, and the test waits until its shell is gone (the lock can be had).
    const fresh = (args: Session["args"], log: Session["log"]) => {
      const real = freshSession(args, log);
      return {
        run: async (script: string) => {
          await main.close();
          await h.waitFor(async () => (await remote(lock(limitsFor(5, 600)))).lock?.code === 0, "the lock", 20_000);
          return real.run(script);
        },
        close: () => real.close(),
      } as unknown as Session;
    };
    const agent = new HostAgent(main, fresh);
    const change = agent.change({
      kind: "insert",
      table: "filter",
      chain: "INPUT",
      tag,
      specs: { 4: spec },
      position: "top",
      persist: false,
      freshConfirm: true,
      rollbackAfter: 3,
    });
    await expect(change).rejects.toThrow(
      /ended before the change was confirmed: the change may be on the host, not confirmed: the host reverts it by itself within 3s/,
    );
    // Not confirmed: the watchdog reverts it, and the next run's REAP reports it.
    await h.waitFor(async () => (await h.iptables(4, ["-C", "INPUT", ...spec])).code !== 0, "the rollback", 30_000);
    await h.waitFor(async () => (await pending()).endsWith(".reverted"), "the revert's end", 20_000);
    expect((await remote(REAP)).reap?.out).toMatch(/^[0-9a-f]{12} reverted$/);
  });

  it("issue 21.3: REAP leaves a revert whose reverter runs to it, reports one cut off, and drops a claimed confirmation", async () => {
    const limits = limitsFor(5, 600);
    const arm = async (id: string, port: number) =>
      expect(
        (await remote(armStep(id, "filter", { 4: [`-D INPUT -p tcp --dport ${port} -j ACCEPT`] }, limits))).arm?.code,
      ).toBe(0);
    for (const [id, port] of [
      ["eeeeeeeeeee1", 9311],
      ["eeeeeeeeeee2", 9312],
      ["eeeeeeeeeee3", 9313],
    ] as const)
      await arm(id, port);
    // 1: claimed by a reverter that still runs (a live process, by pid and start time); 2: by one that
    // is gone (pid 1 with another start time); 3: claimed by a confirmation cut off before it removed it.
    const sleeper = h.exec([
      "sh",
      "-c",
      `${LOCK_IDENTITY}\n: >/run/pit-running; echo "$PIT_ME" >/run/pit-sleeper; while [ -e /run/pit-running ]; do sleep 1; done`,
    ]);
    await h.waitFor(
      async () => (await h.exec(["test", "-s", "/run/pit-sleeper"])).code === 0,
      "the live reverter",
      10_000,
    );
    const d = (id: string) => txDir(id);
    await h.sh(
      `mv ${d("eeeeeeeeeee1")} ${d("eeeeeeeeeee1")}.reverting && mv /run/pit-sleeper ${d("eeeeeeeeeee1")}.reverting/reverter
mv ${d("eeeeeeeeeee2")} ${d("eeeeeeeeeee2")}.reverting && echo 1:0 >${d("eeeeeeeeeee2")}.reverting/reverter && echo "iptables-restore: killed" >${d("eeeeeeeeeee2")}.reverting/log
mv ${d("eeeeeeeeeee3")} ${d("eeeeeeeeeee3")}.confirmed`,
    );
    const reap = (await remote(REAP)).reap;
    expect(reap?.code).toBe(0);
    expect(reap?.out).toBe("eeeeeeeeeee2 NOT reverted: its revert was cut off part way: iptables-restore: killed ");
    expect(await pending()).toBe("eeeeeeeeeee1.reverting");
    // The stand-in reverter (started above) ends, and its claim is cleared.
    await h.sh(`rm /run/pit-running && rm -rf ${d("eeeeeeeeeee1")}.reverting`);
    expect((await sleeper).code).toBe(0);
  });

  it("issue 21.4: the undo of a delete puts the rule back in a chain that has shrunk, at the nearest line, and says so", async () => {
    const chain = "PIT214";
    const ssh = `-A ${chain} -p tcp -m tcp --dport 22 -j ACCEPT`;
    await h.iptables(4, ["-N", chain]);
    for (const port of ["80", "8080", "22"])
      await h.iptables(4, ["-A", chain, "-p", "tcp", "-m", "tcp", "--dport", port, "-j", "ACCEPT"]);
    // A transaction deletes the SSH ACCEPT at line 3 (its undo: put it back at line 3), then another
    // writer removes the first rule: line 3 no longer exists ("Index of insertion too big").
    const undo = [ssh.replace(`-A ${chain} `, `-I ${chain} 3 `)];
    expect((await remote(armStep("ddddddddddd1", "filter", { 4: undo }, limitsFor(5, 600)))).arm?.code).toBe(0);
    await h.iptables(4, ["-D", chain, "3"]);
    await h.iptables(4, ["-D", chain, "1"]);

    const reap = (await remote(REAP)).reap;
    expect(reap?.code).toBe(0);
    expect(reap?.out).toBe(
      `ddddddddddd1 reverted, not exactly: moved: IPv4: put back at line 2 of ${chain}, not at line 3 as recorded (the chain is shorter now): ${ssh}`,
    );
    // Back, with its exact text, at the end of the chain.
    const listed = (await h.iptables(4, ["-S", chain])).stdout.trim().split("\n");
    expect(listed).toEqual([`-N ${chain}`, `-A ${chain} -p tcp -m tcp --dport 8080 -j ACCEPT`, ssh]);
    expect(await pending()).toBe("");
  });

  it("an undo is idempotent: a change that never went in (the shell killed between arm and restore) is left as it is", async () => {
    const chain = "PITIDEM";
    const ssh = `-A ${chain} -p tcp -m tcp --dport 22 -j ACCEPT`;
    const other = `-A ${chain} -p tcp -m tcp --dport 2222 -j ACCEPT`;
    await h.iptables(4, ["-N", chain]);
    await h.iptables(4, ["-A", chain, "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    // Armed for a delete of the SSH ACCEPT (undo: put it back at line 1) and an insert of 2222 (undo:
    // delete it); the restore never ran. Before, the undo added a second copy of the SSH ACCEPT.
    const undo = [other.replace(/^-A /, "-D "), ssh.replace(`-A ${chain} `, `-I ${chain} 1 `)];
    expect((await remote(armStep("ddddddddddd3", "filter", { 4: undo }, limitsFor(5, 600)))).arm?.code).toBe(0);
    const reap = (await remote(REAP)).reap?.out ?? "";
    expect(reap).toMatch(/^ddddddddddd3 reverted, not exactly: /);
    expect(reap).toContain(`skipped: IPv4: ${other} is not on the host (the change never put it there)`);
    expect(reap).toContain(`skipped: IPv4: ${ssh} is on the host already (the change never took it away)`);
    const listed = (await h.iptables(4, ["-S", chain])).stdout.trim().split("\n");
    expect(listed).toEqual([`-N ${chain}`, ssh]);
    expect(await pending()).toBe("");
  });

  it("a refused undo is retried request by request, never line by line: a swap back goes in whole or not at all", async () => {
    const chain = "PITUNIT";
    const theirs = `-A ${chain} -p tcp -m tcp --dport 22 -j ACCEPT`;
    const other = `-A ${chain} -p tcp -m tcp --dport 2222 -j ACCEPT`;
    await h.iptables(4, ["-N", chain]);
    await h.iptables(4, ["-A", chain, "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    await h.iptables(4, ["-A", chain, "-p", "tcp", "-m", "tcp", "--dport", "2222", "-j", "ACCEPT"]);
    // Two requests' undo: a swap whose insert iptables refuses (its target chain is gone) and whose
    // delete would succeed, and a plain delete. Line by line, the swap's delete went in alone and the
    // operator's rule was gone with nothing in its place.
    const swap = [`-I ${chain} 1 -p tcp -m tcp --dport 22 -j PIT-NO-SUCH-CHAIN`, theirs.replace(/^-A /, "-D ")];
    const undo = unitsOf([swap, [other.replace(/^-A /, "-D ")]]);
    expect((await remote(armStep("ddddddddddd4", "filter", { 4: undo }, limitsFor(5, 600)))).arm?.code).toBe(0);
    const reap = (await remote(REAP)).reap?.out ?? "";
    expect(reap).toMatch(/^ddddddddddd4 NOT reverted: .*not undone: -I PITUNIT 1 .*PIT-NO-SUCH-CHAIN -D PITUNIT /);
    // The swap did not go in halfway (the operator's rule is there); the other request was undone.
    const listed = (await h.iptables(4, ["-S", chain])).stdout.trim().split("\n");
    expect(listed).toEqual([`-N ${chain}`, theirs]);
  });

  it("issue 21.4: an adoption's swap back in a chain that shrank above it keeps the exact text and the counters", async () => {
    const chain = "PIT214S";
    const tag = "pulumi-iptables:commit/lab/ssh/0123456789ab";
    const mine = `-A ${chain} -p tcp -m tcp --dport 22 -m comment --comment "${tag}" -j ACCEPT`;
    const theirs = `-A ${chain} -p tcp -m tcp --dport 22 -j ACCEPT`;
    await h.iptables(4, ["-N", chain]);
    for (const port of ["80", "8080"])
      await h.iptables(4, ["-A", chain, "-p", "tcp", "-m", "tcp", "--dport", port, "-j", "ACCEPT"]);
    await h.iptables(4, [
      "-A",
      chain,
      "-p",
      "tcp",
      "-m",
      "tcp",
      "--dport",
      "22",
      "-m",
      "comment",
      "--comment",
      tag,
      "-j",
      "ACCEPT",
    ]);
    // The adoption tagged the operator's rule at line 3; its undo swaps it back (swapLines: the
    // operator's text inserted at line 3 with its counters, ours deleted by its text). Then another
    // writer removes the two rules above it.
    const undo = [`${theirs.replace(`-A ${chain} `, `-I ${chain} 3 -c 5 300 `)}`, mine.replace(/^-A /, "-D ")];
    expect((await remote(armStep("ddddddddddd2", "filter", { 4: undo }, limitsFor(5, 600)))).arm?.code).toBe(0);
    await h.iptables(4, ["-D", chain, "1"]);
    await h.iptables(4, ["-D", chain, "1"]);

    expect((await remote(REAP)).reap?.out).toBe(
      `ddddddddddd2 reverted, not exactly: moved: IPv4: put back at line 2 of ${chain}, not at line 3 as recorded (the chain is shorter now): ${theirs}`,
    );
    const saved = (await h.save(4, { counters: true })).split("\n").filter((l) => l.includes(chain));
    expect(saved).toEqual([`:${chain} - [0:0]`, `[5:300] ${theirs}`]);
  });
});
