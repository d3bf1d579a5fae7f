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
  const copy = parseRuleset(""); // fresh container
  for (const [name, t] of ruleset.tables)
    copy.tables.set(name, { name, chains: new Map([...t.chains].map(([n, c]) => [n, { ...c, rules: [...c.rules] }])) });
  const rule = chainOf(parseRuleset(ruleText(chain, argv), { table }), table, chain)!.rules[0];
  const rules = chainOf(copy, table, chain)!.rules;
  rules.splice(line - 1, 0, rule);
  rules.forEach((r, i) => {
    if (r === rule) r.line = i + 1;
    else rules.splice(i, 1, { ...r, line: i + 1 });
  });
  return copy;
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

    // Inserted where placement says, the rule is in effect and found by its tag;
    // appended at the end instead (when that is elsewhere), it is shadowed by the rule placement avoided.
    const ruleset = parseRuleset(c.read("save.txt"));
    const chain = chainOf(ruleset, "filter", inputs.chain)!;
    const good = inserted(ruleset, "filter", inputs.chain, e.line, argv);
    expect(shadowing(good, { table: "filter", chain: inputs.chain, line: e.line })).toBeUndefined();
    expect(findByTag(good, "filter", "INPUT", TAG)).toMatchObject({ chain: inputs.chain, line: e.line });
    const end = chain.rules.length + 1;
    if (e.line < end) {
      const bad = inserted(ruleset, "filter", inputs.chain, end, argv);
      expect(shadowing(bad, { table: "filter", chain: inputs.chain, line: end })?.text).toBe(
        chain.rules[e.line - 1].text,
      );
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
    });
    const bottom = placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: "bottom" });
    expect(bottom.line).toBe(5);
    expect(bottom.reason).toMatch(
      /^end of chain \(position bottom\); warning: shadowed by line 4 \(-A INPUT -j DROP\)/,
    );
    expect(placeRule(ruleset, { table: "filter", chain: "INPUT", rule, position: 2 })).toEqual({
      line: 2,
      reason: "line 2 (position 2)",
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

describe("shadowing semantics", () => {
  const place = (rules: string, argv: string[], chain = "INPUT") =>
    placeRule(parseRuleset(rules), { table: "filter", chain, rule: argv });
  const accept2222 = ["-p", "tcp", "-m", "tcp", "--dport", "2222", "-j", "ACCEPT"];
  it("a cycle of jumps is followed once", () => {
    const rules = "-P INPUT ACCEPT\n-N A\n-N B\n-A INPUT -j A\n-A A -j B\n-A B -j A\n-A B -j DROP\n";
    expect(place(rules, accept2222).line).toBe(2);
  });
  it("negated matches and interface wildcards count", () => {
    expect(
      place("-P INPUT ACCEPT\n-A INPUT ! -i lo -j DROP\n", [...accept2222.slice(0, -2), "-j", "ACCEPT"]).line,
    ).toBe(2); // ours: any interface, incl. lo
    expect(place("-P INPUT ACCEPT\n-A INPUT ! -i lo -j DROP\n", ["-i", "eth0", ...accept2222]).line).toBe(1);
    expect(place("-P INPUT ACCEPT\n-A INPUT -i eth+ -j DROP\n", ["-i", "eth0", ...accept2222]).line).toBe(1);
    expect(place("-P INPUT ACCEPT\n-A INPUT -i eth+ -j DROP\n", ["-i", "wlan0", ...accept2222]).line).toBe(2);
    expect(
      place("-P INPUT ACCEPT\n-A INPUT ! -s 198.18.0.0/16 -j DROP\n", ["-s", "198.19.1.0/24", ...accept2222]).line,
    ).toBe(1);
    expect(
      place("-P INPUT ACCEPT\n-A INPUT ! -s 198.18.0.0/16 -j DROP\n", ["-s", "198.18.1.0/24", ...accept2222]).line,
    ).toBe(2);
    expect(place("-P INPUT ACCEPT\n-A INPUT -p tcp -m multiport ! --dports 22,80 -j DROP\n", accept2222).line).toBe(1);
    expect(place("-P INPUT ACCEPT\n-A INPUT -p tcp -m multiport --ports 2000:3000 -j DROP\n", accept2222).line).toBe(1);
  });
  it("rules the model cannot read stay above (partial overlap)", () => {
    expect(place("-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --tcp-flags SYN,RST SYN -j DROP\n", accept2222).line).toBe(2);
    expect(place("-P INPUT ACCEPT\n-A INPUT -m recent --rcheck --seconds 60 -j DROP\n", accept2222).line).toBe(2);
  });
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
