/**
 * iptables' own test corpus through the pure core: every line iptables 1.8.9 and 1.8.11 print back in
 * their `extensions/*.t` cases and shell testcases' dumps (test/fixtures/iptables-corpus, captured by
 * scripts/capture-iptables-corpus.ts) is parsed, printed back by ruleText exactly as iptables printed
 * it, found (or not) by findByTag, and judged by shadowing and placeRule without an exception.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { findByTag, parseRuleset, placeRule, ruleText, shadowing, type Rule } from "../../../provider/rules";

interface Case {
  families: string;
  table: string;
  origin: string;
  line: string;
}

const DIR = join(__dirname, "..", "..", "fixtures", "iptables-corpus");
const VERSIONS = ["1.8.9", "1.8.11"];
const TAG = "pulumi-iptables:corpus/test/ours/abcd1234";

function corpus(version: string): Case[] {
  const text = gunzipSync(readFileSync(join(DIR, `iptables-${version}.tsv.gz`))).toString("utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const [families, table, origin, line] = l.split("\t");
      return { families, table, origin, line };
    });
}

/** The listed line without counters (`[pkts:bytes]`, `-S -v`'s `-c pkts bytes`): what `iptables -S` prints. */
const listed = (line: string) => line.replace(/^\[\d+:\d+\] /, "").replace(/ -c \d+ \d+(?= |$)/, "");

/** The corpus line alone in its table, parsed. */
function ruleOf(c: Case): Rule {
  const rs = parseRuleset(`*${c.table}\n${c.line}\nCOMMIT\n`);
  const chain = [...(rs.tables.get(c.table)?.chains.values() ?? [])][0];
  expect(chain?.rules).toHaveLength(1);
  return chain.rules[0];
}

describe.each(VERSIONS)("iptables %s's test corpus", (version) => {
  const cases = corpus(version);

  it("is there: thousands of listed lines", () => {
    expect(cases.length).toBeGreaterThan(2000);
  });

  it("prints every line back exactly as iptables printed it (ruleText of the parsed tokens)", () => {
    const wrong = cases.flatMap((c) => {
      const rule = ruleOf(c);
      const back = ruleText(rule.chain, rule.tokens);
      return back === listed(c.line) && rule.text === back
        ? []
        : [`${c.origin}\n  listed: ${c.line}\n  ours:   ${back}`];
    });
    expect(wrong).toEqual([]);
  });

  it("findByTag finds only the rule that carries the tag", () => {
    for (const c of cases) {
      const rule = ruleOf(c);
      const alone = parseRuleset(`*${c.table}\n${c.line}\nCOMMIT\n`);
      expect(findByTag(alone, c.table, rule.chain, TAG)).toBeUndefined();
      const ours = `-A ${rule.chain} -p tcp -m tcp --dport 2222 -m comment --comment "${TAG}" -j ACCEPT`;
      const both = parseRuleset(`*${c.table}\n${c.line}\n${ours}\nCOMMIT\n`);
      expect(findByTag(both, c.table, rule.chain, TAG)?.line).toBe(2);
    }
  });

  it("never throws: shadowing and placeRule judge every line", () => {
    for (const c of cases) {
      const rule = ruleOf(c);
      const rs = parseRuleset(`*${c.table}\n${c.line}\n-A ${rule.chain} -p tcp -m tcp --dport 2222 -j DROP\nCOMMIT\n`);
      const at = { table: c.table, chain: rule.chain };
      expect(() => shadowing(rs, { ...at, line: 1 })).not.toThrow();
      expect(() => shadowing(rs, { ...at, line: 2 })).not.toThrow();
      for (const rule of [
        ["-p", "tcp", "-m", "tcp", "--dport", "2222", "-j", "ACCEPT"],
        ["-p", "udp", "-m", "udp", "--dport", "53", "-j", "REJECT"],
      ]) {
        const placed = placeRule(rs, { ...at, rule });
        expect(placed.line).toBeGreaterThanOrEqual(1);
        expect(placed.line).toBeLessThanOrEqual(3);
      }
    }
  });
});
