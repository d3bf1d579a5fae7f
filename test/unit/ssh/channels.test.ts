// Channels (provider/ssh/channels.ts): slots per connection, refused opens retried, a lost command told
// apart from a finished one. Against ssh2's in-process server (see ./fake-host): no root, no lab.
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { closeOpened, removeSockets, sessionOn } from "./fake-host";
import type { ExecHost } from "./fake-host";

afterAll(removeSockets);
afterEach(closeOpened);
vi.mock("node:net", async (original) => (await import("./fake-host")).viaSockets(await original()));
import { MAX_CHANNELS, RemoteError } from "../../../provider/ssh";
import { ChannelSlots } from "../../../provider/ssh/channels";

describe("channel slots", () => {
  it(`grants ${MAX_CHANNELS} at once, then one per release, in arrival order`, async () => {
    const slots = new ChannelSlots();
    for (let i = 0; i < MAX_CHANNELS; i++) await slots.acquire();
    const granted: number[] = [];
    const waits = [1, 2].map((n) => slots.acquire().then(() => granted.push(n)));
    await Promise.resolve();
    expect(granted).toEqual([]);
    slots.release();
    await waits[0];
    expect(granted).toEqual([1]);
    slots.release();
    await waits[1];
    expect(granted).toEqual([1, 2]);
  });
});

describe("exec channels against an in-process SSH server", () => {
  it("retries a channel open the server refuses (MaxSessions) instead of failing the command", async () => {
    const { host, session } = await sessionOn(() => ({ stdout: "ok", code: 0 }), { refuseChannels: 2 });
    expect((await session.run("true")).stdout).toBe("ok");
    expect(host.refused).toBe(2);
    expect(session.stats.channelRetries).toBeGreaterThanOrEqual(2);
  });

  it("says what was lost when the server goes away mid-command", async () => {
    let hostRef: ExecHost | undefined;
    // The server ends the connection instead of answering (no exit status is ever sent).
    const { host, session } = await sessionOn(() => {
      void hostRef!.close();
      return null;
    });
    hostRef = host;
    await expect(session.run("true")).rejects.toBeInstanceOf(RemoteError);
  });

  it("runs more commands at once than there are slots, each to its own result", async () => {
    const { session } = await sessionOn((_c, stdin) => ({ stdout: stdin.split("\n")[1], code: 0 }));
    const scripts = Array.from({ length: MAX_CHANNELS * 2 + 1 }, (_, i) => `echo ${i}`);
    const results = await Promise.all(scripts.map((s) => session.run(s)));
    expect(results.map((r) => r.stdout)).toEqual(scripts);
    expect(session.stats.channels).toBe(scripts.length);
  });
});
