// The host transaction against a fake shell (fake.ts): the exact remote scripts of each step, and
// what the agent concludes from the answers (captured nf_tables transcripts), for a create, an
// adoption, a refused second family, an undo a listing does not confirm, a failed save, a lock held
// elsewhere, a step past its deadline and a confirmation over a fresh connection.
import { afterEach, describe, expect, it, vi } from "vitest";
import { HostAgent } from "../../../provider/host/agent";
import type { HostError, InsertRequest } from "../../../provider/host/agent";
import { insertRuleText } from "../../fixtures/listing";
import { renderRule, ruleText } from "../../../provider/rules";
import { check } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";
import { FakeHost, shellSyntaxError, stable } from "./fake";
import type { SectionAnswer, StepAnswer } from "./fake";

const guide = (f: 4 | 6) => readFamilyFile("nf_tables", f, "allow-guide/save-c.txt");
const TAG = "pulumi-iptables:web/prod/app/0123456789ab";
const inputs = (args: Record<string, unknown> = {}) => {
  const r = check({}, { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT", ...args });
  expect(r.failures).toEqual([]);
  return r.inputs;
};
const text = (f: 4 | 6, args: Record<string, unknown> = {}) => ruleText("INPUT", renderRule(inputs(args), f, TAG));
const withRule = (f: 4 | 6, line = 3, args: Record<string, unknown> = {}) =>
  insertRuleText(guide(f), "filter", "INPUT", line, text(f, args));

function insert(args: Record<string, unknown> = {}, extra: Partial<InsertRequest> = {}): InsertRequest {
  const i = inputs(args);
  const fams = i.ipVersion === "both" ? ([4, 6] as const) : ([4] as const);
  return {
    kind: "insert",
    table: "filter",
    chain: "INPUT",
    specs: Object.fromEntries(fams.map((f) => [f, renderRule(i, f, TAG)])),
    tag: TAG,
    position: "auto",
    persist: i.persist,
    ...extra,
  };
}

const facts = {
  version: { out: "iptables v1.8.9 (nf_tables)" },
  persistence: { out: "netfilter-persistent /etc/iptables/rules.v4 /etc/iptables/rules.v6" },
};
const first = (saves: Record<string, string>, more: Record<string, SectionAnswer> = {}): StepAnswer => ({
  lock: {},
  reap: {},
  ...facts,
  listening: { out: "tcp LISTEN 0 128 0.0.0.0:2222 0.0.0.0:*" },
  ...more,
  ...Object.fromEntries(Object.entries(saves).map(([k, v]) => [k, { out: v }])),
});

function agentOn(host: FakeHost, fresh?: FakeHost) {
  return new HostAgent(host.session(), fresh ? () => fresh.session() : undefined);
}

async function failure(p: Promise<unknown>): Promise<HostError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "the change must fail").toBeInstanceOf(Error);
  return e as HostError;
}

function expectValidShell(host: FakeHost) {
  for (const s of [...host.scripts, ...host.runs]) expect(shellSyntaxError(s), s).toBeUndefined();
}

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

  it("fails at once when another run holds the lock, and says so", async () => {
    const host = new FakeHost([{ lock: { code: 1 } }]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.isLockBusy()).toBe(true);
    expect(e.message).toMatch(/could not take the host's lock .* within 5s/);
    expect(host.scripts).toHaveLength(1);
  });
});

describe("a confirmation that cannot claim the transaction (a /run turned read-only)", () => {
  it("undoes the change in the shell that holds the lock, and says so as far as a listing shows it", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4) } },
      { confirm: { code: 1, err: "transaction x is no longer pending" } },
      { restore4: {}, save4: { out: guide(4) } },
    ]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.message).toBe(
      "confirming the change on root@198.18.0.10:22 failed: transaction x is no longer pending; it was undone, and a listing shows none of the change on the host",
    );
    expect(host.scripts[3]).toContain(`-D INPUT ${text(4).slice("-A INPUT ".length)}`);
  });
});

describe("issue 21.9: an arm that fails", () => {
  it("says the rollback could not be armed and that a listing shows nothing applied, not that iptables refused", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      {
        persist: {},
        arm: { code: 1, err: "mkdir: cannot create directory: No space left on device" },
        save4: { out: guide(4) },
      },
    ]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.isRestoreRefused()).toBe(false);
    expect(e.message).toBe(
      "arming the rollback on root@198.18.0.10:22 failed: mkdir: cannot create directory: No space left on device, and a listing shows none of the change on the host",
    );
  });
});

describe("a refused second family", () => {
  const both = { ipVersion: "both" };
  const refused: StepAnswer = {
    persist: {},
    arm: { out: "12:00:30 UTC" },
    restore4: {},
    restore6: { code: 2, err: "ip6tables-restore: line 2 failed" },
    save4: { out: withRule(4, 3, both) },
    save6: { out: guide(6) },
  };

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

  it("when the listing still shows the first family: says so, and leaves the rollback armed", async () => {
    const host = new FakeHost([
      first({ save4: guide(4), save6: guide(6) }),
      refused,
      { restore4: { code: 1, err: "xtables lock" }, save4: { out: withRule(4, 3, both) }, save6: { out: guide(6) } },
    ]);
    const e = await failure(agentOn(host).change(insert(both)));
    expect(e.message).toMatch(/undoing it did not take: .*--dport 2222 .* is still on the host/);
    expect(e.message).toMatch(/the host reverts it by itself within 30s after this connection ends/);
    expect(e.message).not.toMatch(/none of it|was undone/);
    expect(host.scripts).toHaveLength(3); // no cancel
  });
});

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

describe("deadlines and lost connections", () => {
  it("a step that never answers fails at its deadline, says what may be on the host and when it reverts", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const host = new FakeHost([first({ save4: guide(4) }), "hang"]);
    const p = failure(agentOn(host).change(insert()));
    // Let the first step answer (the fake answers on setImmediate, which is not faked), then wait.
    for (let i = 0; i < 20; i++) {
      await vi.advanceTimersByTimeAsync(5);
      await new Promise((r) => setImmediate(r));
    }
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

  it("that cannot connect: not confirmed, the host reverts it", async () => {
    const host = new FakeHost([first({ save4: guide(4) }), applied()]);
    const fresh = new FakeHost([], ["drop"]);
    const e = await failure(agentOn(host, fresh).change(insert(drop22, { position: "top", freshConfirm: true })));
    expect(e.message).toMatch(/may cut off new SSH connections .* a fresh connection could not be made/);
    expect(e.message).toMatch(/not confirmed: the host reverts it by itself within 30s/);
    // Nothing was sent to confirm it.
    expect(host.scripts.some((s) => /" confirm\n/.test(s))).toBe(false);
  });

  it("issue 21.3: a confirmation that lost the claim to the rollback says the change was reverted, never created", async () => {
    const lost = {
      code: 3,
      err: "its rollback claimed it first: the host reverted the change (or is reverting it), it was not confirmed",
    };
    const host = new FakeHost([first({ save4: guide(4) }), applied(), { confirm: lost }, { save4: { out: guide(4) } }]);
    const fresh = new FakeHost([], [{ fresh: {} }]);
    const e = await failure(agentOn(host, fresh).change(insert(drop22, { position: "top", freshConfirm: true })));
    expect(e.message).toMatch(
      /confirming the change on \S+ failed: its rollback claimed it first: the host reverted the change .*, and a listing shows none of the change on the host$/,
    );
    expect(e.message).not.toMatch(/may or may not be confirmed/);
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
