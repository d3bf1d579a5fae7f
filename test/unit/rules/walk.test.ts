/**
 * The classes of wrong answers issue 11 found (placement and `effective` against the kernel), one
 * describe each, on captured rulesets (test/fixtures) and on rulesets written the way the tools
 * write them. Item 8 (opposite rules in one batch) is the host agent's: test/parallel/opposite.test.ts.
 * Here: Following the ordinary packets through chains (provider/rules/walk.ts): jumps, gotos, RETURNs, policies, user chains.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { closedListing, PartialListingError, parseRuleset, parseSpec, placeRule } from "../../../provider/rules";
import type { Ruleset, Table } from "../../../provider/rules";
import { reachedFrom } from "../../fixtures/listing";
import { argvOf, cases, rulesetText } from "../../rules-lab/rulesets";
import { tcp, save, place, ufwWithDeny } from "./rulesets";

describe("1. partial rules inside a jumped-to chain do not hide what is behind them", () => {
  for (const family of [4, 6] as const) {
    const u = family === 4 ? "ufw" : "ufw6";
    it(`ufw ipv${family}: an allow of a port ufw denies goes before -j ${u}-before-input`, () => {
      const rs = ufwWithDeny(family);
      const p = place(rs, tcp("8080", "ACCEPT"));
      expect(p.line).toBe(2);
      expect(p.effective).toBe(true);
      const beforeInput = family === 4 ? 13 : 16;
      expect(p.reason).toBe(
        `before line 2 (-A INPUT -j ${u}-before-input): below it, INPUT:2 -> ${u}-before-input:${beforeInput} -> ` +
          `${u}-user-input:2 (-A ${u}-user-input -p tcp -m tcp --dport 8080 -j DROP) drops tcp 8080`,
      );
      // appended at the end (what the seeds did), it is not effective, and says why
      const end = place(rs, tcp("8080", "ACCEPT"), "bottom");
      expect(end.effective).toBe(false);
      expect(end.shadowedBy).toMatchObject({
        text: `-A ${u}-user-input -p tcp -m tcp --dport 8080 -j DROP`,
        path: `INPUT:2 -> ${u}-before-input:${beforeInput} -> ${u}-user-input:2`,
        verdict: "DROP",
        chain: `${u}-user-input`,
        line: 2,
      });
    });
    it(`ufw ipv${family}: a block of a port ufw allows also goes before it; a free port goes to the end`, () => {
      const rs = ufwWithDeny(family);
      expect(place(rs, tcp("22", "DROP")).line).toBe(2);
      expect(place(rs, tcp("2222", "ACCEPT"))).toMatchObject({ line: 7, effective: true });
    });
  }
  it("addrtype LOCAL RETURN and INVALID DROP are followed through (ufw-not-local, ufw-before-input)", () => {
    const rs = save(
      {},
      ["NOT-LOCAL", "BEFORE"],
      [
        "-A INPUT -j BEFORE",
        "-A BEFORE -m conntrack --ctstate INVALID -j DROP",
        "-A BEFORE -j NOT-LOCAL",
        "-A BEFORE -p tcp -m tcp --dport 8080 -j DROP",
        "-A NOT-LOCAL -m addrtype --dst-type LOCAL -j RETURN",
        "-A NOT-LOCAL -j DROP",
      ],
    );
    expect(place(rs, tcp("8080", "ACCEPT"))).toMatchObject({ line: 1 });
    expect(place(rs, tcp("8080", "ACCEPT")).reason).toContain("INPUT:1 -> BEFORE:3 (");
    expect(place(rs, tcp("9090", "ACCEPT"))).toMatchObject({
      line: 2,
      reason: "end of chain: it decides its packets there",
    });
  });
  it("a jump that covers only some packets is followed for the packets it covers", () => {
    const rs = save({}, ["WEB"], ["-A INPUT -p tcp -m multiport --dports 80,443,8080 -j WEB", "-A WEB -j DROP"]);
    expect(place(rs, tcp("8080", "ACCEPT")).line).toBe(1);
    expect(place(rs, tcp("9090", "ACCEPT")).line).toBe(2);
  });
});

describe("6. gotos, RETURNs, policies and targets the model does not know", () => {
  it("-g into a chain that falls through: the packet goes to the policy of the built-in chain", () => {
    const rs = save(
      { INPUT: "DROP" },
      ["TCP"],
      ["-A INPUT -p tcp -g TCP", "-A TCP -p tcp -m tcp --dport 22 -j ACCEPT"],
    );
    const p = place(rs, tcp("8080", "ACCEPT"));
    expect(p.line).toBe(1);
    expect(p.reason).toContain("INPUT:1 -> TCP:end -> policy DROP (-P INPUT DROP) drops tcp 8080");
  });
  it("-g from a jumped-to chain returns to the caller's caller, not to the chain it came from", () => {
    const rs = save(
      {},
      ["A", "B"],
      ["-A INPUT -j A", "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT", "-A A -g B", "-A A -j DROP"],
    );
    // after B falls through, INPUT:2 accepts 8080 (a model that went back to A would see A's DROP)
    expect(place(rs, tcp("8080", "ACCEPT")).line).toBe(2);
    expect(place(rs, tcp("8080", "ACCEPT"), 3)).toMatchObject({ effective: true });
    expect(place(rs, tcp("8080", "DROP"), 3).shadowedBy).toMatchObject({ path: "INPUT:2", verdict: "ACCEPT" });
  });
  it("RETURN from a built-in chain goes to its policy", () => {
    const rs = save({ INPUT: "DROP" }, [], ["-A INPUT -p tcp -m tcp --dport 1024:65535 -j RETURN"]);
    expect(place(rs, tcp("8080", "ACCEPT")).line).toBe(1);
    expect(place(rs, tcp("80", "ACCEPT")).line).toBe(2);
  });
  for (const target of ["NFQUEUE --queue-num 0", "TARPIT", "SYNPROXY --sack-perm --timestamp --wscale 7 --mss 1460"])
    it(`${target.split(" ")[0]} decides the packets otherwise`, () => {
      const rs = save({}, [], [`-A INPUT -p tcp -m tcp --dport 8080 -j ${target}`]);
      expect(place(rs, tcp("8080", "ACCEPT"))).toMatchObject({ line: 1 });
      expect(place(rs, tcp("8080", "ACCEPT"), "bottom").shadowedBy?.verdict).toBe(target.split(" ")[0]);
    });
  it("CT --notrack, LOG and NFLOG are not terminating", () => {
    const raw = parseRuleset(
      "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 8080 -j CT --notrack\n-A PREROUTING -p tcp -m tcp --dport 8080 -j DROP\nCOMMIT\n",
    );
    expect(placeRule(raw, { table: "raw", chain: "PREROUTING", rule: tcp("8080", "ACCEPT") }).line).toBe(2);
    const logs = save({}, [], ['-A INPUT -j LOG --log-prefix "in: "', "-A INPUT -j NFLOG --nflog-group 2"]);
    expect(place(logs, tcp("8080", "DROP")).line).toBe(3);
  });
});

describe("user chains", () => {
  it("a chain that nothing jumps to: no line makes the rule effective, and the reason says so", () => {
    const rs = save({}, ["LONELY"], ["-A LONELY -p tcp -m tcp --dport 8080 -j DROP"]);
    const p = place(rs, tcp("8080", "ACCEPT"), "auto", "LONELY");
    expect(p).toMatchObject({ line: 1, effective: false });
    expect(p.reason).toBe(
      "no line of LONELY makes it effective: no packet reaches LONELY: no rule of INPUT, FORWARD, OUTPUT jumps to LONELY; placed at line 1, the lowest where it decides every packet that enters LONELY",
    );
  });
  it("packets decided before they reach the chain", () => {
    const rs = save({}, ["APP"], ["-A INPUT -p tcp -m tcp --dport 8080 -j DROP", "-A INPUT -j APP"]);
    const p = place(rs, tcp("8080", "ACCEPT"), "auto", "APP");
    expect(p).toMatchObject({ line: 1, effective: false, shadowedBy: { path: "INPUT:1" } });
    expect(p.reason).toMatch(/^no line of APP makes it effective: INPUT:1 \(.*\) drops tcp 8080; placed at/);
  });
});

describe("a listing of what INPUT reaches (issue 25: a batch's first listing on nf_tables)", () => {
  const MANAGERS = join(__dirname, "../../fixtures/managers");
  const saves = readdirSync(MANAGERS).flatMap((m) =>
    readdirSync(join(MANAGERS, m))
      .filter((f) => f.endsWith(".save"))
      .map((f) => ({ name: `${m}/${f}`, text: readFileSync(join(MANAGERS, m, f), "utf8") })),
  );

  it("is judged from INPUT as the whole table is, on every firewall manager's ruleset of test/fixtures/managers", () => {
    expect(saves.length).toBeGreaterThan(15);
    let compared = 0;
    for (const { name, text } of saves) {
      const whole = parseRuleset(text);
      const filter = whole.tables.get("filter");
      if (!filter?.chains.has("INPUT")) continue;
      const part = reachedFrom(filter, ["INPUT"]);
      expect(part.closed, name).toBe(true);
      const partial = { tables: new Map(whole.tables).set("filter", part) };
      for (const port of ["22", "25", "53", "80", "443", "8080", "30080"])
        for (const target of ["ACCEPT", "DROP", "REJECT"]) {
          const rule = parseSpec(["-p", "tcp", "-m", "tcp", "--dport", port, "-j", target]);
          const at = (rs: Ruleset) => placeRule(rs, { table: "filter", chain: "INPUT", rule, position: "auto" });
          expect(at(partial), `${name}: ${port} ${target}`).toEqual(at(whole));
          compared++;
        }
    }
    expect(compared).toBeGreaterThan(300);
  });

  it("is judged from INPUT as the whole table is, on the kernel-differential test's generated rulesets", () => {
    let compared = 0;
    for (const family of [4, 6] as const)
      for (const c of fc.sample(cases(family, "nf_tables"), { numRuns: 150, seed: 25 })) {
        if (c.ours.chain !== "INPUT") continue;
        const whole = parseRuleset(rulesetText(c));
        const filter = whole.tables.get("filter")!;
        const part = reachedFrom(filter, ["INPUT"]);
        expect(part.closed).toBe(true);
        const rule = argvOf(c, "pulumi-iptables:walk/test/r/0123456789ab");
        const at = (rs: Ruleset) => placeRule(rs, { table: "filter", chain: "INPUT", rule, interfaces: ["vlab0"] });
        expect(at({ tables: new Map(whole.tables).set("filter", part) }), rulesetText(c)).toEqual(at(whole));
        compared++;
      }
    expect(compared).toBeGreaterThan(200);
  });

  it("is not closed where a chain a listed rule jumps to is missing, and then is not judged", () => {
    const t = ufwWithDeny(4).tables.get("filter")!;
    const part = reachedFrom(t, ["INPUT"]);
    expect(part.closed).toBe(true);
    const missing = new Map([...part.chains].filter(([name]) => name !== "ufw-before-input"));
    const lacking: Table = { ...part, chains: missing, closed: closedListing({ ...part, chains: missing }) };
    expect(lacking.closed).toBe(false);
    const rule = parseSpec(["-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "ACCEPT"]);
    expect(() =>
      placeRule(
        { tables: new Map([["filter", lacking]]) },
        { table: "filter", chain: "INPUT", rule, position: "auto" },
      ),
    ).toThrow(PartialListingError);
  });
});
