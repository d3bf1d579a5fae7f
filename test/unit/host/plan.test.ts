// Planning (pure) against captured listings: where an insert goes and the line that undoes it, a
// delete's undo at its old line, adoption of an identical rule with our tag, refusals that fail one
// request alone, and the persistence change after confirming.
import { describe, expect, it } from "vitest";
import { asDelete, asInsert, linesOf, persistChange, planBatch, transientTags } from "../../../provider/host/plan";
import { withInserted } from "../../../provider/host/ruleset-text";
import type { ChangeRequest, HostFacts, InsertRequest } from "../../../provider/host/types";
import { check, parseRuleset, renderRule, ruleText } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";

const facts: HostFacts = {
  backend: "nf_tables",
  version: "1.8.9",
  hostKeyFingerprint: "SHA256:x",
  listening: new Set(),
  persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
};
const ctx = { target: "root@198.18.0.10:22", facts };
const tag = (n: number) => `pulumi-iptables:web/prod/r${n}/00000000000${n}`;

function insert(n: number, args: Record<string, unknown> = {}): InsertRequest {
  const { inputs } = check({}, { connection: { host: "198.18.0.10" }, port: 2220 + n, action: "ACCEPT", ...args });
  return {
    kind: "insert",
    table: "filter",
    chain: inputs.chain,
    specs: { 4: renderRule(inputs, 4, tag(n)) },
    tag: tag(n),
    position: inputs.position,
    persist: inputs.persist,
  };
}
/** The insert's rule under another tag. */
const renderWith = (r: InsertRequest, t: string) => r.specs[4]!.map((x) => x.replace(r.tag, t));
const listing = (scenario: string) => parseRuleset(readFamilyFile("legacy", 4, `${scenario}/save-c.txt`));
const listed = (scenario: string) => new Map([[4 as const, listing(scenario)]]);
/** The allow guide's listing with `text` as rule `line` of INPUT. */
const guideWith = (line: number, text: string) => withInserted(listing("allow-guide"), "filter", "INPUT", line, text);

describe("planBatch", () => {
  it("places each insert against the listing as the earlier ones leave it", () => {
    const a = insert(1);
    const b = insert(2);
    const { plans, failed } = planBatch([a, b], listed("allow-guide"), ctx);
    expect(failed.size).toBe(0);
    const text = (r: InsertRequest) => ruleText("INPUT", r.specs[4]!);
    expect(plans.get(a)?.[4]).toMatchObject({ line: 3, apply: [asInsert(text(a), 3)], undo: [asDelete(text(a))] });
    expect(plans.get(b)?.[4]?.line).toBe(4);
    // Undo runs backwards: the later insert is removed first.
    expect(linesOf(plans, 4).undo).toEqual([asDelete(text(b)), asDelete(text(a))]);
  });

  it("takes over its own identical rule in place under the lineage's next tag: never a duplicate", () => {
    const a = insert(1);
    const req = { ...a, successors: [{ tag: tag(7), specs: { 4: renderWith(a, tag(7)) } }] };
    const old = ruleText("INPUT", a.specs[4]!);
    const save = guideWith(2, old);
    const { plans, resolved } = planBatch([req], new Map([[4, save]]), ctx);
    const r = resolved.get(req)!;
    expect(r.tag).toBe(tag(7));
    const now = ruleText("INPUT", renderWith(a, tag(7)));
    expect(plans.get(r)?.[4]).toMatchObject({
      line: 2,
      tookOver: [tag(1)],
      apply: [asInsert(now, 2), asDelete(old)],
      undo: [asDelete(now), asInsert(old, 2)],
    });
    // Persisted, the files are rewritten without the old tag.
    expect(persistChange([{ ...r, persist: true }])).toMatchObject({
      save: true,
      present: [{ tag: tag(7), families: [4] }],
      absent: [tag(1)],
    });
  });

  it("fails alone a guard refusal and an owner refusal; a rule that only carries the tag is not in the way", () => {
    const a = insert(1);
    const taken = { ...insert(2), tag: tag(1) };
    const guarded = { ...insert(3), guard: () => "would cut off the provider" };
    const owned = insert(4, { persist: true });
    const save = guideWith(1, ruleText("INPUT", a.specs[4]!));
    const { plans, failed } = planBatch([taken, guarded, owned, insert(5)], new Map([[4, save]]), {
      ...ctx,
      facts: { ...facts, owner: "ufw" },
      origin: { clientAddress: "198.18.0.1", serverPort: 22 },
    });
    expect([...failed.keys()]).toEqual([guarded, owned]);
    expect(failed.get(guarded)?.message).toBe("would cut off the provider");
    expect(failed.get(owned)?.message).toMatch(/ufw owns the firewall policy/);
    expect(plans.size).toBe(2);
    // The listed rule with tag(1) but another spec is neither taken over nor deleted.
    const apply = plans.get(taken)?.[4]?.apply ?? [];
    expect(apply).toEqual([asInsert(ruleText("INPUT", taken.specs[4]!), plans.get(taken)![4]!.line)]);
  });

  it("plans a delete at the rule's line with an undo that puts it back there; a gone rule is no change", () => {
    const a = insert(1);
    const text = ruleText("INPUT", a.specs[4]!);
    const save = guideWith(2, text);
    const del: ChangeRequest = {
      kind: "delete",
      table: "filter",
      chain: "INPUT",
      families: [4],
      tag: tag(1),
      rules: { 4: text },
      persist: false,
    };
    const gone: ChangeRequest = { ...del, tag: tag(9), rules: { 4: text.replace(tag(1), tag(9)) } };
    const { plans } = planBatch([del, gone], new Map([[4, save]]), ctx);
    expect(plans.get(del)?.[4]).toMatchObject({ apply: [asDelete(text)], undo: [asInsert(text, 2)] });
    expect(plans.get(gone)).toEqual({});
  });
});

describe("persistence", () => {
  it("keeps persist: false rules out of the files from before the apply, saves persisted ones after confirming", () => {
    const keepOut = insert(1);
    const saved = insert(2, { persist: true });
    const del: ChangeRequest = {
      kind: "delete",
      table: "filter",
      chain: "INPUT",
      families: [4],
      tag: tag(3),
      rules: {},
      persist: true,
    };
    expect(transientTags([keepOut, saved, del])).toEqual([tag(1)]);
    expect(persistChange([keepOut, saved, del])).toEqual({
      transient: [],
      persistent: [tag(2), tag(3)],
      save: true,
      present: [{ tag: tag(2), families: [4] }],
      absent: [tag(1), tag(3)],
    });
    expect(persistChange([keepOut])).toBeUndefined();
  });
});
