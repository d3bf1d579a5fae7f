// Moving a rule that drifted out of effect (pure): where "auto" would put it now, and the restore lines
// of the move and its undo (exact recorded text, counters kept), or a plan that changes nothing and says why.
import { describe, expect, it } from "vitest";
import { placeableOf } from "../../../provider/host/move";
import { planBatch } from "../../../provider/host/plan";
import type { HostFacts, MoveRequest } from "../../../provider/host/types";
import { findRule, parseRuleset } from "../../../provider/rules";

const OURS =
  '-A INPUT -p tcp -m tcp --dport 8080 -m comment --comment "pulumi-iptables:web/prod/app/abcd1234" -j ACCEPT';
const DROP = "-A INPUT -p tcp -m tcp --dport 8080 -j DROP";
const listing = (...rules: string[]) =>
  parseRuleset(
    `*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n` +
      `[5:300] -A INPUT -i lo -j ACCEPT\n${rules.map((r) => `[7:420] ${r}`).join("\n")}\nCOMMIT\n`,
  );
const facts: HostFacts = {
  backend: "nf_tables",
  version: "1.8.9",
  hostKeyFingerprint: "SHA256:x",
  persistence: { mechanism: "iptables-save", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
};
const ctx = { target: "root@198.18.0.10:22", facts };
const move: MoveRequest = {
  kind: "move",
  table: "filter",
  chain: "INPUT",
  families: [4],
  tag: "pulumi-iptables:web/prod/app/abcd1234",
  rules: { 4: OURS },
  persist: false,
};

describe("moving a rule back into effect", () => {
  it("placeableOf: the line auto chooses in the chain without it", () => {
    const rs = listing(DROP, OURS);
    expect(placeableOf(rs, "filter", findRule(rs, "filter", "INPUT", OURS)!)).toEqual({ line: 2 });
  });

  it("moves it above the DROP in one restore, counters kept; the undo puts it back where it was", () => {
    const { plans, expected } = planBatch([move], new Map([[4, listing(DROP, OURS)]]), ctx);
    const p = plans.get(move)![4]!;
    expect(p.apply).toEqual([OURS.replace("-A ", "-D "), OURS.replace("-A INPUT ", "-I INPUT 2 -c 7 420 ")]);
    expect(p.undo).toEqual([OURS.replace("-A ", "-D "), OURS.replace("-A INPUT ", "-I INPUT 3 -c 7 420 ")]);
    expect(p.reason).toBe(
      "moved from line 3 to line 2, where it decides its packets again (counters kept: 7 packets, 420 bytes)",
    );
    expect(
      expected
        .get(4)!
        .tables.get("filter")!
        .chains.get("INPUT")!
        .rules.map((r) => r.text),
    ).toEqual(["-A INPUT -i lo -j ACCEPT", OURS, DROP]);
  });

  it("in effect where it is: nothing changes", () => {
    const p = planBatch([move], new Map([[4, listing(OURS, DROP)]]), ctx).plans.get(move)![4]!;
    expect(p.apply).toEqual([]);
    expect(p.reason).toBe("not moved: line 2 is where it decides its packets");
  });

  it("a rule of another text (the tag alone is not enough) is not acted on: refused, nothing planned", () => {
    const other = OURS.replace("8080", "8081");
    const { failed, plans } = planBatch([move], new Map([[4, listing(DROP, other)]]), ctx);
    expect(plans.size).toBe(0);
    expect(failed.get(move)?.message).toContain("is not on root@198.18.0.10:22");
  });

  it("no line makes it effective (nothing jumps to its chain before a DROP of everything): stays, says why", () => {
    const rs = parseRuleset(
      "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:app - [0:0]\n" +
        `-A INPUT -j DROP\n-A INPUT -j app\n${OURS.replace("-A INPUT", "-A app")}\nCOMMIT\n`,
    );
    const req = { ...move, chain: "app", rules: { 4: OURS.replace("-A INPUT", "-A app") } };
    const p = planBatch([req], new Map([[4, rs]]), ctx).plans.get(req)![4]!;
    expect(p.apply).toEqual([]);
    expect(p.reason).toMatch(/^not moved: no line of app makes it effective: INPUT:1 \(-A INPUT -j DROP\) drops/);
  });
});
