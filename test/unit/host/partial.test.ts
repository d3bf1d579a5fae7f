// A batch of deletes lists only the chains it edits (issue 25): where the nf_tables generation was read,
// the lock step asks for `iptables -v -S CHAIN` instead of the whole table (3 MB on a Kubernetes node);
// what a copy listed in part cannot answer (a chain it does not hold, any judgement of packets) throws
// PartialListingError, and the transaction lists the whole table in the same shell and plans again.
import { describe, expect, it } from "vitest";
import { listingScript } from "../../../provider/host/facts";
import { lockoutOf } from "../../../provider/host";
import type { DeleteRequest } from "../../../provider/host";
import { findRule, PartialListingError, parseRuleset, placeRule, parseSpec } from "../../../provider/rules";
import type { Ruleset } from "../../../provider/rules";
import { agentOn, facts, guide, TAG, text, withRule } from "./batches";
import { FakeHost } from "./fake";

/** The lines of a save listing that `iptables -v -S INPUT` would print (in save form, which parses alike). */
const inputOnly = (save: string) =>
  save
    .split("\n")
    .filter((l) => l.startsWith(":INPUT ") || /^(\[\d+:\d+\] )?-A INPUT /.test(l))
    .join("\n");

const del = (extra: Partial<DeleteRequest> = {}): DeleteRequest => ({
  kind: "delete",
  table: "filter",
  chain: "INPUT",
  families: [4],
  tag: TAG,
  rules: { 4: text(4) },
  persist: false,
  ...extra,
});

const partialOf = (save: string): Ruleset => {
  const t = parseRuleset(inputOnly(save), { table: "filter" }).tables.get("filter")!;
  return { tables: new Map([["filter", { ...t, partial: true }]]) };
};

describe("a batch of deletes", () => {
  it("asks the host for its chains alone, where the generation was read on nf_tables; the whole table otherwise", () => {
    const s = listingScript(true, [4, 6], "filter", { generation: true, chains: ["INPUT", "a'b"] });
    const at = (x: string, from = 0) => s.indexOf(x, from);
    expect(at("gen")).toBeLessThan(at("pit_gen=$c"));
    expect(s).toContain('case "$(iptables -V 2>/dev/null)" in *nf_tables*) pit_part=$pit_gen ;; *) pit_part=1 ;; esac');
    expect(s).toContain("ip6tables -V");
    expect(at('if [ "$pit_part" = 0 ]; then')).toBeLessThan(at("chains4"));
    expect(s).toContain("iptables -w 5 -t filter -v -S INPUT && iptables -w 5 -t filter -v -S ");
    expect(s).not.toContain("-S a'b"); // a chain's name reaches the host quoted
    // The whole table where the chains cannot be listed, and where the generation was not read or on legacy.
    expect(s.split("save4").length - 1).toBe(4);
    // Other batches: the whole table, as before.
    expect(listingScript(true, [4], "filter", { generation: true })).not.toContain("pit_part");
  });

  it("is planned, applied and confirmed on the chain alone: no listing of the whole table", async () => {
    const host = new FakeHost([
      { lock: {}, reap: {}, ...facts, gen: { out: "41" }, chains4: { out: inputOnly(withRule(4)) } },
      { arm: {}, restore4: {}, same4: { out: "42" }, chains4: { out: inputOnly(guide(4)) } },
      { confirm: { out: "confirmed" }, persist: {} },
    ]);
    const agent = agentOn(host);
    const result = await agent.change(del());
    await agent.settled();
    expect(result.families[4]).toMatchObject({ reason: "delete", rule: text(4) });
    expect(host.scripts).toHaveLength(3);
    expect(host.scripts[1]).toContain(`-D INPUT ${text(4).slice("-A INPUT ".length)}`);
    expect(host.scripts[1]).toContain('[ "$g" = 42 ] || exit 1');
  });

  it("lists the whole table in the same shell where its guard judges the chain, and is judged on that", async () => {
    const asked: string[] = [];
    const guard: DeleteRequest["guard"] = (origin, _f, before, after, context) => {
      try {
        const why = lockoutOf(before, after, origin, "removing it", context);
        asked.push(before.tables.get("filter")?.partial ? "judged the part (a bug)" : "judged the whole");
        return why;
      } catch (e) {
        asked.push(e instanceof PartialListingError ? "refused the part" : String(e));
        throw e;
      }
    };
    const host = new FakeHost([
      { lock: {}, reap: {}, ...facts, gen: { out: "41" }, chains4: { out: inputOnly(withRule(4)) } },
      { gen: { out: "41" }, save4: { out: withRule(4) } },
      { arm: {}, restore4: {}, same4: { out: "42" }, chains4: { out: inputOnly(guide(4)) } },
      { confirm: { out: "confirmed" }, persist: {} },
    ]);
    const agent = agentOn(host);
    await agent.change(del({ guard }));
    await agent.settled();
    expect(asked).toEqual(["refused the part", "judged the whole"]);
    expect(host.scripts).toHaveLength(4);
    expect(host.scripts[1]).not.toMatch(/"\$PIT_M" lock\n/);
    expect(host.scripts[1]).toMatch(/"\$PIT_M" save4\n/);
  });
});

describe("a table listed in part", () => {
  it("finds rules in the chains it holds; a chain it does not hold, or any judgement, needs the whole table", () => {
    const rs = partialOf(withRule(4));
    expect(findRule(rs, "filter", "INPUT", text(4))?.line).toBe(3);
    expect(() => findRule(rs, "filter", "KUBE-SERVICES", text(4))).toThrow(PartialListingError);
    const rule = parseSpec(["-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "ACCEPT"]);
    expect(() => placeRule(rs, { table: "filter", chain: "INPUT", rule, position: "auto" })).toThrow(
      PartialListingError,
    );
    // The whole table answers both.
    const whole = parseRuleset(withRule(4));
    expect(findRule(whole, "filter", "KUBE-SERVICES", text(4))).toBeUndefined();
    expect(placeRule(whole, { table: "filter", chain: "INPUT", rule, position: "auto" }).line).toBeGreaterThan(0);
  });
});
