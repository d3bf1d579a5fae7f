// The host agent against a fake host (fake.ts): a read finds the rule by its exact text; a rule gone
// from the tables iptables uses now but in the other backend's is not called gone; a batch that
// iptables refused as a whole is run again one operation at a time, so one bad rule fails alone.
import { describe, expect, it } from "vitest";
import type { InsertRequest } from "../../../provider/host";
import { renderRule } from "../../../provider/rules";
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
