// The host agent against a fake host (fake.ts): a read finds the rule by its exact text; a rule gone
// from the tables iptables uses now but in the other backend's is not called gone; a batch that
// iptables refused as a whole is run again one operation at a time, so one bad rule fails alone;
// changes the engine sends one by one share a transaction, and the conversation across its pauses.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { InsertRequest } from "../../../provider/host";
import { Arrivals, WINDOWS } from "../../../provider/host/gather";
import { renderRule, ruleText } from "../../../provider/rules";
import { insertRuleText } from "../../fixtures/listing";
import {
  agentOn,
  expectValidShell,
  facts,
  failure,
  first,
  guide,
  inputs,
  insert,
  TAG,
  text,
  withRule,
} from "./batches";
import { FakeHost } from "./fake";
import type { StepAnswer } from "./fake";

describe("a read", () => {
  it("finds the rule by its exact text, with its line and counters; a family that does not show it is gone", async () => {
    const host = new FakeHost([], [{ ...facts, save4: { out: withRule(4) } }]);
    const r = await agentOn(host).read("filter", "INPUT", TAG, { 4: text(4) }, "ACCEPT");
    expect(r.families[4]).toMatchObject({ line: 3, rule: text(4), packets: 0n, bytes: 0n });
    expect(r.facts.backend).toBe("nf_tables");
    expect(r.carried).toEqual([]);
    const gone = new FakeHost([], [{ ...facts, save4: { out: guide(4) } }]);
    expect((await agentOn(gone).read("filter", "INPUT", TAG, { 4: text(4) }, "ACCEPT")).families[4]).toBeUndefined();
    expectValidShell(host);
  });
});

describe("reads that arrive together", () => {
  const listing: StepAnswer = { ...facts, save4: { out: withRule(4) } };
  const read = (agent: ReturnType<typeof agentOn>) => agent.read("filter", "INPUT", TAG, { 4: text(4) }, "ACCEPT");

  it("share one listing: those of one moment, and those that come while it is on its way or just after it", async () => {
    const host = new FakeHost([], [listing, listing]);
    const agent = agentOn(host);
    const [a, b] = await Promise.all([read(agent), read(agent)]);
    expect(host.runs).toHaveLength(1);
    const c = await read(agent);
    expect(host.runs).toHaveLength(1);
    for (const r of [a, b, c]) expect(r.families[4]).toMatchObject({ line: 3, rule: text(4) });
    // Later than IDLE_MS after its answer: a listing of its own.
    await new Promise((r) => setTimeout(r, 40));
    await read(agent);
    expect(host.runs).toHaveLength(2);
  });

  it("never share one with a read after a change went through the agent", async () => {
    const host = new FakeHost([], [listing, listing]);
    const agent = agentOn(host);
    await read(agent);
    const change = agent.change(insert()).catch((e: Error) => e);
    await read(agent);
    expect(host.runs).toHaveLength(2);
    await change;
  });

  it("needing another family or what is beside the chain, list again", async () => {
    const host = new FakeHost([], [listing, { ...listing, save6: { out: guide(4) } }]);
    const agent = agentOn(host);
    await read(agent);
    await agent.read("filter", "INPUT", TAG, { 4: text(4), 6: text(4) }, "ACCEPT");
    expect(host.runs).toHaveLength(2);
    expect(host.runs[1]).toContain("ip6tables-save");
  });
});

describe("a rule in the other iptables backend's tables", () => {
  const afterRead = async (other: StepAnswer) => {
    const host = new FakeHost([], [{ ...facts, save4: { out: guide(4) } }, other]);
    const agent = agentOn(host);
    await agent.read("filter", "INPUT", TAG, { 4: text(4) }, "ACCEPT");
    return { host, agent };
  };

  it("is not called gone: the host was switched from legacy to nf_tables, and the error says how to go on", async () => {
    const { host, agent } = await afterRead({ other4: { out: withRule(4) } });
    const e = await failure(agent.refuseIfSwitched("filter", "INPUT", TAG, { 4: text(4) }, [4]));
    expect(e.kind).toBe("backend-switched");
    expect(e.command).toBe("iptables-legacy-save");
    expect(e.message).toMatch(
      /switched from legacy to nf_tables after the rule was made.* No rule was added or removed/,
    );
    expect(host.runs[1]).toContain("iptables-legacy-save -c");
    expectValidShell(host);
  });

  it("absent there too: the rule is gone, nothing is said", async () => {
    const { agent } = await afterRead({ other4: { out: guide(4) } });
    await expect(agent.refuseIfSwitched("filter", "INPUT", TAG, { 4: text(4) }, [4])).resolves.toBeUndefined();
  });

  it("is not looked for before a listing said which backend the host uses", async () => {
    const host = new FakeHost([], []);
    await agentOn(host).refuseIfSwitched("filter", "INPUT", TAG, { 4: text(4) }, [4]);
    expect(host.runs).toEqual([]);
  });
});

describe("a batch that iptables refused as a whole", () => {
  const TAG2 = "pulumi-iptables:web/prod/app2/0123456789ab";
  const second = (): InsertRequest => ({
    ...insert(),
    specs: { 4: renderRule(inputs({ port: 2223 }), 4, TAG2) },
    tag: TAG2,
  });
  const refused = (save: string): StepAnswer => ({
    persist: {},
    arm: {},
    restore4: { code: 2, err: "iptables-restore: line 3 failed" },
    save4: { out: save },
  });
  const CONFIRMED: StepAnswer = { confirm: { out: "confirmed" } };

  it("runs again one operation at a time: the good one goes in, the bad one fails alone", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      refused(guide(4)),
      CONFIRMED, // the rollback cancelled: a listing shows none of the batch
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4) } },
      CONFIRMED,
      refused(withRule(4)), // the second alone, in the conversation the first left
      CONFIRMED,
    ]);
    const agent = agentOn(host);
    const [one, two] = await Promise.allSettled([agent.change(insert()), agent.change(second())]);
    expect(one).toMatchObject({ status: "fulfilled", value: { tag: TAG, families: { 4: { line: 3 } } } });
    expect(two.status).toBe("rejected");
    const e = (two as PromiseRejectedResult).reason;
    expect(e.isRestoreRefused()).toBe(true);
    expect(e.message).toMatch(
      /iptables-restore on \S+ refused the change: .*line 3 failed, and a listing shows none of it/,
    );
    expect(host.channels).toBe(2);
    expect(host.answers).toEqual([]);
    await agent.settled();
    expectValidShell(host);
  });
});

describe("changes the engine sends one by one (gather.ts, on a fake clock)", () => {
  const other = (port: number): InsertRequest => {
    const tag = `pulumi-iptables:web/prod/app${port}/0123456789ab`;
    return { ...insert(), specs: { 4: renderRule(inputs({ port }), 4, tag) }, tag };
  };
  const CONFIRMED: StepAnswer = { confirm: { out: "confirmed" } };
  /** Lets `ms` pass on the fake clock, a millisecond at a time, with the fake host's answers (real setImmediate). */
  async function pass(ms: number) {
    for (let t = 0; t < ms; t++) {
      await vi.advanceTimersByTimeAsync(1);
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    }
  }
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("that arrive less than the quiet window apart share one transaction", async () => {
    const host = new FakeHost([first({ save4: guide(4) }), "drop"]);
    const agent = agentOn(host, undefined, new Arrivals());
    // The step after the listing ends the connection: the changes fail, what they sent is recorded.
    const failed = (port: number) => agent.change(other(port)).catch((e: Error) => e);
    const changes = [failed(2222)];
    for (const port of [2223, 2224]) {
      await pass(20);
      changes.push(failed(port));
    }
    await pass(100);
    for (const e of await Promise.all(changes)) expect(e).toBeInstanceOf(Error);
    expect(host.channels).toBe(1);
    expect(host.scripts).toHaveLength(2);
    for (const port of [2222, 2223, 2224]) expect(host.scripts[1]).toContain(`--dport ${port} `);
  });

  it("keep the conversation across the engine's pause between waves, which closes after the keep window", async () => {
    const one = withRule(4);
    const two = insertRuleText(one, "filter", "INPUT", 4, ruleText("INPUT", other(2223).specs[4]!));
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: one } },
      CONFIRMED,
      { persist: {}, arm: {}, restore4: {}, save4: { out: two } },
      CONFIRMED,
      "drop",
    ]);
    const agent = agentOn(host, undefined, new Arrivals());
    const a = agent.change(insert());
    await pass(100);
    expect((await a).families[4]).toMatchObject({ line: 3 });
    // 100 ms after the answer: five times the old 20 ms window, within the keep window.
    await pass(100);
    const b = agent.change(other(2223));
    await pass(100);
    expect((await b).families[4]).toMatchObject({ line: 4 });
    expect(host.channels).toBe(1);
    expect(host.scripts).toHaveLength(5);
    expect(host.released).toBe(0);
    await pass(WINDOWS.keep);
    expect(host.released).toBe(1);
    // A change after that opens a new conversation.
    const c = agent.change(other(2224)).catch((e: Error) => e);
    await pass(100);
    await c;
    expect(host.channels).toBe(2);
    await agent.settled();
    expectValidShell(host);
  });
});
