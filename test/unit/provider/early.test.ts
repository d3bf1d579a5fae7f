// Dial once per host per run, before the first batch needs it: the lifecycle's hooks. Check (a new rule)
// and Diff (changes) only remember hosts, so preview and an up without changes open nothing; the
// first Create, Update or Delete dials every host remembered. No IP traffic: every TCP connect is
// recorded and pointed at a Unix socket path where nothing listens, so each dial fails at once.
import { join } from "node:path";
import { tmpdir } from "node:os";
import { afterEach, describe, expect, it, vi } from "vitest";

const connects: string[] = [];
vi.mock("node:net", async (importOriginal) => {
  const net = await importOriginal<typeof import("node:net")>();
  const connect = (opts: { host?: string }) => {
    connects.push(String(opts.host));
    return net.connect({ path: join(tmpdir(), `pit-unit-nothing-here-${process.pid}.sock`) });
  };
  return { ...net, default: { ...net, connect, createConnection: connect }, connect, createConnection: connect };
});
import { check, create, diff, fromStored, remove, update } from "../../../provider/provider";
import type { PortRuleState } from "../../../provider/provider";
import { UNKNOWN } from "../../../provider/rules";
import { closeAll, dialForeseen, dials, foreseenCount, pinHostKey } from "../../../provider/ssh";

const identity = { project: "web", stack: "prod", name: "r" };
/** A host key fingerprint as given in `hostKey` (this one never answers). */
const KEY = `SHA256:${"A".repeat(43)}`;
const rule = (host: string, port = 2222, key: { hostKey?: string } = {}) => ({
  connection: { host, password: "early-test-password", dialErrorLimit: 1, ...key },
  port,
  action: "ACCEPT",
  identity,
});
async function checked(news: Record<string, unknown>, olds: Record<string, unknown> = {}) {
  const r = await check(olds, news);
  expect(r.failures).toEqual([]);
  return fromStored<Record<string, any>>(r.inputs);
}
const settle = async () => {
  for (let i = 0; i < 200 && (dials.active() > 0 || dials.waiting > 0); i++) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
};

afterEach(async () => {
  await settle();
  await closeAll();
  connects.length = 0;
});

describe("dialling early", () => {
  it("preview (Check and Diff only) remembers the hosts with changes and connects nowhere", async () => {
    const before = foreseenCount();
    await checked(rule("198.18.7.1")); // new
    await checked(rule("198.18.7.1", 2223)); // new, same host
    const olds = await checked(rule("198.18.7.2"));
    expect(foreseenCount() - before).toBe(2);
    await checked(rule("198.18.7.2"), olds); // an existing rule: not remembered by Check
    await diff("id", olds, await checked(rule("198.18.7.2"), olds)); // no change
    expect(foreseenCount() - before).toBe(2);
    await diff("id", olds, await checked(rule("198.18.7.3", 2222), olds)); // replaced onto another host
    expect(foreseenCount() - before).toBe(3);
    await checked({ ...rule("198.18.7.4"), connection: { host: UNKNOWN, password: "x" } }); // not known in preview
    expect(foreseenCount() - before).toBe(3);
    await settle();
    expect(connects).toEqual([]);
  });

  it.each(["create", "update", "delete"] as const)(
    "the first %s dials every host remembered whose key is known",
    async (op) => {
      // Hosts of their own per operation: pins outlive a test.
      const net = `198.18.${{ create: 11, update: 12, delete: 13 }[op]}`;
      await checked(rule(`${net}.1`, 2222, { hostKey: KEY })); // given
      await checked(rule(`${net}.2`));
      pinHostKey(`${net}.2:22`, KEY, "state"); // pinned from state (another rule's Diff)
      await checked(rule(`${net}.3`)); // not known yet: must not be trusted on first sight before its pin loads
      expect(connects).toEqual([]);
      // The operation's own host: a failed dial is its error, after the early dials began.
      const mine = (await checked(rule(`${net}.9`))) as PortRuleState & { unique: string };
      const call =
        op === "create"
          ? create({ ...mine, identity: undefined })
          : op === "update"
            ? update("id", { ...mine, tag: "t", rules: {} } as PortRuleState, mine)
            : remove("id", { ...mine, tag: "t" } as PortRuleState);
      await call.catch(() => undefined);
      await settle();
      expect(connects).toEqual(expect.arrayContaining([`${net}.1`, `${net}.2`]));
      expect(connects).not.toContain(`${net}.3`);
      // It stays foreseen: a later call dials it once a pin is loaded.
      pinHostKey(`${net}.3:22`, KEY, "state");
      dialForeseen();
      await settle();
      expect(connects).toContain(`${net}.3`);
    },
  );
});
