import { describe, expect, it } from "vitest";
import {
  chainOf,
  check,
  findByTag,
  makeTag,
  matchesPacket,
  parseRuleset,
  parseSpec,
  placeRule,
  PlacementError,
  renderRule,
  ruleText,
  shadowing,
  type Ruleset,
  type Table,
} from "../../../provider/rules";
import { placeholders, type Expectation, type Family } from "../../fixtures/scenarios";
import { CAPTURES, label, readFamilyFile } from "../../fixtures/captures";

const TAG = makeTag({ project: "lab", stack: "dev", name: "rule" }, "abcd1234");

function inputsFor(rule: Expectation["rule"], family: Family) {
  const fill = (s: string | undefined) =>
    s && Object.entries(placeholders(family)).reduce((t, [k, v]) => t.replaceAll(k, v), s);
  const { inputs, failures } = check(
    {},
    {
      connection: { host: "198.18.0.10" },
      ...rule,
      chain: fill(rule.chain),
      source: fill(rule.source),
      ipVersion: family === 4 ? "ipv4" : "ipv6",
    },
  );
  expect(failures).toEqual([]);
  return inputs;
}

/** The ruleset with one more rule inserted the way `iptables -I CHAIN line` would. */
function inserted(ruleset: Ruleset, table: string, chain: string, line: number, argv: string[]): Ruleset {
  const rule = chainOf(parseRuleset(ruleText(chain, argv), { table }), table, chain)!.rules[0];
  const before = chainOf(ruleset, table, chain)!.rules;
  const rules = [...before.slice(0, line - 1), rule, ...before.slice(line - 1)].map((r, i) => ({ ...r, line: i + 1 }));
  const copyOf = (t: Table): Table => ({
    name: t.name,
    chains: new Map([...t.chains].map(([n, c]) => [n, t.name === table && n === chain ? { ...c, rules } : c])),
  });
  return { tables: new Map([...ruleset.tables].map(([name, t]) => [name, copyOf(t)])) };
}

const cases = CAPTURES.flatMap((c) =>
  c.scenario.expect.map(
    (e) =>
      [
        `${label(c)}: ${e.rule.action} ${e.rule.protocol ?? "tcp"} ${e.rule.port}${e.rule.source ? ` from ${e.rule.source}` : ""} in ${e.rule.chain ?? "INPUT"} -> line ${e.line}`,
        c,
        e,
      ] as const,
  ),
);

describe("placement over captured transcripts (both backends, both families)", () => {
  it.each(cases)("%s", (_, c, e) => {
    const inputs = inputsFor(e.rule, c.family);
    const argv = renderRule(inputs, c.family, TAG);
    for (const file of ["save.txt", "save-c.txt", "S.txt"]) {
      const ruleset = parseRuleset(c.read(file));
      const placed = placeRule(ruleset, { table: "filter", chain: inputs.chain, rule: argv });
      expect(placed.line).toBe(e.line);
      expect(placed.reason).toContain(
        Object.entries(placeholders(c.family)).reduce((t, [k, v]) => t.replaceAll(k, v), e.reason),
      );
    }

    // Inserted where placement says, the rule is effective and found by its tag; one line lower
    // (when there is one) it would not decide its packets itself: something placement named does.
    const ruleset = parseRuleset(c.read("save.txt"));
    const chain = chainOf(ruleset, "filter", inputs.chain)!;
    const good = inserted(ruleset, "filter", inputs.chain, e.line, argv);
    expect(shadowing(good, { table: "filter", chain: inputs.chain, line: e.line })).toBeUndefined();
    expect(findByTag(good, "filter", "INPUT", TAG)).toMatchObject({ chain: inputs.chain, line: e.line });
    const end = chain.rules.length + 1;
    if (e.line < end) {
      const lower = placeRule(ruleset, { table: "filter", chain: inputs.chain, rule: argv, position: e.line + 1 });
      if (lower.effective) expect(lower.reason).toContain("(redundant there: ");
      else expect(lower.shadowedBy!.path).toContain(`${inputs.chain}:${e.line}`);
    }
  });
});

describe("explicit positions", () => {
  const ruleset = parseRuleset(readFamilyFile("nf_tables", 4, "ends-in-drop/save.txt"));
  const rule = ["-p", "tcp", "-m", "tcp", "--dport", "2222", "-j", "ACCEPT"];
  it("top, bottom and a line number, with a warning when shadowed", () => {
    expect(placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: "top" })).toEqual({
      line: 1,
      reason: "top of chain (position top)",
      effective: true,
    });
    const bottom = placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: "bottom" });
    expect(bottom).toMatchObject({
      line: 5,
      effective: false,
      shadowedBy: { text: "-A INPUT -j DROP", path: "INPUT:4" },
    });
    expect(bottom.reason).toBe(
      "end of chain (position bottom); warning: not effective there: INPUT:4 (-A INPUT -j DROP) drops tcp 2222",
    );
    expect(placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: 2 })).toEqual({
      line: 2,
      reason: "line 2 (position 2)",
      effective: true,
    });
  });
  it("refuses a line past the end and a missing chain", () => {
    expect(() => placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: 6 })).toThrow(PlacementError);
    expect(() => placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: 6 })).toThrow(
      /use a line from 1 to 5/,
    );
    expect(() => placeRule(ruleset, { table: "filter", chain: "NOPE", rule })).toThrow(
      /chain NOPE does not exist in the filter table/,
    );
  });
});

describe("matchesPacket", () => {
  it("matchesPacket answers the lockout question", () => {
    const ssh = parseSpec(["-s", "198.18.0.0/24", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "DROP"]);
    expect(matchesPacket(ssh, { protocol: "tcp", source: "198.18.0.7", dport: 22 })).toBe(true);
    expect(matchesPacket(ssh, { protocol: "tcp", source: "198.18.1.7", dport: 22 })).toBe(false);
    expect(matchesPacket(ssh, { protocol: "tcp", source: "198.18.0.7", dport: 2222 })).toBe(false);
    expect(matchesPacket(ssh, { protocol: "udp", source: "198.18.0.7", dport: 22 })).toBe(false);
    expect(
      matchesPacket(parseSpec(["-i", "eth0", "-p", "tcp", "-m", "multiport", "--dports", "1:1024", "-j", "DROP"]), {
        protocol: "tcp",
        source: "198.18.0.7",
        dport: 22,
      }),
    ).toBe(true);
    expect(
      matchesPacket(parseSpec(["-i", "eth0", "-j", "DROP"]), { protocol: "tcp", dport: 22, inInterface: "eth1" }),
    ).toBe(false);
  });
});
