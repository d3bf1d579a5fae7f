import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { withDeleted, withInserted } from "../../../provider/host/ruleset-text";
import { chainOf, parseRuleset } from "../../../provider/rules";
import { BACKENDS, FAMILIES, readFamilyFile } from "../../fixtures/captures";
import { kubeProxyFilter } from "../../fixtures/kube";

const BASE = [
  "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
  "-A INPUT -i lo -j ACCEPT",
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
  "-A INPUT -j DROP",
];
const listing = (input: string[]) =>
  `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n${input.map((l) => `[0:0] ${l}`).join("\n")}\n-A FORWARD -j DROP\nCOMMIT\n`;

describe("edits of a parsed listing (one parse per batch)", () => {
  it("any sequence of inserts and deletes gives the ruleset the edited listing parses to", () => {
    const edit = fc.oneof(
      fc.record({
        kind: fc.constant("insert" as const),
        line: fc.integer({ min: 1, max: 12 }),
        port: fc.integer({ min: 1, max: 65535 }),
      }),
      fc.record({ kind: fc.constant("delete" as const), line: fc.integer({ min: 1, max: 12 }) }),
    );
    fc.assert(
      fc.property(fc.array(edit, { maxLength: 10 }), (edits) => {
        let lines = [...BASE];
        let rs = parseRuleset(listing(lines));
        const before = parseRuleset(listing(lines));
        for (const e of edits) {
          if (e.kind === "insert") {
            const text = `-A INPUT -p tcp -m tcp --dport ${e.port} -m comment --comment "p ${e.port}" -j ACCEPT`;
            rs = withInserted(rs, "filter", "INPUT", e.line, text);
            lines.splice(Math.min(e.line, lines.length + 1) - 1, 0, text);
          } else if (e.line <= lines.length) {
            rs = withDeleted(rs, "filter", "INPUT", e.line);
            lines = lines.filter((_, i) => i !== e.line - 1);
          } else {
            expect(() => withDeleted(rs, "filter", "INPUT", e.line)).toThrow(/has no rule/);
          }
        }
        expect(rs).toEqual(parseRuleset(listing(lines)));
        // The ruleset edited from is unchanged (each edit returns a new one).
        expect(before).toEqual(parseRuleset(listing(BASE)));
      }),
    );
  });

  it("shares the chains it does not touch: editing INPUT of a kube-proxy node copies no KUBE-* chain", () => {
    const rs = parseRuleset(kubeProxyFilter(2_000, BASE));
    const next = withInserted(rs, "filter", "INPUT", 5, "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT");
    expect(chainOf(next, "filter", "KUBE-SERVICES")).toBe(chainOf(rs, "filter", "KUBE-SERVICES"));
    expect(chainOf(next, "filter", "INPUT")!.rules.map((r) => r.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(chainOf(next, "filter", "INPUT")!.rules[4].text).toBe("-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT");
    expect(chainOf(rs, "filter", "INPUT")!.rules).toHaveLength(8);
  });
});

describe("edits around a hand-made comment with a newline and other odd bytes (captured)", () => {
  for (const backend of BACKENDS)
    for (const family of FAMILIES)
      it(`${backend} ipv${family}: an insert above, between or below it and its delete leave it as it was`, () => {
        const rs = parseRuleset(readFamilyFile(backend, family, "odd-comment/save-c.txt"));
        const ours = "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT";
        for (const line of [1, 2, 3]) {
          const edited = withInserted(rs, "filter", "INPUT", line, ours);
          const rules = chainOf(edited, "filter", "INPUT")!.rules;
          expect(rules.map((r) => r.text).indexOf(ours)).toBe(line - 1);
          expect(rules).toHaveLength(3);
          expect(withDeleted(edited, "filter", "INPUT", line)).toEqual(rs);
        }
        const without = chainOf(withDeleted(rs, "filter", "INPUT", 1), "filter", "INPUT")!;
        expect(without.rules.map((r) => r.text)).toEqual(["-A INPUT -j DROP"]);
      });
});
