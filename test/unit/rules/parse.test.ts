import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  chainOf,
  listingLines,
  parseRuleset,
  parseSpec,
  parseVersion,
  RulesetParseError,
} from "../../../provider/rules";
import { renderSpec, ruleText } from "../../../provider/rules/render";
import { kubeProxyFilter } from "../../fixtures/kube";
import { BACKENDS, CAPTURES, FAMILIES, label, readFamilyFile } from "../../fixtures/captures";

/** The `-A` lines of `iptables -S` output, in order. */
const appendLines = (s: string) => listingLines(s).filter((l) => l.startsWith("-A "));
const ruleTexts = (text: string, table = "filter") =>
  [...(parseRuleset(text).tables.get(table)?.chains.values() ?? [])].flatMap((c) => c.rules.map((r) => r.text));

describe("parseRuleset over captured transcripts", () => {
  it.each(CAPTURES.map((c) => [label(c), c] as const))("%s", (_, c) => {
    const S = c.read("S.txt");
    const fromSave = parseRuleset(c.read("save.txt"));
    const filter = fromSave.tables.get("filter")!;

    // every rule's text is exactly the line iptables -S prints, chain by chain in -S's order
    const sTexts = appendLines(S);
    const byChain = (texts: string[]) => [...texts].sort((a, b) => a.split(" ")[1].localeCompare(b.split(" ")[1]));
    expect(byChain(ruleTexts(c.read("save.txt")))).toEqual(byChain(sTexts));
    expect(ruleTexts(S)).toEqual(ruleTexts(c.read("S-v.txt")));
    expect(ruleTexts(c.read("save-c.txt"))).toEqual(ruleTexts(c.read("save.txt")));

    // policies and user chains
    for (const line of S.split("\n").filter((l) => l.startsWith("-P "))) {
      const [, chain, policy] = line.split(" ");
      expect(filter.chains.get(chain)?.policy).toBe(policy);
    }
    for (const line of S.split("\n").filter((l) => l.startsWith("-N "))) {
      expect(filter.chains.get(line.slice(3))?.policy).toBeUndefined();
    }

    // counters: [pkts:bytes] of save -c and -c pkts bytes of -S -v agree rule by rule
    const withCounters = parseRuleset(c.read("save-c.txt")).tables.get("filter")!;
    const fromSv = parseRuleset(c.read("S-v.txt")).tables.get("filter")!;
    for (const [name, chain] of withCounters.chains) {
      chain.rules.forEach((r, i) => {
        expect(r.counters).toBeDefined();
        expect(fromSv.chains.get(name)!.rules[i].counters).toEqual(r.counters);
        expect(r.line).toBe(i + 1);
      });
    }

    // the flag table renders every fully modeled rule back to the exact text -S printed
    for (const chain of filter.chains.values()) {
      for (const rule of chain.rules.filter((r) => r.opaque.length === 0)) {
        expect(ruleText(rule.chain, renderSpec(rule))).toBe(rule.text);
      }
    }
  });

  it("reads the docker nat table and its opaque matches and targets", () => {
    for (const backend of BACKENDS) {
      const rs = parseRuleset(readFamilyFile(backend, 4, "docker/save.txt"));
      const dnat = chainOf(rs, "nat", "DOCKER")!.rules[1];
      expect(dnat.match.inInterface).toEqual({ value: "docker0", negated: true });
      expect(dnat.match.dport).toEqual({ value: "8080", negated: false });
      expect(dnat.target).toBe("DNAT");
      expect(dnat.targetArgs).toEqual(["--to-destination", "198.19.0.2:80"]);
      const out = chainOf(rs, "nat", "OUTPUT")!.rules[0];
      expect(out.match.destination).toEqual({ value: "198.19.255.0/24", negated: true });
      expect(out.opaque).toEqual(["-m", "addrtype", "--dst-type", "LOCAL"]);
    }
  });

  it("reads the [pkts:bytes] counters iptables-restore --counters loaded (legacy and nf_tables IPv4)", () => {
    for (const backend of BACKENDS) {
      const rs = parseRuleset(readFamilyFile(backend, 4, "allow-guide/save-c.txt"));
      expect(chainOf(rs, "filter", "INPUT")!.rules.map((r) => r.counters)).toEqual([
        { packets: 120n, bytes: 9600n },
        { packets: 4n, bytes: 240n },
      ]);
    }
  });

  it("reads 64-bit counters exactly, above 2^53 too (save -c and -S -v)", () => {
    const max = 18446744073709551615n; // 2^64 - 1
    const over = 9007199254740993n; // 2^53 + 1: a double rounds it to 2^53
    const save = parseRuleset(`*filter\n:INPUT ACCEPT [${max}:${over}]\n[${over}:${max}] -A INPUT -j ACCEPT\nCOMMIT\n`);
    const input = chainOf(save, "filter", "INPUT")!;
    expect(input.counters).toEqual({ packets: max, bytes: over });
    expect(input.rules[0].counters).toEqual({ packets: over, bytes: max });
    const sv = parseRuleset(`-P INPUT ACCEPT -c ${over} ${max}\n-A INPUT -c ${max} ${over} -j ACCEPT\n`);
    expect(chainOf(sv, "filter", "INPUT")!.counters).toEqual({ packets: over, bytes: max });
    expect(chainOf(sv, "filter", "INPUT")!.rules[0].counters).toEqual({ packets: max, bytes: over });
  });
});

describe("parseVersion", () => {
  it.each(BACKENDS.flatMap((b) => FAMILIES.map((f) => [b, f] as const)))("%s ipv%s", (backend, family) => {
    expect(parseVersion(readFamilyFile(backend, family, "version.txt"))).toEqual({ version: "1.8.9", backend });
  });
  it("treats a version without backend (before 1.8) as legacy and rejects other text", () => {
    expect(parseVersion("iptables v1.6.1\n")).toEqual({ version: "1.6.1", backend: "legacy" });
    expect(() => parseVersion("sh: iptables: not found")).toThrow(RulesetParseError);
  });
});

describe("parseSpec and odd lines", () => {
  it("reads negation in both positions, goto, -f, quoted and hex strings", () => {
    expect(parseSpec(["-s", "!", "198.18.0.1", "-p", "tcp", "--dport", "!", "22", "-j", "DROP"]).match).toEqual({
      source: { value: "198.18.0.1", negated: true },
      protocol: { value: "tcp", negated: false },
      dport: { value: "22", negated: true },
    });
    const spec = parseSpec(["!", "-f", "-m", "string", "--hex-string", "|41 42|", "--algo", "bm", "-g", "USR"]);
    expect(spec.match.fragment).toEqual({ value: "", negated: true });
    expect(spec.opaque).toEqual(["-m", "string", "--hex-string", "|41 42|", "--algo", "bm"]);
    expect([spec.target, spec.goto]).toEqual(["USR", true]);
    expect(parseSpec(["-m", "tcp", "-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "ACCEPT"]).opaque).toEqual([
      "--tcp-flags",
      "SYN,RST",
      "SYN",
    ]);
  });

  it("keeps -S quoting in the text and unquotes tokens", () => {
    const rs = parseRuleset(
      '-P INPUT ACCEPT\n-A INPUT -m comment --comment "a \\"b\\" c\\\\" -j LOG --log-prefix "x: "\n',
    );
    const r = chainOf(rs, "filter", "INPUT")!.rules[0];
    expect(r.match.comment?.value).toBe('a "b" c\\');
    expect(r.text).toBe('-A INPUT -m comment --comment "a \\"b\\" c\\\\" -j LOG --log-prefix "x: "');
    expect(r.targetArgs).toEqual(["--log-prefix", "x: "]);
  });

  it("skips headers and warnings by content, and names the line it cannot read", () => {
    const text =
      "# Warning: iptables-legacy tables present, use iptables-legacy to see them\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
    expect(chainOf(parseRuleset(text), "filter", "INPUT")!.rules).toHaveLength(1);
    const bad = () => parseRuleset("*filter\n:INPUT ACCEPT [0:0]\n-X INPUT\nCOMMIT\n");
    expect(bad).toThrow(RulesetParseError);
    expect(bad).toThrow(/line 3 .*"-X INPUT"/);
    try {
      parseRuleset('-A INPUT -m comment --comment "open');
    } catch (e) {
      expect(e).toBeInstanceOf(RulesetParseError);
      expect((e as RulesetParseError).lineNumber).toBe(1);
      expect((e as RulesetParseError).why).toBe("unterminated quote");
    }
  });

  it("reads iptables -S output of another table when told which", () => {
    const rs = parseRuleset(
      "-P PREROUTING ACCEPT\n-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.0.2:8080\n",
      { table: "nat" },
    );
    expect(chainOf(rs, "nat", "PREROUTING")!.rules[0].target).toBe("DNAT");
  });
});

describe("a hand-made comment with a newline and other odd bytes (captured)", () => {
  for (const backend of BACKENDS)
    for (const family of FAMILIES)
      it(`${backend} ipv${family}: read from every listing`, () => {
        for (const file of ["save.txt", "save-c.txt", "S.txt", "S-v.txt"]) {
          const text = readFamilyFile(backend, family, `odd-comment/${file}`);
          const input = chainOf(parseRuleset(text), "filter", "INPUT")!;
          expect(input.rules.map((r) => r.target)).toEqual(["ACCEPT", "DROP"]);
          expect(input.rules[0].match.comment?.value).toBe('first line\nsecond "quoted" \\ tab\there \u0001');
        }
      });
});

describe("parseRuleset at size", () => {
  it("reads a kube-proxy node's filter table of 20,000 service rules, every rule once, in order", () => {
    const listing = kubeProxyFilter(20_000, ["-A INPUT -i lo -j ACCEPT", "-A INPUT -j DROP"]).replace(
      /^-A /gm,
      "[7:420] -A ",
    );
    const filter = parseRuleset(listing).tables.get("filter")!;
    const count = (chain: string) => filter.chains.get(chain)!.rules.length;
    expect(count("KUBE-SERVICES") + count("KUBE-EXTERNAL-SERVICES") + count("KUBE-NODEPORTS")).toBe(20_000);
    const input = filter.chains.get("INPUT")!.rules;
    expect(input.map((r) => r.target)).toEqual([
      "KUBE-PROXY-FIREWALL",
      "KUBE-NODEPORTS",
      "KUBE-EXTERNAL-SERVICES",
      "KUBE-FIREWALL",
      "ACCEPT",
      "DROP",
    ]);
    const last = filter.chains.get("KUBE-NODEPORTS")!.rules.at(-1)!;
    expect(last.line).toBe(count("KUBE-NODEPORTS"));
    expect(last.counters).toEqual({ packets: 7n, bytes: 420n });
    expect(last.match.comment?.value).toBe("team-17/svc-19999:health");
    expect(last.text).toBe(
      '-A KUBE-NODEPORTS -p tcp -m comment --comment "team-17/svc-19999:health" -m tcp --dport 30623 -j ACCEPT',
    );
  });

  it("splits a line the same with spaces or tabs, quoted or not (the fast path for plain lines agrees with the full tokenizer)", () => {
    const token = fc.stringMatching(/^[-A-Za-z0-9_:./!,]{1,12}$/);
    fc.assert(
      fc.property(fc.array(token, { minLength: 1, maxLength: 12 }), (tokens) => {
        const plain = parseRuleset(`*filter\n-A INPUT ${tokens.join(" ")}\nCOMMIT\n`);
        const tabbed = parseRuleset(`*filter\n-A\tINPUT\t${tokens.join(" \t")}\nCOMMIT\n`);
        const quoted = parseRuleset(`*filter\n-A INPUT ${tokens.map((t) => `"${t}"`).join(" ")}\nCOMMIT\n`);
        const rule = (rs: typeof plain) => chainOf(rs, "filter", "INPUT")!.rules[0];
        expect(rule(tabbed).text).toBe(rule(plain).text);
        expect(rule(tabbed).tokens).toEqual(tokens);
        expect(rule(quoted).tokens).toEqual(tokens);
        expect(rule(plain).tokens).toEqual(tokens);
      }),
    );
  });

  it("keeps escaped quotes and backslashes inside a quoted comment", () => {
    const rs = parseRuleset('*filter\n-A INPUT -m comment --comment "say \\"hi\\" \\\\o/" -j ACCEPT\nCOMMIT\n');
    const rule = chainOf(rs, "filter", "INPUT")!.rules[0];
    expect(rule.match.comment?.value).toBe('say "hi" \\o/');
    expect(rule.text).toBe('-A INPUT -m comment --comment "say \\"hi\\" \\\\o/" -j ACCEPT');
    expect(() => parseRuleset('*filter\n-A INPUT -m comment --comment "open -j ACCEPT\nCOMMIT\n')).toThrow(
      RulesetParseError,
    );
  });
});
