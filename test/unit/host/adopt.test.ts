import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findTwin } from "../../../provider/host/adopt";
import { handMadeKept, planBatch, swapLines } from "../../../provider/host/plan";
import type { ChangeRequest, HostFacts } from "../../../provider/host/types";
import { check, makeTag, parseRuleset, renderRule, ruleText } from "../../../provider/rules";
import { BACKENDS, ROOT } from "../../fixtures/captures";

const TAG = makeTag({ project: "lab", stack: "dev", name: "block" }, "abcd1234"); // as scripts/capture-adopt.ts
const inputs = (news: Record<string, unknown>) => {
  const r = check({}, { connection: { host: "198.18.0.10" }, port: 8080, action: "DROP", ...news });
  expect(r.failures).toEqual([]);
  return r.inputs;
};

describe("adopting a rule made by hand", () => {
  for (const backend of BACKENDS) {
    it(`${backend}: the captured take-over: same line, counters kept, only the tag added`, () => {
      const read = (f: string) => readFileSync(join(ROOT, "adopt", backend, f), "utf8");
      const twinText = ruleText("INPUT", renderRule(inputs({}), 4));
      const tagged = ruleText("INPUT", renderRule(inputs({}), 4, TAG));
      // the hand-made `-A INPUT -p tcp --dport 8080 -j DROP`, as iptables lists it
      const twin = findTwin(parseRuleset(read("before.txt")), "filter", "INPUT", twinText);
      expect(twin).toEqual({ line: 2, rule: twinText, packets: 7n, bytes: 420n });
      expect(read("restore.txt")).toBe(
        `*filter\n${swapLines(twin!.rule, tagged, twin!.line, twin!).join("\n")}\nCOMMIT\n`,
      );
      const after = parseRuleset(read("after.txt")).tables.get("filter")!.chains.get("INPUT")!.rules;
      expect(after.map((r) => [r.line, r.text, r.counters])).toEqual([
        [1, "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", { packets: 12n, bytes: 720n }],
        [2, tagged, { packets: 7n, bytes: 420n }],
        [3, "-A INPUT -p udp -m udp --dport 53 -j ACCEPT", { packets: 3n, bytes: 180n }],
      ]);
      expect(findTwin(parseRuleset(read("after.txt")), "filter", "INPUT", twinText)).toBeUndefined();
    });
  }

  it("only an exact, untagged twin counts; the first one wins", () => {
    const twin = "-A INPUT -p tcp -m tcp --dport 8080 -j DROP";
    const rs = parseRuleset(
      [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        "[1:60] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
        `[2:120] -A INPUT -p tcp -m tcp --dport 8080 -m comment --comment ${TAG} -j DROP`,
        "[3:180] -A INPUT -s 198.18.9.0/24 -p tcp -m tcp --dport 8080 -j DROP",
        "[4:240] -A INPUT -p tcp -m tcp --dport 8080 -j DROP",
        "[5:300] -A INPUT -p tcp -m tcp --dport 8080 -j DROP",
        "COMMIT",
        "",
      ].join("\n"),
    );
    expect(findTwin(rs, "filter", "INPUT", twin)).toEqual({ line: 4, rule: twin, packets: 4n, bytes: 240n });
    expect(findTwin(rs, "filter", "FORWARD", twin)).toBeUndefined();
    expect(findTwin(rs, "filter", "INPUT", "-A INPUT -p tcp -m tcp --dport 8081 -j DROP")).toBeUndefined();
  });

  it("tags it in place with its counters, and the undo puts the hand-made text back at the same line", () => {
    const i = inputs({ comment: "app" });
    const twinText = ruleText("INPUT", renderRule(i, 4));
    expect(twinText).toBe("-A INPUT -p tcp -m tcp --dport 8080 -m comment --comment app -j DROP");
    const tagged = ruleText("INPUT", renderRule(i, 4, TAG));
    const c = { packets: 7n, bytes: 420n };
    // counters above 2^53 are written back exactly (a double would round them)
    expect(swapLines(twinText, tagged, 3, { packets: 9007199254740993n, bytes: 18446744073709551615n })[0]).toMatch(
      /^-I INPUT 3 -c 9007199254740993 18446744073709551615 -p tcp /,
    );
    expect(swapLines(twinText, tagged, 3, c)).toEqual([
      `-I INPUT 3 -c 7 420 -p tcp -m tcp --dport 8080 -m comment --comment "app ${TAG}" -j DROP`,
      "-D INPUT -p tcp -m tcp --dport 8080 -m comment --comment app -j DROP",
    ]);
    expect(swapLines(tagged, twinText, 3, c)).toEqual([
      "-I INPUT 3 -c 7 420 -p tcp -m tcp --dport 8080 -m comment --comment app -j DROP",
      `-D INPUT -p tcp -m tcp --dport 8080 -m comment --comment "app ${TAG}" -j DROP`,
    ]);
  });

  it("issue 21.5: adoption and give-back act on exact rule text, never on a line number alone", () => {
    // Planned against a listing where the twin is line 2: a writer that ignores the lock may insert above it
    // before the restore runs. Every line that takes a rule out names it by its exact text (a restore whose
    // rule is gone fails as a whole); a line number only says where a rule goes in (-I), never what goes out.
    const facts: HostFacts = {
      backend: "nf_tables",
      version: "1.8.9",
      hostKeyFingerprint: "SHA256:x",
      persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
    };
    const ctx = { target: "root@198.18.0.10:22", facts };
    const twinText = ruleText("INPUT", renderRule(inputs({}), 4));
    const tagged = ruleText("INPUT", renderRule(inputs({}), 4, TAG));
    const listing = (second: string) =>
      parseRuleset(
        `*filter\n:INPUT ACCEPT [0:0]\n[1:60] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n[7:420] ${second}\nCOMMIT\n`,
      );
    const adopt: ChangeRequest = {
      kind: "insert",
      table: "filter",
      chain: "INPUT",
      specs: { 4: renderRule(inputs({}), 4, TAG) },
      tag: TAG,
      position: "auto",
      persist: true,
      twins: { 4: twinText },
      adopt: true,
    };
    const del: ChangeRequest = {
      kind: "delete",
      table: "filter",
      chain: "INPUT",
      families: [4],
      tag: TAG,
      rules: { 4: tagged },
      persist: false,
      giveBack: { 4: twinText },
    };
    const adopted = planBatch([adopt], new Map([[4, listing(twinText)]]), ctx).plans.get(adopt)![4]!;
    const given = planBatch([del], new Map([[4, listing(tagged)]]), ctx).plans.get(del)![4]!;
    const spec = (t: string) => t.slice("-A INPUT ".length);
    expect(adopted).toMatchObject({
      apply: [`-I INPUT 2 -c 7 420 ${spec(tagged)}`, `-D INPUT ${spec(twinText)}`],
      undo: [`-I INPUT 2 -c 7 420 ${spec(twinText)}`, `-D INPUT ${spec(tagged)}`],
    });
    expect(given).toMatchObject({
      apply: [`-I INPUT 2 -c 7 420 ${spec(twinText)}`, `-D INPUT ${spec(tagged)}`],
      undo: [`-I INPUT 2 -c 7 420 ${spec(tagged)}`, `-D INPUT ${spec(twinText)}`],
    });
    for (const line of [...adopted.apply, ...adopted.undo, ...given.apply, ...given.undo])
      expect(line).toMatch(/^-I INPUT 2 -c 7 420 |^-D INPUT -p /);
  });
});

describe("an adoption with persist: false, in the boot files and on destroy (captured transcripts)", () => {
  const facts: HostFacts = {
    backend: "nf_tables",
    version: "1.8.9",
    hostKeyFingerprint: "SHA256:x",
    persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
  };
  const ctx = { target: "root@198.18.0.10:22", facts, origin: { clientAddress: "198.18.0.1", serverPort: 22 } };
  const twinText = ruleText("INPUT", renderRule(inputs({}), 4));
  const tagged = ruleText("INPUT", renderRule(inputs({}), 4, TAG));
  const INPUT = (text: string) =>
    parseRuleset(text)
      .tables.get("filter")!
      .chains.get("INPUT")!
      .rules.map((r) => [r.line, r.text]);

  it("persist turned off on an adopted rule: the files are to hold the hand-made rule again", () => {
    const off: ChangeRequest = {
      kind: "persist",
      table: "filter",
      chain: "INPUT",
      families: [4],
      tag: TAG,
      rules: { 4: tagged },
      persist: false,
      handMade: [{ rule: tagged, handMade: twinText }],
    };
    expect(handMadeKept([off], new Map())).toEqual([{ rule: tagged, handMade: twinText }]);
    expect(handMadeKept([{ ...off, persist: true }], new Map())).toEqual([]);
  });

  for (const backend of BACKENDS) {
    const read = (f: string) => readFileSync(join(ROOT, "adopt", backend, f), "utf8");
    it(`${backend}: the files are to hold the hand-made rule; persisted, the tagged one`, () => {
      const adopt = (persist: boolean): ChangeRequest => ({
        kind: "insert",
        table: "filter",
        chain: "INPUT",
        specs: { 4: renderRule(inputs({}), 4, TAG) },
        tag: TAG,
        position: "auto",
        persist,
        twins: { 4: twinText },
        adopt: true,
      });
      const listed = new Map([[4 as const, parseRuleset(read("before.txt"))]]);
      for (const persist of [false, true]) {
        const req = adopt(persist);
        const { plans } = planBatch([req], listed, ctx);
        expect(plans.get(req)?.[4]?.adopted).toBe(true);
        expect(handMadeKept([req], plans)).toEqual(persist ? [] : [{ rule: tagged, handMade: twinText }]);
      }
    });

    it(`${backend}: destroy gives the hand-made rule back at its line with its counters; no guard asked`, () => {
      const guard = () => "must not be asked: the verdict does not change";
      const del: ChangeRequest = {
        kind: "delete",
        table: "filter",
        chain: "INPUT",
        families: [4],
        tag: TAG,
        rules: { 4: tagged },
        persist: false,
        guard,
        giveBack: { 4: twinText },
      };
      const { plans, failed, expected } = planBatch([del], new Map([[4, parseRuleset(read("after.txt"))]]), ctx);
      expect(failed.size).toBe(0);
      expect(plans.get(del)?.[4]).toMatchObject({
        line: 2,
        rule: tagged,
        apply: [`-I INPUT 2 -c 7 420 ${twinText.slice("-A INPUT ".length)}`, tagged.replace(/^-A /, "-D ")],
        undo: [`-I INPUT 2 -c 7 420 ${tagged.slice("-A INPUT ".length)}`, twinText.replace(/^-A /, "-D ")],
      });
      // What the host holds after it is what it held before the adoption.
      const given = expected.get(4)!.tables.get("filter")!.chains.get("INPUT")!.rules;
      expect(given.map((r) => [r.line, r.text])).toEqual(INPUT(read("before.txt")));
      // Without giveBack (persist: true), destroy removes it.
      const removal = { ...del, giveBack: undefined, guard: undefined };
      const removed = planBatch([removal], new Map([[4, parseRuleset(read("after.txt"))]]), ctx);
      expect(removed.plans.get(removal)?.[4]?.apply).toEqual([tagged.replace(/^-A /, "-D ")]);
    });
  }
});
