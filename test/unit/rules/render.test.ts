import { describe, expect, it } from "vitest";
import {
  check,
  makeTag,
  MAX_COMMENT_BYTES,
  MAX_TAG_BYTES,
  parseRuleset,
  parseSpec,
  renderRule,
  ruleText,
  tagOf,
} from "../../../provider/rules";

const TAG = "pulumi-iptables:web/prod/allow/abcd1234";
const inputs = (news: Record<string, unknown>) => {
  const r = check({}, { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT", ...news });
  expect(r.failures).toEqual([]);
  return r.inputs;
};

describe("renderRule", () => {
  it.each([
    [{}, 4, `-p tcp -m tcp --dport 2222 -m comment --comment ${TAG} -j ACCEPT`],
    [
      { source: "198.18.0.0/24", inInterface: "eth0", comment: "web (prod)" },
      4,
      `-s 198.18.0.0/24 -i eth0 -p tcp -m tcp --dport 2222 -m comment --comment web (prod) ${TAG} -j ACCEPT`,
    ],
    [
      { port: [80, "8000-8100", 53], protocol: "udp", action: "DROP" },
      4,
      `-p udp -m multiport --dports 53,80,8000:8100 -m comment --comment ${TAG} -j DROP`,
    ],
    [
      { port: "8000-8100", action: "REJECT" },
      4,
      `-p tcp -m tcp --dport 8000:8100 -m comment --comment ${TAG} -j REJECT --reject-with icmp-port-unreachable`,
    ],
    [
      { action: "REJECT", ipVersion: "both", rejectWith: "admin-prohibited" },
      6,
      `-p tcp -m tcp --dport 2222 -m comment --comment ${TAG} -j REJECT --reject-with icmp6-adm-prohibited`,
    ],
    [
      { action: "REJECT", ipVersion: "both", rejectWith: "tcp-reset" },
      4,
      `-p tcp -m tcp --dport 2222 -m comment --comment ${TAG} -j REJECT --reject-with tcp-reset`,
    ],
    [
      { source: "fd00:18::/64", ipVersion: "ipv6", inInterface: "veth+" },
      6,
      `-s fd00:18::/64 -i veth+ -p tcp -m tcp --dport 2222 -m comment --comment ${TAG} -j ACCEPT`,
    ],
  ] as const)("%j ipv%s", (news, family, expected) => {
    expect(renderRule(inputs(news), family, TAG).join(" ")).toBe(expected);
  });

  it("refuses a family the inputs do not cover", () => {
    expect(() => renderRule(inputs({ ipVersion: "ipv6" }), 4, TAG)).toThrow(/no IPv4 rule/);
  });

  it("round-trips through the parser and tagOf", () => {
    const argv = renderRule(inputs({ comment: "a,b" }), 4, TAG);
    const spec = parseSpec(argv);
    expect(spec.opaque).toEqual([]);
    expect(tagOf(spec)).toBe(TAG);
    expect(tagOf(parseSpec(["-j", "ACCEPT"]))).toBeUndefined();
  });
});

describe("ruleText", () => {
  it("quotes the comment exactly as iptables -S does", () => {
    expect(ruleText("INPUT", ["-m", "comment", "--comment", "plain_word-1", "-j", "ACCEPT"])).toBe(
      "-A INPUT -m comment --comment plain_word-1 -j ACCEPT",
    );
    expect(ruleText("INPUT", ["-m", "comment", "--comment", `it's "x" \\`, "-j", "ACCEPT"])).toBe(
      `-A INPUT -m comment --comment "it\\'s \\"x\\" \\\\" -j ACCEPT`,
    );
    const text = ruleText("INPUT", renderRule(inputs({ comment: "web (prod)" }), 4, TAG));
    expect(parseRuleset(text).tables.get("filter")!.chains.get("INPUT")!.rules[0].text).toBe(text);
  });
  it("quotes each module's and target's values as that extension prints them", () => {
    const text = (argv: string[]) => ruleText("INPUT", argv);
    // xtables_save_string: quoted only when needed, `'` escaped too
    expect(text(["-j", "LOG", "--log-prefix", "ssh: "])).toBe('-A INPUT -j LOG --log-prefix "ssh: "');
    expect(text(["-j", "LOG", "--log-prefix", "ssh"])).toBe("-A INPUT -j LOG --log-prefix ssh");
    expect(text(["-j", "NFLOG", "--nflog-prefix", "it's"])).toBe(`-A INPUT -j NFLOG --nflog-prefix "it\\'s"`);
    expect(text(["-m", "cgroup", "--path", "/"])).toBe('-A INPUT -m cgroup --path "/"');
    // always quoted: `"` and `\` escaped, `'` not
    expect(text(["-m", "string", "!", "--string", `a"b'`, "--algo", "bm"])).toBe(
      `-A INPUT -m string ! --string "a\\"b'" --algo bm`,
    );
    expect(text(["-m", "string", "--hex-string", "|0a0a|", "--algo", "kmp"])).toBe(
      '-A INPUT -m string --hex-string "|0a0a|" --algo kmp',
    );
    expect(text(["-m", "u32", "--u32", "0x0=0x0"])).toBe('-A INPUT -m u32 --u32 "0x0=0x0"');
    expect(text(["-m", "bpf", "--bytecode", "1,6 0 0 0"])).toBe('-A INPUT -m bpf --bytecode "1,6 0 0 0"');
    // the same option name is quoted by one extension and bare in another
    expect(text(["-m", "connlabel", "--label", "40", "-j", "IDLETIMER", "--timeout", "9", "--label", "x"])).toBe(
      '-A INPUT -m connlabel --label "40" -j IDLETIMER --timeout 9 --label x',
    );
    // a value that looks like a module or target token stays a value
    expect(text(["-m", "comment", "--comment", "-j", "-m", "string", "--string", "x", "--algo", "bm"])).toBe(
      '-A INPUT -m comment --comment -j -m string --string "x" --algo bm',
    );
  });
});

describe("makeTag", () => {
  it("sanitizes and keeps the format", () => {
    expect(makeTag({ project: "web", stack: "org/prod", name: "allow ssh; rm" }, "abcd1234")).toBe(
      "pulumi-iptables:web/org_prod/allow_ssh__rm/abcd1234",
    );
  });
  it("fits long names into MAX_TAG_BYTES, so any valid comment plus the tag fits iptables' 255 bytes", () => {
    const tag = makeTag({ project: "p".repeat(300), stack: "s".repeat(50), name: "n".repeat(500) }, "abcd1234");
    expect(tag.length).toBe(MAX_TAG_BYTES);
    expect(tag).toMatch(/^pulumi-iptables:p+\/s+\/n+\/abcd1234$/);
    expect(MAX_COMMENT_BYTES + 1 + MAX_TAG_BYTES).toBe(255);
  });
  it("refuses a unique part that is not 4-32 letters or digits", () => {
    expect(() => makeTag({ project: "p", stack: "s", name: "n" }, "a/b")).toThrow(/unique part/);
  });
});
