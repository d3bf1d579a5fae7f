// Applying a batch (apply.ts) against a fake shell: a restore refused in one family.
import { describe, expect, it } from "vitest";
import { agentOn, failure, first, guide, insert, refusedSecondFamily, withRule } from "./batches";
import { FakeHost } from "./fake";

describe("a refused second family", () => {
  const both = { ipVersion: "both" };
  const refused = refusedSecondFamily();

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
