// A batch of deletes lists only the chains it edits (issue 25): where the nf_tables generation was read,
// the lock step asks for `iptables -v -S CHAIN` instead of the whole table (3 MB on a Kubernetes node);
// what a copy listed in part cannot answer (a chain it does not hold, any judgement of packets) throws
// PartialListingError, and the transaction lists the whole table in the same shell and plans again.
import { describe, expect, it } from "vitest";
import { REACH_CHAINS } from "../../../provider/host/confirm-listing";
import { chainsListed, listingScript } from "../../../provider/host/facts";
import { lockoutOf } from "../../../provider/host";
import type { DeleteRequest } from "../../../provider/host";
import { findRule, PartialListingError, parseRuleset, placeRule, parseSpec } from "../../../provider/rules";
import type { Ruleset } from "../../../provider/rules";
import { kubeProxyFilter } from "../../fixtures/kube";
import { insertRuleText } from "../../fixtures/listing";
import { agentOn, facts, first, guide, insert, TAG, text, withRule } from "./batches";
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
    const s = listingScript(true, [4, 6], "filter", {
      generation: true,
      part: { chains: ["INPUT", "a'b"], reach: false },
    });
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

/** The kube-proxy filter table of a small node (test/fixtures/kube.ts) with this host's INPUT. */
const KUBE_BASE = [
  "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
  "-A INPUT -i lo -j ACCEPT",
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
  "-A INPUT -j DROP",
];
const kube = kubeProxyFilter(40, KUBE_BASE);
/** What INPUT reaches in it: the chains the host's reach listing prints (in save form, which parses alike). */
const REACHED = ["INPUT", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL"];
const only = (save: string, chains: readonly string[]) =>
  save
    .split("\n")
    .filter((l) => chains.some((c) => l.startsWith(`:${c} `) || l.replace(/^\[\d+:\d+\] /, "").startsWith(`-A ${c} `)))
    .join("\n");
const reachListed = (save: string, chains = REACHED) =>
  chainsListed(
    { gen: { code: 0, out: "41", err: "" }, reach4: { code: 0, out: only(save, chains), err: "" } },
    4,
    "filter",
    "h",
  );

describe("a batch that places rules in built-in chains", () => {
  it("asks the host for the chains they reach, where the generation was read on nf_tables; the whole table otherwise", () => {
    const s = listingScript(true, [4], "filter", { generation: true, part: { chains: ["INPUT"], reach: true } });
    expect(s).toContain("reach4");
    expect(s).toContain("todo=INPUT;");
    expect(s).toContain('iptables -w 5 -t filter -v -S "$c"');
    expect(s).toContain(`[ "$n" -le ${REACH_CHAINS} ] || {`); // beyond, the whole table
    expect(s).not.toContain("chains4");
    // The whole table where INPUT cannot be listed, where the generation was not read, or on legacy.
    expect(s.split("save4").length - 1).toBe(4);
  });

  it("is placed on what INPUT reaches exactly as on the whole table", () => {
    const whole = parseRuleset(kube);
    const part = reachListed(kube);
    expect(part.tables.get("filter")).toMatchObject({ partial: true, closed: true });
    expect([...part.tables.get("filter")!.chains.keys()].sort()).toEqual([...REACHED].sort());
    // 30003: a KUBE-NODEPORTS ACCEPT; 30002: a KUBE-EXTERNAL-SERVICES REJECT; 8080: nothing of kube-proxy's.
    for (const port of ["30003", "30002", "8080"])
      for (const target of ["ACCEPT", "DROP"]) {
        const rule = parseSpec(["-p", "tcp", "-m", "tcp", "--dport", port, "-j", target]);
        const at = (rs: Ruleset) => placeRule(rs, { table: "filter", chain: "INPUT", rule, position: "auto" });
        expect(at(part)).toEqual(at(whole));
      }
  });

  it("is not judged where the listing lacks a chain its rules jump to, nor in a chain that is not built in", () => {
    const rule = parseSpec(["-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "ACCEPT"]);
    const lacking = reachListed(
      kube,
      REACHED.filter((c) => c !== "KUBE-NODEPORTS"),
    );
    expect(lacking.tables.get("filter")?.closed).toBeFalsy();
    expect(() => placeRule(lacking, { table: "filter", chain: "INPUT", rule, position: "auto" })).toThrow(
      PartialListingError,
    );
    // Which built-in chains reach KUBE-NODEPORTS is not in a listing of what INPUT reaches.
    expect(() => placeRule(reachListed(kube), { table: "filter", chain: "KUBE-NODEPORTS", rule })).toThrow(
      PartialListingError,
    );
  });

  it("is planned, applied and confirmed on what INPUT reaches: no listing of the whole table", async () => {
    // Above the DROP that ends INPUT: its 8th line, under kube-proxy's four jumps and the host's three.
    const after = insertRuleText(kube, "filter", "INPUT", 8, text(4));
    const host = new FakeHost([
      first({}, { gen: { out: "41" }, reach4: { out: only(kube, REACHED) } }),
      { persist: {}, arm: {}, restore4: {}, same4: { out: "42" }, chains4: { out: only(after, ["INPUT"]) } },
      { confirm: { out: "confirmed" } },
    ]);
    const agent = agentOn(host);
    const result = await agent.change(insert());
    await agent.settled();
    expect(result.families[4]).toMatchObject({ line: 8 });
    expect(host.scripts).toHaveLength(3);
    expect(host.scripts[1]).toContain('[ "$g" = 42 ] || exit 1');
  });
});
