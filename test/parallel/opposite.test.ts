// Issue 11, item 8 asked that two opposite `auto` rules for the same port created in one run (an ACCEPT
// and a DROP of tcp 8080) be placed once, without bouncing. Issue 24 (item 3) refuses such a pair in
// check instead, before anything reaches the host: this is that promise, on a real host.
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/parallel/opposite.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { check, create } from "../../provider/provider";
import { closeAll } from "../../provider/ssh";
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
  return check(
    {},
    {
      connection: h.connection(),
      port: 8080,
      action,
      ipVersion: "both",
      identity: { project: "opposite", stack: "lab", name },
    },
  );
}

// Since issue 24 (item 3) such a pair never reaches a host: whichever the engine creates second would go
// above and decide the port, so the outcome would change from run to run. Check refuses the second one
// checked, naming both, before anything changes, and a create of the first refuses too.
describe("opposite auto rules in one run", () => {
  it("ACCEPT and DROP of tcp 8080: the second checked is refused naming both, and neither reaches the host", async () => {
    const accept = await checked("allow", "ACCEPT");
    expect(accept.failures).toEqual([]);
    const drop = await checked("block", "DROP");
    expect(drop.failures).toEqual([
      {
        property: "action",
        reason: expect.stringMatching(
          /^PortRule "allow" \(ACCEPT tcp 8080, position auto\) and PortRule "block" \(DROP tcp 8080, position auto\) match the same packets on \S+ \(filter INPUT, ipv4 and ipv6\) with different verdicts, and neither says which wins/,
        ),
      },
    ]);
    await closeAll();
    // The refused rule stays in this run's record, so the first one's create refuses too, before any change.
    await expect(create(accept.inputs as any)).rejects.toThrow(/PortRule "allow" .* and PortRule "block" /);
    for (const f of [4, 6] as const)
      expect((await h.save(f)).split("\n").filter((l) => l.startsWith("-A INPUT "))).toEqual(BASE_INPUT);
  }, 300_000);
});
