// Taking the host (locked.ts) against a fake shell: a lock held elsewhere, and batches that keep
// arriving going on in the kept conversation (its shell, its lock, its listing) or starting afresh.
import { describe, expect, it } from "vitest";
import type { InsertRequest } from "../../../provider/host";
import { renderRule, ruleText } from "../../../provider/rules";
import { insertRuleText } from "../../fixtures/listing";
import { agentOn, expectValidShell, failure, first, guide, inputs, insert, TAG, text, withRule } from "./batches";
import { FakeHost } from "./fake";
import type { StepAnswer } from "./fake";

describe("a create", () => {
  it("fails at once when another run holds the lock, and says so", async () => {
    const host = new FakeHost([{ lock: { code: 1 } }]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.isLockBusy()).toBe(true);
    expect(e.message).toMatch(/could not take the host's lock .* within 5s/);
    expect(host.scripts).toHaveLength(1);
  });
});

describe("batches that keep arriving", () => {
  const TAG2 = "pulumi-iptables:web/prod/app2/0123456789ab";
  const second = (): InsertRequest => {
    const i = inputs({ port: 2223, ipVersion: "ipv4" });
    return { ...insert({ ipVersion: "ipv4" }), specs: { 4: renderRule(i, 4, TAG2) }, tag: TAG2 };
  };
  /** The answers of a batch's apply step (the listing after it) and of its commit step. */
  const applied = (save: string): StepAnswer => ({ persist: {}, arm: {}, restore4: {}, save4: { out: save } });
  const CONFIRMED: StepAnswer = { confirm: { out: "confirmed" } };
  const takesLock = (script: string) => /'@@pit-begin %s %s\\n' "\$PIT_M" lock\n/.test(script);
  const both = () => insertRuleText(withRule(4), "filter", "INPUT", 4, ruleText("INPUT", second().specs[4]!));

  it("go on in the same shell under the same lock, planned against the listing the last one left", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      applied(withRule(4)),
      CONFIRMED,
      applied(both()),
      CONFIRMED,
    ]);
    const agent = agentOn(host);
    await agent.change(insert({ ipVersion: "ipv4" }));
    const res = await agent.change(second());
    await agent.settled();
    // Planned against the first batch's confirming listing: below the first rule, no new listing.
    expect(res.families[4]).toMatchObject({ line: 4, rule: ruleText("INPUT", second().specs[4]!) });
    expect(host.channels).toBe(1);
    expect(host.scripts).toHaveLength(5);
    expect(host.scripts.filter(takesLock)).toHaveLength(1);
    expect(host.scripts[3]).toMatch(/pulumi-iptables\.tx/);
    expect(host.ends).toEqual(["exit 0\n"]);
    expect(host.released).toBe(1);
    expectValidShell(host);
  });

  it("issue 21.9: start afresh, not 'may be on the host', when the kept shell ended while it waited", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      applied(withRule(4)),
      CONFIRMED,
      first({ save4: withRule(4) }),
      applied(both()),
      CONFIRMED,
    ]);
    const agent = agentOn(host);
    await agent.change(insert({ ipVersion: "ipv4" }));
    // The link drops while the conversation waits for the next batch.
    host.opened[0].close();
    await new Promise((r) => setImmediate(r));
    const res = await agent.change(second());
    await agent.settled();
    expect(res.families[4]).toMatchObject({ line: 4 });
    expect(host.channels).toBe(2);
    expect(host.scripts.filter(takesLock)).toHaveLength(2);
  });

  it("go on for a third batch too: what the kept listing holds is handed on with it", async () => {
    const TAG3 = "pulumi-iptables:web/prod/app3/0123456789ab";
    const third = (): InsertRequest => {
      const i = inputs({ port: 2224, ipVersion: "ipv4" });
      return { ...insert({ ipVersion: "ipv4" }), specs: { 4: renderRule(i, 4, TAG3) }, tag: TAG3 };
    };
    const all3 = () => insertRuleText(both(), "filter", "INPUT", 5, ruleText("INPUT", third().specs[4]!));
    const host = new FakeHost([
      first({ save4: guide(4) }),
      applied(withRule(4)),
      CONFIRMED,
      applied(both()),
      CONFIRMED,
      applied(all3()),
      CONFIRMED,
    ]);
    const agent = agentOn(host);
    await agent.change(insert({ ipVersion: "ipv4" }));
    await agent.change(second());
    const res = await agent.change(third());
    await agent.settled();
    expect(res.families[4]?.line).toBe(5);
    expect(host.channels).toBe(1);
    expect(host.scripts.filter(takesLock)).toHaveLength(1);
  });

  it("start afresh where the kept listing lacks what the batch needs (another family)", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      applied(withRule(4)),
      CONFIRMED,
      first({ save4: withRule(4), save6: guide(6) }),
      // A delete takes its tag off the list of rules kept out of the boot files.
      { persist: {} },
    ]);
    const agent = agentOn(host);
    await agent.change(insert({ ipVersion: "ipv4" }));
    const del = { kind: "delete" as const, table: "filter", chain: "INPUT", families: [4, 6] as (4 | 6)[] };
    await agent.change({ ...del, tag: TAG2, rules: { 4: text(4).replace(TAG, TAG2) }, persist: false });
    await agent.settled();
    // The first conversation was closed (its lock released) before the second took the lock again.
    expect(host.channels).toBe(2);
    expect(host.ends).toEqual(["exit 0\n", "exit 0\n"]);
    expect(host.scripts.filter(takesLock)).toHaveLength(2);
  });

  it("end the conversation once none arrives within the idle window", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      applied(withRule(4)),
      CONFIRMED,
      first({ save4: withRule(4) }),
      applied(both()),
      CONFIRMED,
    ]);
    const agent = agentOn(host);
    await agent.change(insert({ ipVersion: "ipv4" }));
    await agent.settled();
    expect(host.ends).toEqual(["exit 0\n"]);
    await agent.change(second());
    await agent.settled();
    expect(host.channels).toBe(2);
  });
});
