// The lifecycle verbs that reach the host (create, read, update, remove) against a fake host (host/fake.ts):
// what each asks of the host (the scripts), and the state it records from the captured answers.
import { afterEach, describe, expect, it } from "vitest";
import { HostAgent } from "../../../provider/host/agent";
import { createRule, readRule, removeRule, updateRule } from "../../../provider/lifecycle";
import type { Env } from "../../../provider/lifecycle";
import { successorOf } from "../../../provider/lineage";
import { check, fromStored } from "../../../provider/provider";
import type { PortRuleState } from "../../../provider/state";
import type { RuleInputs } from "../../../provider/rules";
import { forgetPins } from "../../../provider/ssh";
import { insertRuleText } from "../../fixtures/listing";
import { facts, first, guide } from "../host/batches";
import { FakeHost } from "../host/fake";
import { quick } from "../host/batches";
import type { SectionAnswer, StepAnswer } from "../host/fake";

const identity = { project: "web", stack: "prod", name: "app" };
/** The host key the fake host presents. */
const KEY = `SHA256:${"k".repeat(43)}`;
const CONFIRMED: StepAnswer = { confirm: { out: "confirmed" } };

type Inputs = RuleInputs & { unique: string; tag: string; rules: Record<string, string> };
async function inputs(args: Record<string, unknown> = {}): Promise<Inputs> {
  const r = await check(
    {},
    { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT", ipVersion: "ipv4", identity, ...args },
  );
  expect(r.failures).toEqual([]);
  return fromStored<Inputs>(r.inputs);
}
/** The guide's listing with the rule at `line` of INPUT. */
const withRule = (rule: string, line = 3, f: 4 | 6 = 4) => insertRuleText(guide(f), "filter", "INPUT", line, rule);

/** The verbs' surroundings on a fake host: its agent, and a log that keeps what it is told. */
function envOn(host: FakeHost) {
  const told: { info: string[]; warn: string[] } = { info: [], warn: [] };
  const session = host.session();
  // A well-formed fingerprint: update and refresh pin the one recorded in state for the host's address.
  if (session.hostKey) session.hostKey.fingerprint = KEY;
  const agent = new HostAgent(session, undefined, quick());
  const env: Env = {
    connect: async () => agent,
    log: { info: (m) => told.info.push(m), warn: (m) => told.warn.push(m) },
  };
  return { env, agent, told };
}

afterEach(() => forgetPins());

/** The rule without its tag, as made by hand, at `line` with counters. */
const handMade = (i: Inputs, line: number, counters = "[7:420]") =>
  withRule(i.rules.ipv4.replace(/ -m comment --comment "[^"]*"/, ""), line).replace(
    /\[0:0\] (-A INPUT -p tcp)/,
    `${counters} $1`,
  );

/** A created rule's state, as createRule records it on a fake host. */
async function created(args: Record<string, unknown> = {}): Promise<PortRuleState> {
  const i = await inputs(args);
  const host = new FakeHost([
    first({ save4: guide(4) }),
    { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(i.rules.ipv4) } },
    CONFIRMED,
  ]);
  const { env, agent } = envOn(host);
  const { outs } = await createRule(i, env);
  await agent.settled();
  return outs;
}

describe("create", () => {
  it("inserts the rule under its derived tag and records where it went, why, and that something listens", async () => {
    const i = await inputs();
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(i.rules.ipv4) } },
      CONFIRMED,
    ]);
    const { env, agent, told } = envOn(host);
    const { id, outs } = await createRule(i, env);
    await agent.settled();
    expect(id).toBe(i.tag);
    expect(host.scripts).toHaveLength(3);
    expect(host.scripts[1]).toContain(`-I INPUT 3 ${i.rules.ipv4.replace(/^-A INPUT /, "")}`);
    expect(outs).toMatchObject({
      unique: i.unique,
      tag: i.tag,
      host: "198.18.0.10",
      rules: { ipv4: i.rules.ipv4 },
      insertedAt: { ipv4: 3 },
      placement: { ipv4: "end of chain: it decides its packets there" },
      line: { ipv4: 3 },
      counters: { ipv4: { packets: 0, bytes: 0 } },
      packets: 0,
      bytes: 0,
      effective: true,
      shadowedBy: {},
      missing: [],
      backend: "nf_tables",
      iptablesVersion: "1.8.9",
      hostKeyFingerprint: KEY,
      listening: true,
      persisted: false,
      adopts: {},
      adopted: {},
    });
    expect(outs).not.toHaveProperty("proxyHostKeyFingerprint");
    expect(told.info).toEqual([
      `-I INPUT 3 ${i.rules.ipv4.slice("-A INPUT ".length)} on 198.18.0.10 (ipv4): end of chain: it decides its packets there`,
    ]);
    expect(told.warn).toEqual([]);
  });

  it("takes over its own rule left by an earlier try, under the next tag of its lineage", async () => {
    const i = await inputs();
    const next = i.tag.replace(i.unique, successorOf(i.unique));
    const nextRule = i.rules.ipv4.replace(i.tag, next);
    const host = new FakeHost([
      first({ save4: withRule(i.rules.ipv4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(nextRule) } },
      CONFIRMED,
    ]);
    const { env, agent } = envOn(host);
    const { id, outs } = await createRule(i, env);
    await agent.settled();
    expect(id).toBe(next);
    expect(outs).toMatchObject({ unique: successorOf(i.unique), tag: next, rules: { ipv4: nextRule } });
    expect(host.scripts[1]).toContain(`-D INPUT ${i.rules.ipv4.slice("-A INPUT ".length)}`);
  });

  it("adopt: takes a hand-made twin over in place, and records its line and the counters it kept", async () => {
    const i = await inputs({ adopt: true });
    const twin = i.rules.ipv4.replace(/ -m comment --comment "[^"]*"/, "");
    const host = new FakeHost([
      first({ save4: handMade(i, 2) }),
      {
        persist: {},
        arm: {},
        restore4: {},
        save4: { out: withRule(i.rules.ipv4, 2).replace("[0:0] -A INPUT -p", "[7:420] -A INPUT -p") },
      },
      CONFIRMED,
    ]);
    const { env, agent, told } = envOn(host);
    const { outs } = await createRule(i, env);
    await agent.settled();
    expect(outs).toMatchObject({
      adopts: { ipv4: twin },
      adopted: { ipv4: { line: 2, rule: twin, packets: 7, bytes: 420 } },
      counters: { ipv4: { packets: 7, bytes: 420 } },
      packets: 7,
      bytes: 420,
      line: { ipv4: 2 },
    });
    expect(told.warn).toEqual([]);
  });

  it("without adopt, inserts beside a hand-made twin and warns that it stays, untracked", async () => {
    const i = await inputs();
    const host = new FakeHost([
      first({ save4: handMade(i, 2) }),
      {
        persist: {},
        arm: {},
        restore4: {},
        save4: { out: insertRuleText(handMade(i, 2), "filter", "INPUT", 4, i.rules.ipv4) },
      },
      CONFIRMED,
    ]);
    const { env, agent, told } = envOn(host);
    const { outs } = await createRule(i, env);
    await agent.settled();
    expect(outs.adopted).toEqual({});
    expect(outs.counters).toEqual({ ipv4: { packets: 0, bytes: 0 } });
    expect(told.warn).toEqual([
      expect.stringMatching(
        /^INPUT on 198\.18\.0\.10 \(ipv4\) already holds this rule without a tag at line 2 .*set adopt: true/,
      ),
    ]);
  });

  it("a DROP records no listening; an ACCEPT on a host without ss says that is unknown; nobody listening is a warning", async () => {
    const drop = await inputs({ action: "DROP", port: 8080 });
    const ask = async (i: Inputs, listening: SectionAnswer) => {
      const host = new FakeHost([
        first({ save4: guide(4) }, { listening }),
        { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(i.rules.ipv4) } },
        CONFIRMED,
      ]);
      const { env, agent, told } = envOn(host);
      const { outs } = await createRule(i, env);
      await agent.settled();
      return { outs, told };
    };
    const dropped = await ask(drop, { out: "" });
    expect(dropped.outs).not.toHaveProperty("listening");
    expect(dropped.told.warn).toEqual([]);
    const unknown = await ask(await inputs(), { code: 127 });
    expect(unknown.outs).not.toHaveProperty("listening");
    expect(unknown.told.info[1]).toBe(
      "whether anything listens on tcp 2222 on 198.18.0.10 is unknown: the host has no ss",
    );
    const nobody = await ask(await inputs(), { out: "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*" });
    expect(nobody.outs.listening).toBe(false);
    expect(nobody.told.warn).toEqual([
      "nothing listens on tcp 2222 on 198.18.0.10: the port is open, but no service answers on it",
    ]);
  });

  it("both families: one insert per family, recorded per family", async () => {
    const i = await inputs({ ipVersion: "both" });
    const host = new FakeHost([
      first({ save4: guide(4), save6: guide(6) }),
      {
        persist: {},
        arm: {},
        restore4: {},
        restore6: {},
        save4: { out: withRule(i.rules.ipv4) },
        save6: { out: withRule(i.rules.ipv6, 3, 6) },
      },
      CONFIRMED,
    ]);
    const { env, agent, told } = envOn(host);
    const { outs } = await createRule(i, env);
    await agent.settled();
    expect(outs.rules).toEqual(i.rules);
    expect(Object.keys(outs.line)).toEqual(["ipv4", "ipv6"]);
    expect(told.info).toHaveLength(2);
  });

  it("refuses inputs made without the constructor (no identity), before connecting", async () => {
    const i = await inputs();
    const host = new FakeHost([]);
    const { env } = envOn(host);
    await expect(createRule({ ...i, identity: undefined }, env)).rejects.toThrow(/lack their identity/);
    expect(host.channels).toBe(0);
  });
});

describe("read (refresh)", () => {
  it("records the rule's line and counters as the listing shows them", async () => {
    const props = await created();
    const listing = withRule(props.rules.ipv4 ?? "", 2).replace("[0:0] -A INPUT -p", "[5:300] -A INPUT -p");
    const host = new FakeHost([], [{ ...facts, save4: { out: listing } }]);
    const { env } = envOn(host);
    const r = await readRule(props.tag, props, env);
    expect(r.id).toBe(props.tag);
    expect(r.props).toMatchObject({ line: { ipv4: 2 }, counters: { ipv4: { packets: 5, bytes: 300 } }, packets: 5 });
    expect(r.props).toMatchObject({ missing: [], effective: true });
    expect(host.runs).toHaveLength(1);
  });

  it("drops a rule that no listing shows, once the other backend's tables do not hold it either", async () => {
    const props = await created();
    const host = new FakeHost([], [{ ...facts, save4: { out: guide(4) } }, { other4: { out: guide(4) } }]);
    const { env, told } = envOn(host);
    expect(await readRule(props.tag, props, env)).toEqual({ id: "", props: {} });
    expect(host.runs[1]).toContain("iptables-legacy-save -c");
    expect(told.warn).toEqual([
      "app: the rule on INPUT of 198.18.0.10 (ACCEPT tcp 2222) is gone (ipv4): deleted by hand or by another tool. " +
        "Refresh drops it from state; the next pulumi up creates it again",
    ]);
  });

  it("refuses to call a rule gone that is in the other backend's tables", async () => {
    const props = await created();
    const host = new FakeHost(
      [],
      [{ ...facts, save4: { out: guide(4) } }, { other4: { out: withRule(props.rules.ipv4 ?? "") } }],
    );
    const { env } = envOn(host);
    await expect(readRule(props.tag, props, env)).rejects.toThrow(/switched from legacy to nf_tables/);
  });
});

describe("update", () => {
  it("a new login on the same host and key: connects, and records it without asking the host anything", async () => {
    const olds = { ...(await created()), proxyHostKeyFingerprint: "SHA256:gone" };
    const news = await inputs({ connection: { host: "198.18.0.10", user: "deploy" } });
    const host = new FakeHost([]);
    const { env } = envOn(host);
    const { outs } = await updateRule(olds, news, env);
    expect(host.scripts).toEqual([]);
    expect(host.runs).toEqual([]);
    expect(outs).toMatchObject({
      unique: olds.unique,
      tag: olds.tag,
      rules: olds.rules,
      hostKeyFingerprint: KEY,
    });
    expect(outs.connection.user).toBe("deploy");
    expect(outs).not.toHaveProperty("proxyHostKeyFingerprint");
  });

  it("with sudo: proves that sudo runs a shell as root", async () => {
    const olds = await created();
    const news = await inputs({ connection: { host: "198.18.0.10", user: "deploy", sudo: true } });
    const host = new FakeHost([], [{}]);
    const { env } = envOn(host);
    await updateRule(olds, news, env);
    expect(host.runs).toEqual(["true"]);
  });

  it("persist turned on: saves the ruleset, and records the mechanism and the family's file", async () => {
    const olds = await created();
    const news = await inputs({ persist: true });
    const listed = withRule(olds.rules.ipv4 ?? "");
    const host = new FakeHost([first({ save4: listed }, { owner: {} }), { persist: {}, boot: { out: listed } }]);
    const { env, agent } = envOn(host);
    const { outs } = await updateRule(olds, news, env);
    await agent.settled();
    // Nothing to restore: one step saves, and reads the boot file back.
    expect(host.scripts).toHaveLength(2);
    expect(host.scripts[1]).toMatch(/"\$PIT_M" persist\n/);
    expect(outs.persisted).toEqual({ mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4"] });
  });

  it("a comment-only change: swaps the recorded rule for the new one at its line, counters kept, same tag", async () => {
    const olds = { ...(await created({ comment: "old" })), packets: 7, bytes: 420 };
    const news = await inputs({ comment: "new" });
    const [was, now] = [olds.rules.ipv4 ?? "", news.rules.ipv4];
    expect(now).toBe(was.replace('"old ', '"new '));
    const listed = withRule(was).replace(`[0:0] ${was}`, `[7:420] ${was}`);
    const host = new FakeHost([
      first({ save4: listed }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(now) } },
      CONFIRMED,
    ]);
    const { env, agent, told } = envOn(host);
    const { outs } = await updateRule(olds, news, env);
    await agent.settled();
    expect(host.scripts[1]).toContain(
      `-I INPUT 3 -c 7 420 ${now.slice("-A INPUT ".length)}\n${was.replace(/^-A /, "-D ")}\n`,
    );
    // The undo armed before applying puts the old rule back with the same counters.
    expect(host.scripts[1]).toContain(`-I INPUT 3 -c 7 420 ${was.slice("-A INPUT ".length)}`);
    expect(outs).toMatchObject({
      tag: olds.tag,
      unique: olds.unique,
      rules: { ipv4: now },
      comment: "new",
      packets: 7,
    });
    expect(told.info).toEqual([
      `-R INPUT 3 ${now.slice("-A INPUT ".length)} on 198.18.0.10 (ipv4): comment updated in place, counters kept (7 packets, 420 bytes)`,
    ]);
  });

  it("a comment-only change whose recorded rule is gone: refused, nothing applied", async () => {
    const olds = await created({ comment: "old" });
    const news = await inputs({ comment: "new" });
    const host = new FakeHost([first({ save4: guide(4) })]);
    const { env, agent } = envOn(host);
    await expect(updateRule(olds, news, env)).rejects.toThrow(/is not on .* \(run pulumi refresh\)/);
    await agent.settled();
    expect(host.scripts.slice(1).join("")).not.toMatch(/-I INPUT|-D INPUT/);
  });

  it("after a host key change: lists the rule and records it as listed", async () => {
    const olds = { ...(await created()), hostKeyFingerprint: `SHA256:${"o".repeat(43)}` };
    const host = new FakeHost([], [{ ...facts, save4: { out: withRule(olds.rules.ipv4 ?? "", 1) } }]);
    const { env } = envOn(host);
    const { outs } = await updateRule(olds, await inputs(), env);
    expect(outs).toMatchObject({ hostKeyFingerprint: KEY, line: { ipv4: 1 }, missing: [] });
    expect(host.scripts).toEqual([]);
  });

  it("after a host key change, the rule gone: puts it back as a create would", async () => {
    const olds = { ...(await created()), hostKeyFingerprint: `SHA256:${"o".repeat(43)}` };
    const rule = olds.rules.ipv4 ?? "";
    const host = new FakeHost(
      [first({ save4: guide(4) }), { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(rule) } }, CONFIRMED],
      [{ ...facts, save4: { out: guide(4) } }, { other4: { out: guide(4) } }],
    );
    const { env, agent, told } = envOn(host);
    const { outs } = await updateRule(olds, await inputs(), env);
    await agent.settled();
    expect(outs).toMatchObject({ missing: [], tag: olds.tag, rules: { ipv4: rule }, insertedAt: { ipv4: 3 } });
    expect(told.info[0]).toMatch(/^-I INPUT 3 .* on 198\.18\.0\.10 \(ipv4\): /);
  });

  it("after a host key change, the rule gone and putting it back failing: recorded missing, with a warning", async () => {
    const olds = { ...(await created()), hostKeyFingerprint: `SHA256:${"o".repeat(43)}` };
    const host = new FakeHost([{ lock: { code: 1 } }], [{ ...facts, save4: { out: guide(4) } }, { other4: {} }]);
    const { env, agent, told } = envOn(host);
    const { outs } = await updateRule(olds, await inputs(), env);
    await agent.settled();
    expect(outs).toMatchObject({ missing: ["ipv4"], persisted: false, effective: false });
    expect(told.warn).toEqual([
      expect.stringMatching(
        /^the rule is not on 198\.18\.0\.10 \(ipv4: .*putting it back failed: .*lock.*the next pulumi up replaces it$/,
      ),
    ]);
  });
});

describe("remove", () => {
  it("deletes the recorded rule", async () => {
    const props = await created();
    const rule = props.rules.ipv4 ?? "";
    const host = new FakeHost([
      first({ save4: withRule(rule) }),
      { arm: {}, restore4: {}, save4: { out: guide(4) } },
      { confirm: { out: "confirmed" }, persist: {} },
    ]);
    const { env, agent } = envOn(host);
    await removeRule(props, env);
    await agent.settled();
    expect(host.scripts[1]).toContain(`-D INPUT ${rule.slice("-A INPUT ".length)}`);
    expect(host.runs).toEqual([]);
  });

  it("a rule gone already: nothing to delete, once the other backend's tables do not hold it", async () => {
    const props = await created();
    const host = new FakeHost([first({ save4: guide(4) }), { persist: {} }], [{ other4: {} }]);
    const { env, agent } = envOn(host);
    await removeRule(props, env);
    await agent.settled();
    expect(host.runs).toHaveLength(1);
  });

  it("refuses to remove the ACCEPT that lets the provider in, unless allowLockout", async () => {
    const props = await created({ port: 22 });
    const host = new FakeHost([first({ save4: withRule(props.rules.ipv4 ?? "") })]);
    const { env, agent } = envOn(host);
    await expect(removeRule(props, env)).rejects.toThrow(/Keep SSH open first .* set allowLockout: true/);
    await agent.settled();
    expect(host.scripts).toHaveLength(1);
  });

  it("gives an adopted rule with persist: false back, and says so", async () => {
    const i = await inputs({ adopt: true });
    const twin = i.rules.ipv4.replace(/ -m comment --comment "[^"]*"/, "");
    const props = {
      ...(await created({ adopt: true })),
      adopted: { ipv4: { line: 2, rule: twin, packets: 7, bytes: 420 } },
    };
    const host = new FakeHost([
      first({ save4: withRule(i.rules.ipv4, 2) }),
      { arm: {}, restore4: {}, save4: { out: handMade(i, 2, "[0:0]") } },
      { confirm: { out: "confirmed" }, persist: {} },
    ]);
    const { env, agent, told } = envOn(host);
    await removeRule(props, env);
    await agent.settled();
    expect(host.scripts[1]).toContain(`-I INPUT 2 -c 0 0 ${twin.slice("-A INPUT ".length)}`);
    expect(told.info).toEqual([expect.stringMatching(/^198\.18\.0\.10: gave back/)]);
  });
});
