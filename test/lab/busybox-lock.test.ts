// The host lock where flock(1) is missing (the embedded busybox + dropbear host): the provider takes
// /run/pulumi-iptables.lock-pid, an atomic symlink to its shell (pid:starttime), waits while a live process
// holds it, takes over a link whose holder is gone, and releases it when its conversation ends.
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { framed, LOCK_UNAVAILABLE, limitsFor, lock, preamble } from "../../provider/host/protocol";
import { check, create, fromStored, remove } from "../../provider/provider";
import { closeAll } from "../../provider/ssh";
import { Lab } from "./lab";
import type { LabHost } from "./lab";

const LINK = "/run/pulumi-iptables.lock-pid";
let lab: Lab;
let h: LabHost;
beforeAll(async () => {
  lab = await Lab.create();
  h = await lab.addHost({ userland: "embedded" });
});
afterAll(async () => {
  await closeAll();
  await lab?.destroy();
});

async function inputs(name: string, port: number) {
  const { inputs, failures } = await check(
    {},
    {
      connection: h.connection(),
      port,
      action: "DROP",
      ipVersion: "ipv4",
      identity: { project: "lock", stack: "lab", name },
    },
  );
  expect(failures).toEqual([]);
  return inputs as any;
}

const link = async () => (await h.exec(["readlink", LINK])).stdout.trim();

describe("the lock on a host without flock", () => {
  it("has no flock: the provider uses the pid link", async () => {
    expect((await h.exec(["sh", "-c", "command -v flock"])).code).not.toBe(0);
  });

  it("takes over a link whose holder is gone, and leaves none behind", async () => {
    const dead = (await h.sh("sh -c 'echo $$'")).trim();
    await h.sh(`ln -s ${dead} ${LINK}`);
    const out = await create(await inputs("stale", 8101));
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout).toContain(fromStored<{ tag: string }>(out.outs).tag);
    // Released when the conversation ends (it is kept a moment for a next batch).
    await h.waitFor(async () => (await link()) === "", "the lock link to be released", 10_000);
    await remove(out.id, out.outs as any);
  });

  it("waits while a live process holds it, and goes on once it is released", async () => {
    // The holder: a process in the host that takes the link, keeps it a while, then removes it.
    const events: string[] = [];
    const holder = spawn("nsenter", [
      ...["-t", String(h.pid), "-n", "-m", "-r", "-w", "--"],
      // It waits its turn like any taker: the provider's last conversation may hold the link a moment
      // longer (it is kept for a next batch), then releases it.
      ...["sh", "-c", `until ln -s $$ ${LINK} 2>/dev/null; do sleep 0.1; done; echo held && sleep 3 && rm -f ${LINK}`],
    ]);
    const exited = new Promise<void>((r) =>
      holder.on("exit", () => {
        events.push("released");
        r();
      }),
    );
    await new Promise<void>((r) => holder.stdout.once("data", () => r()));
    expect(await link()).toMatch(/^\d+$/);
    const made = create(await inputs("held", 8102)).then((out) => {
      events.push("created");
      return out;
    });
    const [out] = await Promise.all([made, exited]);
    expect(events).toEqual(["released", "created"]);
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout).toContain(fromStored<{ tag: string }>(out.outs).tag);
    // Released when the conversation ends (it is kept a moment for a next batch).
    await h.waitFor(async () => (await link()) === "", "the lock link to be released", 10_000);
    await remove(out.id, out.outs as any);
  });

  it("says so, naming flock, when the lock link cannot be made at all (read-only /run)", async () => {
    // No link at all: the last test's conversation has released it.
    await h.waitFor(async () => (await link()) === "", "the lock link to be released", 10_000);
    const before = await h.ruleset(4);
    await h.sh("mount -o remount,ro /run");
    try {
      await expect(create(await inputs("ro", 8103))).rejects.toThrow(
        /could not take the lock on \S+: this host has no flock, and the lock link \/run\/pulumi-iptables\.lock-pid cannot be made: .*Read-only file system/,
      );
    } finally {
      await h.sh("mount -o remount,rw /run");
    }
    expect(await h.ruleset(4)).toBe(before);
  });

  it("issue 21.8: a stale link to a dead process on a read-only /run ends with 'cannot be made', not at the step's deadline", async () => {
    // What a fresh machine's CI run met: a link left by a shell that died without its cleanup (killed by
    // its idle reaper, or the link's removal failed), then /run read-only. It can neither be broken nor
    // made: the taker must say so at once instead of spinning until the step's deadline.
    await h.waitFor(async () => (await link()) === "", "the lock link to be released", 10_000);
    const before = await h.ruleset(4);
    const dead = (await h.sh("sh -c 'echo $$'")).trim();
    await h.sh(`ln -s ${dead} ${LINK} && mount -o remount,ro /run`);
    try {
      await expect(create(await inputs("ro-stale", 8104))).rejects.toThrow(
        /could not take the lock on \S+: this host has no flock, and the lock link \/run\/pulumi-iptables\.lock-pid cannot be made: .*Read-only file system/,
      );
    } finally {
      await h.sh(`mount -o remount,rw /run && rm -f ${LINK}`);
    }
    expect(await h.ruleset(4)).toBe(before);
  });

  it("says 'not root' first where the login is not root (the link in /run needs root)", async () => {
    await h.waitFor(async () => (await link()) === "", "the lock link to be released", 10_000);
    // The provider's lock step, run by a shell of uid 65534 inside the host (as a non-root login's is).
    const step = framed(preamble(limitsFor(5, 600)) + lock(limitsFor(5, 600)));
    const nsenter = ["-t", String(h.pid), "-n", "-m", "-r", "-w", "-S", "65534", "-G", "65534", "--"];
    const out = await promisify(execFile)("nsenter", [...nsenter, "sh", "-c", step.script]).then(
      (r) => r.stdout,
      (e: { stdout?: string }) => e.stdout ?? "",
    );
    const taken = step.parse(out).lock;
    expect(taken?.code).toBe(LOCK_UNAVAILABLE);
    expect(taken?.err).toMatch(/^not root: logged in as \S* ?\(uid 65534\)$/m);
    expect(await link()).toBe("");
  });
});
