// Judgements on edited copies (./ruleset-text) reuse the walk caches of the table they were made
// from (rules/walk.ts, editedFrom): they must equal the judgements on a fresh copy that shares no
// cache, on generated rulesets (test/rules-lab/rulesets.ts), after insertions into the judged chain
// and deletions anywhere (user chains the judged chain reaches included).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { withDeleted, withInserted } from "../../../provider/host/ruleset-text";
import { parseRuleset, placeRule, type Ruleset, shadowing } from "../../../provider/rules";
import { cases, natText, POOL, rulesetText } from "../../rules-lab/rulesets";

/** The same rules in new Table and Chain objects: nothing cached for them. */
const fresh = (rs: Ruleset): Ruleset => ({
  tables: new Map(
    [...rs.tables].map(([n, t]) => [
      n,
      { ...t, chains: new Map([...t.chains].map(([c, ch]) => [c, { ...ch, rules: [...ch.rules] }])) },
    ]),
  ),
});

const edits = fc.array(
  fc.record({ port: fc.constantFrom(...POOL), verdict: fc.constantFrom("ACCEPT", "DROP"), del: fc.nat(40) }),
  { minLength: 1, maxLength: 5 },
);

describe("judgements on edited copies", () => {
  it("equal the judgements on a fresh copy, edit after edit", () => {
    let judged = 0;
    fc.assert(
      fc.property(cases(4, "nf_tables"), edits, (c, steps) => {
        const nat = parseRuleset(natText(c));
        let rs = parseRuleset(rulesetText(c));
        const chain = c.ours.chain;
        const chains = [...rs.tables.get("filter")!.chains.keys()];
        for (const [i, s] of steps.entries()) {
          const rule = ["-p", "tcp", "-m", "tcp", "--dport", String(s.port), "-j", s.verdict];
          const request = { table: "filter", chain, rule, nat };
          const placed = placeRule(rs, request);
          expect(placed).toEqual(placeRule(fresh(rs), request));
          for (const p of c.probes) {
            const line = (p % (rs.tables.get("filter")!.chains.get(chain)!.rules.length + 1)) + 1;
            const request = { table: "filter", chain, rule, nat, position: line };
            expect(placeRule(rs, request)).toEqual(placeRule(fresh(rs), request));
          }
          rs = withInserted(rs, "filter", chain, placed.line, `-A ${chain} ${rule.join(" ")}`);
          const at = { table: "filter", chain, line: placed.line, nat };
          expect(shadowing(rs, at)).toEqual(shadowing(fresh(rs), at));
          // a deletion somewhere (another chain every other step), judged again on the next step
          const victim = chains[(s.del + i) % chains.length];
          const length = rs.tables.get("filter")!.chains.get(victim)!.rules.length;
          if (length) rs = withDeleted(rs, "filter", victim, (s.del % length) + 1);
          judged++;
        }
      }),
      { numRuns: 300, seed: 25 },
    );
    expect(judged).toBeGreaterThan(300);
  });
});
