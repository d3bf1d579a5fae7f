// Issue 11, item 8: two opposite `auto` rules for the same port created in one run (an ACCEPT and a
// DROP of tcp 8080) share one transaction. They are placed once, in the order they reach the host
// agent (the later one above, since it decides the packets the earlier would), the confirm step moves
// neither (no foreign writer displaced anything), and the earlier one's state says it is shadowed.
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/parallel/opposite.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { check, create, remove } from "../../provider/provider";
import type { PortRuleState } from "../../provider/provider";
import { closeAll, getSession } from "../../provider/ssh";
import type { CheckedConnection } from "../../provider/rules";
import { Lab } from "../lab/lab";
import type { LabHost } from "../lab/lab";
import { BASE, BASE_INPUT } from "./base";

let lab: Lab;
let h: LabHost;
beforeAll(async () => {
  lab = await Lab.create();
  h = await lab.addHost({ backend: "nf_tables", rules: { v4: BASE, v6: BASE }, listen: { tcp: [8080] } });
});
afterAll(async () => {
  await closeAll();
  await lab?.destroy();
});

async function checked(name: string, action: "ACCEPT" | "DROP") {
  const { inputs, failures } = await check(
    {},
    {
      connection: h.connection(),
      port: 8080,
      action,
      ipVersion: "both",
      identity: { project: "opposite", stack: "lab", name },
    },
  );
  expect(failures).toEqual([]);
  return inputs as any;
}

describe("opposite auto rules in one batch", () => {
  it("ACCEPT and DROP of tcp 8080: placed once, no bouncing, the state tells which one decides", async () => {
    const [accept, drop] = [await checked("allow", "ACCEPT"), await checked("block", "DROP")];
    await closeAll();
    const session = getSession(accept.connection as CheckedConnection);
    // created together, as the engine does: one batch
    const [a, d] = (await Promise.all([create(accept), create(drop)])).map((r) => r.outs as PortRuleState);
    expect(session.stats.connections).toBe(1);

    // the one planned second goes above the first (it decides the packets the first would), so the
    // port gets its verdict; which one that is follows the order the engine's calls reached the agent
    const [upper, lower] = (a.line.ipv4 ?? 0) < (d.line.ipv4 ?? 0) ? [a, d] : [d, a];
    for (const f of [4, 6] as const) {
      const n = f === 4 ? "ipv4" : "ipv6";
      const input = (await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "));
      const at = (tag: string) => input.findIndex((l) => l.includes(tag)) + 1;
      expect([at(upper.tag), at(lower.tag)], input.join("\n")).toEqual([4, 5]);
      expect([upper.line[n], lower.line[n]]).toEqual([4, 5]);
      expect(input.filter((l) => !l.includes(a.tag) && !l.includes(d.tag))).toEqual(BASE_INPUT);
      for (const s of [a, d]) expect(s.placement[n]).not.toContain("moved back");
      const expected = upper.action === "ACCEPT" ? "open" : "timeout";
      expect(await lab.probe(h, 8080, { family: f, timeoutSec: 2 })).toBe(expected);
      expect(lower.shadowedBy[n]).toMatch(new RegExp(`^INPUT:4 \\(-A INPUT .*--dport 8080 .*-j ${upper.action}\\) `));
    }
    expect(upper.effective).toBe(true);
    expect(lower.effective).toBe(false);

    await Promise.all([remove(a.tag, a), remove(d.tag, d)]);
    for (const f of [4, 6] as const)
      expect((await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "))).toEqual(BASE_INPUT);
  }, 300_000);
});
