// What a comment-only change asks of the host (rewriteRequest): the recorded rule per family swapped for
// the new text under the same tag; nothing when no family differs; the boot files' hand-made rule kept.
import { describe, expect, it } from "vitest";
import { check, fromStored } from "../../../provider/provider";
import { rewriteRequest } from "../../../provider/requests";
import type { PortRuleState } from "../../../provider/state";

const identity = { project: "web", stack: "prod", name: "app" };
async function state(args: Record<string, unknown>): Promise<PortRuleState> {
  const r = await check({}, { connection: { host: "198.18.0.10" }, port: 8080, action: "DROP", identity, ...args });
  expect(r.failures).toEqual([]);
  return fromStored<PortRuleState>(r.inputs);
}

describe("rewriteRequest", () => {
  it("swaps each family's recorded rule for the rule with the new comment, under the same tag", async () => {
    const s = await state({ comment: "old", ipVersion: "both" });
    const req = rewriteRequest(s, "new")!;
    const now = s.rules.ipv4!.replace('"old ', '"new ');
    expect(req).toMatchObject({ kind: "insert", tag: s.tag, rewrites: { 4: s.rules.ipv4, 6: s.rules.ipv6 } });
    expect(`-A INPUT ${req.specs[4]!.join(" ")}`).toBe(now.replace(/"/g, ""));
    expect(req.handMade).toEqual([]);
  });

  it("nothing to ask when the comment renders the same rule", async () => {
    const s = await state({ comment: "same", ipVersion: "ipv4" });
    expect(rewriteRequest(s, "same")).toBeUndefined();
  });

  it("an adopted rule lent with persist: false: the boot files keep the hand-made rule in place of the new text", async () => {
    const s = await state({ comment: "old", ipVersion: "ipv4" });
    const handMade = "-A INPUT -p tcp -m tcp --dport 8080 -m comment --comment old -j DROP";
    const adopted = { ...s, persist: false, adopted: { ipv4: { line: 1, rule: handMade, packets: 1, bytes: 60 } } };
    const req = rewriteRequest(adopted, "new")!;
    expect(req.handMade).toEqual([{ rule: s.rules.ipv4!.replace('"old ', '"new '), handMade }]);
    expect(rewriteRequest({ ...adopted, persist: true }, "new")!.handMade).toBeUndefined();
  });
});
