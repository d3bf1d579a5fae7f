import { describe, expect, it } from "vitest";
import {
  chainOf,
  check,
  findByTag,
  makeTag,
  parseRuleset,
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
import { place, save, tcp } from "./rulesets";

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

describe("4. rules that overlap only some of the rule's ports", () => {
  const rs = save({}, [], ["-A INPUT -p tcp -m tcp --dport 8000:8100 -j DROP"]);
  it("an ACCEPT of 8080,9000 goes above a DROP of 8000:8100", () => {
    const p = place(rs, tcp("8080,9000", "ACCEPT"));
    expect(p).toMatchObject({ line: 1, effective: true });
    expect(p.reason).toContain("drops tcp 8080");
    expect(place(rs, tcp("8080,9000", "ACCEPT"), "bottom")).toMatchObject({
      effective: false,
      shadowedBy: { path: "INPUT:1", packets: "tcp 8080" },
    });
  });
  it("a range that only touches the DROP's range", () => {
    expect(place(rs, tcp("8100:8200", "ACCEPT")).line).toBe(1);
    expect(place(rs, tcp("8101:8200", "ACCEPT")).line).toBe(2);
  });
  it("-p all and --ports (either side) count", () => {
    expect(place(save({}, [], ["-A INPUT -p all -j DROP"]), tcp("80", "ACCEPT")).line).toBe(1);
    expect(
      place(save({}, [], ["-A INPUT -p tcp -m multiport --ports 2000:3000 -j DROP"]), tcp("2222", "ACCEPT")).line,
    ).toBe(1);
  });
});

describe("5. DROP and REJECT are different verdicts", () => {
  const rs = save({}, [], ["-A INPUT -p tcp -m tcp --dport 8080 -j DROP"]);
  it("a REJECT goes above a DROP of the same packets, and below it is not effective", () => {
    expect(place(rs, tcp("8080", "REJECT")).line).toBe(1);
    const withReject = save(
      {},
      [],
      ["-A INPUT -p tcp -m tcp --dport 8080 -j DROP", "-A INPUT -p tcp -m tcp --dport 8080 -j REJECT"],
    );
    expect(shadowing(withReject, { table: "filter", chain: "INPUT", line: 2 })).toMatchObject({
      verdict: "DROP",
      path: "INPUT:1",
    });
  });
  it("REJECTs with another --reject-with are the same verdict (refused at once)", () => {
    const two = save(
      {},
      [],
      [
        "-A INPUT -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset",
        "-A INPUT -p tcp -m tcp --dport 8080 -j REJECT --reject-with icmp-port-unreachable",
      ],
    );
    expect(shadowing(two, { table: "filter", chain: "INPUT", line: 2 })).toBeUndefined();
  });
});

describe("7. a same-verdict rule deciding first makes the rule redundant, not shadowed", () => {
  const rs = save(
    {},
    [],
    [
      "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
      "-A INPUT -j DROP",
      "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
    ],
  );
  it("shadowing() says nothing about line 3 (no false alarm about -j DROP)", () => {
    expect(shadowing(rs, { table: "filter", chain: "INPUT", line: 3 })).toBeUndefined();
  });
  it("placed there explicitly, it is effective and the reason says it is redundant", () => {
    const p = place(rs, tcp("8080", "ACCEPT"), 4);
    expect(p.effective).toBe(true);
    expect(p.reason).toContain(
      "(redundant there: INPUT:1 (-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT) accepts tcp 8080 first",
    );
  });
  it("auto puts it where it decides (and counts) its own packets", () => {
    expect(place(rs, tcp("8080", "ACCEPT")).line).toBe(1);
  });
});

describe("found by the kernel-differential test (test/rules-lab/placement.test.ts)", () => {
  it("-m tcp ! --dport and -m multiport --dports in one rule both have to match", () => {
    const rs = save({}, [], ["-A INPUT -p tcp -m tcp ! --dport 3306 -m multiport --dports 2222,3306 -j DROP"]);
    expect(place(rs, tcp("80", "ACCEPT")).line).toBe(2);
    expect(place(rs, tcp("2222", "ACCEPT")).line).toBe(1);
    expect(place(rs, tcp("3306", "ACCEPT")).line).toBe(2);
  });
});

describe("Docker's DOCKER-USER: the port the client asked for is the original one (--ctorigdstport)", () => {
  const dockerUser = (rules: string[]) =>
    save({ FORWARD: "DROP" }, ["DOCKER-USER"], ["-A FORWARD -j DOCKER-USER", ...rules, "-A DOCKER-USER -j RETURN"]);
  const ours = (verdict: string) => [
    "-p",
    "tcp",
    "-m",
    "conntrack",
    "--ctorigdstport",
    "8080",
    "--ctdir",
    "ORIGINAL",
    "-j",
    verdict,
  ];
  it("a hand-made accept of the original port 8080 is overtaken by a DROP of 8080, not one of 9090", () => {
    const rs = dockerUser(["-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8080:8090 --ctdir ORIGINAL -j ACCEPT"]);
    const p = place(rs, ours("DROP"), "auto", "DOCKER-USER");
    expect(p).toMatchObject({ line: 1, effective: true });
    expect(p.reason).toContain("FORWARD:1 -> DOCKER-USER:1 (");
    expect(
      place(
        dockerUser(["-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 9090 -j ACCEPT"]),
        ours("DROP"),
        "auto",
        "DOCKER-USER",
      ).line,
    ).toBe(2);
  });
  it("a match on the container's port (after DNAT, unknown here) may take the packets either way", () => {
    const rs = dockerUser(["-A DOCKER-USER -p tcp -m tcp --dport 80 -j DROP"]);
    expect(place(rs, ours("ACCEPT"), "auto", "DOCKER-USER").line).toBe(1);
  });
});
