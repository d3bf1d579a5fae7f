// The host transaction against a fake shell (fake.ts), through the agent: the exact remote scripts of
// a create, an adoption, a refused second family and a confirmation over a fresh connection, and what
// the error says may be on the host when a step fails (a deadline, a lost connection). The steps
// have their own tests: locked.test.ts, apply.test.ts, undo.test.ts, confirm-save.test.ts.
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { InsertRequest } from "../../../provider/host";
import { HostAgent } from "../../../provider/host/agent";
import { restDigest } from "../../../provider/host/confirm-listing";
import { renderRule, ruleText } from "../../../provider/rules";
import { insertRuleText } from "../../fixtures/listing";
import {
  agentOn,
  expectValidShell,
  failure,
  first,
  guide,
  inputs,
  insert,
  refusedSecondFamily,
  TAG,
  text,
  withRule,
} from "./batches";
import { FakeHost, stable } from "./fake";
import type { StepAnswer } from "./fake";

afterEach(() => {
  vi.useRealTimers();
});

describe("a create", () => {
  it("locks and lists, arms the rollback and restores, confirms: the exact scripts", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: { out: "12:00:30 UTC" }, restore4: {}, save4: { out: withRule(4) } },
      { confirm: { out: "confirmed" } },
    ]);
    const agent = agentOn(host);
    const res = await agent.change(insert());
    expect(res.families[4]).toMatchObject({ line: 3, rule: text(4) });
    expect(res.families[4]?.tookOver).toBeUndefined();
    expect(stable(host.scripts)).toMatchSnapshot();
    // The conversation is kept for a next batch a moment longer, then closed: the lock is free.
    await agent.settled();
    expect(host.ends).toEqual(["exit 0\n"]);
    expect(host.released).toBe(1);
    expectValidShell(host);
  });

  it("takes over its own identical rule left by an earlier run, in place under the next tag", async () => {
    const next = "pulumi-iptables:web/prod/app/ba9876543210";
    const req = insert();
    const nextSpec = req.specs[4]!.map((x) => x.replace(TAG, next));
    const nextText = ruleText("INPUT", nextSpec);
    const after = insertRuleText(guide(4), "filter", "INPUT", 3, nextText);
    const host = new FakeHost([
      first({ save4: withRule(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: after } },
      { confirm: { out: "confirmed" } },
    ]);
    const res = await agentOn(host).change({ ...req, successors: [{ tag: next, specs: { 4: nextSpec } }] });
    expect(res.tag).toBe(next);
    expect(res.families[4]).toMatchObject({ line: 3, tookOver: [TAG], rule: nextText });
    expect(host.scripts[1]).toContain(`-I INPUT 3 ${nextText.replace(/^-A INPUT /, "")}`);
    expect(host.scripts[1]).toContain(`-D INPUT ${text(4).replace(/^-A INPUT /, "")}`);
    expect(host.scripts).toHaveLength(3);
    expectValidShell(host);
  });

  it("leaves alone a rule with its tag but another spec (not its own), and names it in a warning", async () => {
    const copy = text(4, { port: 2223 });
    const other = insertRuleText(guide(4), "filter", "INPUT", 3, copy);
    const host = new FakeHost([
      first({ save4: other }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: insertRuleText(other, "filter", "INPUT", 3, text(4)) } },
      { confirm: { out: "confirmed" } },
    ]);
    const warn = vi.fn();
    const session = host.session();
    session.log.warn = warn;
    await new HostAgent(session).change(insert());
    expect(host.scripts[1]).toMatch(
      /\n-I INPUT \d -p tcp -m tcp --dport 2222 .*pulumi-iptables:web\/prod\/app\/0123456789ab/,
    );
    expect(host.scripts.join("\n")).not.toContain("2223");
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/INPUT:3 carries the tag .* left alone/));
  });
});

describe("a refused second family", () => {
  const both = { ipVersion: "both" };
  const refused = refusedSecondFamily();

  it("undoes the first family, and says so only once a listing shows it; cancels the rollback", async () => {
    const host = new FakeHost([
      first({ save4: guide(4), save6: guide(6) }),
      refused,
      { restore4: {}, save4: { out: guide(4) }, save6: { out: guide(6) } },
      { confirm: { out: "confirmed" } },
    ]);
    const e = await failure(agentOn(host).change(insert(both)));
    expect(e.isRestoreRefused()).toBe(true);
    expect(e.message).toMatch(
      /ip6tables-restore on root@198\.18\.0\.10:22 refused the change: .*line 2 failed; the IPv4 half was undone, and a listing shows none of it on the host/,
    );
    expect(stable(host.scripts.slice(2))).toMatchSnapshot();
    expectValidShell(host);
  });
});

describe("deadlines and lost connections", () => {
  it("a step that never answers fails at its deadline, says what may be on the host and when it reverts", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const host = new FakeHost([first({ save4: guide(4) }), "hang"]);
    const p = failure(agentOn(host).change(insert()));
    // Let the first step answer and the second be sent (the fake answers on setImmediate and the agent
    // batches with node:timers/promises, neither of them faked: real waits), then let the deadline pass.
    for (let i = 0; i < 400 && host.scripts.length < 2; i++) {
      await vi.advanceTimersByTimeAsync(5);
      await delay(5);
    }
    expect(host.scripts).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(60_000);
    const e = await p;
    expect(e.isInterrupted()).toBe(true);
    expect(e.message).toMatch(
      /applying the change on root@198\.18\.0\.10:22 did not finish within 7s: the change may be on the host, not confirmed: the host reverts it by itself within 30s/,
    );
    expect(host.released).toBe(1);
  });

  it("a connection lost while confirming: may or may not be confirmed, taken over by the next up if it stays", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4) } },
      "drop",
    ]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.message).toMatch(
      /ended in the middle of a step: the change is on the host and may or may not be confirmed/,
    );
    expect(e.message).toMatch(/the next pulumi up takes it over/);
  });

  it("a lost connection before anything was sent says so", async () => {
    const host = new FakeHost(["drop"]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.message).toMatch(/nothing had been sent to change the host yet/);
  });
});

describe("a change that may cut off new SSH connections", () => {
  const drop22 = { port: 22, action: "DROP", allowLockout: true };
  const applied = (): StepAnswer => ({ persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4, 1, drop22) } });
  it("issue 21.3: a fresh connection proves new ones work; the shell that holds the lock confirms", async () => {
    const host = new FakeHost([first({ save4: guide(4) }), applied(), { confirm: { out: "confirmed" } }]);
    const fresh = new FakeHost([], [{ fresh: {} }]);
    const res = await agentOn(host, fresh).change(insert(drop22, { position: "top", freshConfirm: true }));
    expect(res.families[4]?.line).toBe(1);
    // The fresh connection only runs `true`: it neither confirms nor touches the pending transaction.
    expect(fresh.runs).toHaveLength(1);
    expect(fresh.runs[0]).not.toMatch(/pulumi-iptables\.tx/);
    expect(stable(fresh.runs)).toMatchSnapshot();
    expect(host.scripts[2]).toMatch(/'@@pit-begin %s %s\\n' "\$PIT_M" confirm\n/);
    expectValidShell(fresh);
    expectValidShell(host);
  });
});

describe("batches of one conversation", () => {
  const TAG2 = "pulumi-iptables:web/prod/app2/0123456789ab";
  const second = (): InsertRequest => ({
    ...insert(),
    specs: { 4: renderRule(inputs({ port: 2223 }), 4, TAG2) },
    tag: TAG2,
  });
  /** INPUT of an iptables-save listing as `iptables -v -S INPUT` prints it. */
  const inputOf = (save: string) =>
    save
      .split("\n")
      .flatMap((l) => {
        const policy = /^:INPUT (\S+) \[(\d+):(\d+)\]$/.exec(l);
        if (policy) return [`-P INPUT ${policy[1]} -c ${policy[2]} ${policy[3]}`];
        const rule = /^\[(\d+):(\d+)\] (-A INPUT .*?)( -j .*)?$/.exec(l);
        return rule ? [`${rule[3]} -c ${rule[1]} ${rule[2]}${rule[4] ?? ""}`] : [];
      })
      .join("\n");

  it("are confirmed from the chain they edited and a digest of the rest: the table is listed once", async () => {
    const one = withRule(4);
    const two = insertRuleText(one, "filter", "INPUT", 4, ruleText("INPUT", second().specs[4]!));
    const digest = restDigest(guide(4), ["INPUT"]);
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, digest4: { out: digest }, chains4: { out: inputOf(one) } },
      { confirm: { out: "confirmed" } },
      { persist: {}, arm: {}, restore4: {}, digest4: { out: digest }, chains4: { out: inputOf(two) } },
      { confirm: { out: "confirmed" } },
    ]);
    const agent = agentOn(host);
    expect((await agent.change(insert())).families[4]).toMatchObject({ line: 3, rule: text(4) });
    const res = await agent.change(second());
    expect(res.families[4]).toMatchObject({ line: 4, rule: ruleText("INPUT", second().specs[4]!) });
    // The apply steps' answers hold no whole table (no save4): where each rule is, and the second
    // batch's plan, come from the chain listed after the first restore. Each apply step compares the
    // digest of the rest of the first listing (INPUT left out), which carries over from batch to batch.
    for (const s of [host.scripts[1], host.scripts[3]]) {
      expect(s).toContain(`[ "$d" = ${digest} ]`);
      expect(s).toContain("iptables -w 5 -t filter -v -S INPUT");
    }
    await agent.settled();
    expect(host.released).toBe(1);
    expectValidShell(host);
  });
});
