// The order a batch is applied in (provider/host/order.ts): explicit positions first, ascending, whatever
// order the engine's creates arrived in; planned so, each lands at the line it names.
import { describe, expect, it } from "vitest";
import { inApplyOrder } from "../../../provider/host/order";
import { planBatch } from "../../../provider/host/plan";
import type { ChangeRequest, HostFacts, InsertRequest } from "../../../provider/host/types";
import { check, parseRuleset, renderRule } from "../../../provider/rules";

const facts: HostFacts = {
  backend: "nf_tables",
  version: "1.8.9",
  hostKeyFingerprint: "SHA256:x",
  persistence: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
};
const START =
  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";

function insert(name: string, port: number, position: unknown): InsertRequest {
  const { inputs } = check({}, { connection: { host: "198.18.0.10" }, port, action: "ACCEPT", position });
  const tag = `pulumi-iptables:p/s/${name}/000000000000`;
  return {
    kind: "insert",
    table: "filter",
    chain: "INPUT",
    specs: { 4: renderRule(inputs, 4, tag) },
    tag,
    position: inputs.position,
    persist: false,
  };
}

describe("inApplyOrder", () => {
  const top = insert("top", 9001, "top");
  const two = insert("two", 9002, 2);
  const three = insert("three", 9003, 3);
  const auto = insert("auto", 9004, "auto");
  const bottom = insert("bottom", 9005, "bottom");
  const del: ChangeRequest = {
    kind: "delete",
    table: "filter",
    chain: "INPUT",
    families: [4],
    tag: "t",
    rules: {},
    persist: false,
  };

  it("puts explicit positions first (top as line 1, then ascending lines), the rest in arrival order", () => {
    expect(inApplyOrder([bottom, three, auto, del, two, top])).toEqual([top, two, three, bottom, auto, del]);
  });

  it("equal lines go by tag", () => {
    const other = insert("another", 9006, 2);
    expect(inApplyOrder([two, other])).toEqual([other, two]);
  });

  it("planned in either arrival order, top lands at line 1 and position 2 at line 2", () => {
    for (const reqs of [
      [two, top],
      [top, two],
    ]) {
      const { plans } = planBatch(reqs, new Map([[4, parseRuleset(START)]]), { target: "lab", facts });
      expect([plans.get(top)?.[4]?.line, plans.get(two)?.[4]?.line]).toEqual([1, 2]);
      expect(plans.get(two)?.[4]?.reason).toMatch(/^line 2 \(position 2\)/);
    }
  });
});
