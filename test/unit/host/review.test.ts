// Confirming (pure): the listing after the restore confirms the batch, or says what to fix: a rule
// another writer removed drops its request (and its other families), an `auto` rule a new rule above
// shadows is moved back, a deleted rule that is back is deleted again.
import { describe, expect, it } from "vitest";
import { review, shows } from "../../../provider/host/review";
import { asDelete, planBatch } from "../../../provider/host/plan";
import { withDeleted, withInserted } from "../../../provider/host/ruleset-text";
import type { ChangeRequest, HostFacts, InsertRequest } from "../../../provider/host/types";
import type { Ruleset } from "../../../provider/rules";
import { check, parseRuleset, renderRule, ruleText } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";

const facts = { persistence: { mechanism: "iptables-save", files: ["a", "b"] } } as unknown as HostFacts;
const target = "root@198.18.0.10:22";
const TAG = "pulumi-iptables:web/prod/app/0123456789ab";
const base = () => parseRuleset(readFamilyFile("nf_tables", 4, "ends-in-drop/save-c.txt"));
const { inputs } = check({}, { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT", ipVersion: "both" });
const req: InsertRequest = {
  kind: "insert",
  table: "filter",
  chain: "INPUT",
  specs: { 4: renderRule(inputs, 4, TAG), 6: renderRule(inputs, 6, TAG) },
  tag: TAG,
  position: "auto",
  persist: false,
};
const text = ruleText("INPUT", req.specs[4]!);
const six = () => parseRuleset(readFamilyFile("nf_tables", 6, "ends-in-drop/save-c.txt"));
const text6 = ruleText("INPUT", req.specs[6]!);

function planned() {
  const { plans, expected } = planBatch(
    [req],
    new Map([
      [4, base()],
      [6, six()],
    ]),
    { target, facts },
  );
  exp = expected;
  return plans;
}
/** The rulesets the last planned() plans lead to. */
let exp: Map<4 | 6, Ruleset> = new Map();
const line = (rs: Ruleset) => rs.tables.get("filter")!.chains.get("INPUT")!.rules.length;

describe("review", () => {
  it("confirms a batch the listing shows in place", () => {
    const plans = planned();
    const l4 = plans.get(req)![4]!.line;
    const after = new Map([
      [4 as const, withInserted(base(), "filter", "INPUT", l4, text)],
      [6 as const, withInserted(six(), "filter", "INPUT", plans.get(req)![6]!.line, text6)],
    ]);
    const r = review(after, [req], plans, 0, target, exp);
    expect(r.fixes.size).toBe(0);
    expect(r.dropped.size).toBe(0);
  });

  it("drops a request whose rule another writer removed, and removes its other family", () => {
    const plans = planned();
    const after = new Map([
      [4 as const, base()],
      [6 as const, withInserted(six(), "filter", "INPUT", plans.get(req)![6]!.line, text6)],
    ]);
    const r = review(after, [req], plans, 0, target, exp);
    expect(r.dropped.get(req)?.message).toMatch(/was removed from .* right after it was inserted/);
    expect(r.fixes.get(6)).toEqual([asDelete(text6)]);
  });

  it("issue 21.5: a dropped request gives its adopted rule back (exact text, counters kept), never deletes it", () => {
    // ipVersion both: IPv4 adopts the hand-made 2222 ACCEPT at line 3, IPv6 inserts; another writer removes
    // the IPv6 rule: the request is dropped, and the operator's IPv4 rule must stay on the host.
    const twin = ruleText("INPUT", renderRule(inputs, 4));
    const adopt: InsertRequest = { ...req, twins: { 4: twin }, adopt: true };
    const hand = parseRuleset(
      readFamilyFile("nf_tables", 4, "ends-in-drop/save-c.txt").replace(
        "[37:2220] -A INPUT -j DROP",
        `[5:300] ${twin}\n[37:2220] -A INPUT -j DROP`,
      ),
    );
    const { plans, expected } = planBatch(
      [adopt],
      new Map([
        [4, hand],
        [6, six()],
      ]),
      { target, facts },
    );
    expect(plans.get(adopt)![4]).toMatchObject({ adopted: true, line: 4 });
    const adopted = withInserted(withDeleted(hand, "filter", "INPUT", 4), "filter", "INPUT", 4, text);
    const r = review(
      new Map([
        [4, adopted],
        [6, six()],
      ]),
      [adopt],
      plans,
      0,
      target,
      expected,
    );
    expect(r.dropped.get(adopt)?.message).toMatch(/was removed from .* right after it was inserted/);
    expect(r.fixes.get(4)).toEqual([`-I INPUT 4 -c 0 0 ${twin.slice("-A INPUT ".length)}`, asDelete(text)]);
  });

  it("moves an auto rule back above a DROP another writer put above it", () => {
    const plans = planned();
    const l4 = plans.get(req)![4]!.line;
    const dropAll = "-A INPUT -p tcp -j DROP";
    const moved = withInserted(withInserted(base(), "filter", "INPUT", l4, text), "filter", "INPUT", 1, dropAll);
    const after = new Map([
      [4 as const, moved],
      [6 as const, withInserted(six(), "filter", "INPUT", plans.get(req)![6]!.line, text6)],
    ]);
    const r = review(after, [req], plans, 0, target, exp);
    expect(r.dropped.size).toBe(0);
    expect(r.fixes.get(4)).toEqual([asDelete(text), text.replace(/^-A INPUT /, "-I INPUT 1 ")]);
    expect(r.plans.get(req)![4]!.reason).toMatch(/moved back/);
    expect(r.plans.get(req)![4]!.line).toBe(1);
    // The review returns the plans revised; the caller's are left as they were.
    expect(plans.get(req)![4]!.reason).not.toMatch(/moved back/);
    expect(plans.get(req)![4]!.line).toBe(l4);
    expect(line(moved)).toBeGreaterThan(0);
  });

  it("deletes again a deleted rule that is still listed", () => {
    const save = withInserted(base(), "filter", "INPUT", 1, text);
    const del: ChangeRequest = {
      kind: "delete",
      table: "filter",
      chain: "INPUT",
      families: [4],
      tag: TAG,
      rules: { 4: text },
      persist: false,
    };
    const { plans, expected } = planBatch([del], new Map([[4, save]]), { target, facts });
    expect(review(new Map([[4, save]]), [del], plans, 0, target, expected).fixes.get(4)).toEqual([asDelete(text)]);
    expect(
      review(new Map([[4, withDeleted(save, "filter", "INPUT", 1)]]), [del], plans, 0, target, expected).fixes.size,
    ).toBe(0);
  });
});

describe("shows", () => {
  it("finds the request's own rule by its exact text, per family: a rule that only carries its tag is not it", () => {
    const save = withInserted(base(), "filter", "INPUT", 1, text);
    const listed = new Map([
      [4, save],
      [6, six()],
    ] as const);
    expect(shows(listed, req, 4)).toBe(true);
    expect(shows(listed, req, 6)).toBe(false);
    const copy = withInserted(base(), "filter", "INPUT", 1, text.replace("--dport 2222", "--dport 8443"));
    expect(shows(new Map([[4, copy]]), req, 4)).toBe(false);
  });
});

describe("a dropped takeover", () => {
  it("puts back the rule it took over, not only removes its own (review)", () => {
    const NEXT = "pulumi-iptables:web/prod/app/ba9876543210";
    const next = (f: 4 | 6) => req.specs[f]!.map((x) => x.replace(TAG, NEXT));
    const retry: InsertRequest = { ...req, successors: [{ tag: NEXT, specs: { 4: next(4), 6: next(6) } }] };
    // An earlier try left this resource's own rule at line 1 of both families: the create takes it over.
    const before = new Map([
      [4, withInserted(base(), "filter", "INPUT", 1, text)],
      [6, withInserted(six(), "filter", "INPUT", 1, text6)],
    ] as const);
    const { plans, resolved, expected } = planBatch([retry], before, { target, facts });
    const taken = resolved.get(retry)!;
    expect(taken.tag).toBe(NEXT);
    // After the restore another writer removed the IPv6 rule: the request is dropped, and its IPv4 rule
    // goes with the rule it took over put back.
    const nextText = ruleText("INPUT", next(4));
    const after = new Map([
      [4, withInserted(base(), "filter", "INPUT", 1, nextText)],
      [6, six()],
    ] as const);
    const r = review(after, [taken], plans, 0, target, expected);
    expect([...r.dropped.keys()]).toEqual([taken]);
    expect(r.fixes.get(4)).toEqual([asDelete(nextText), text.replace(/^-A INPUT /, "-I INPUT 1 ")]);
  });
});
