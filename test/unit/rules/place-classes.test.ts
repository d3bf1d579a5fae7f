/**
 * The classes of wrong answers issue 11 found (placement and `effective` against the kernel), one
 * describe each, on captured rulesets (test/fixtures) and on rulesets written the way the tools
 * write them. Item 8 (opposite rules in one batch) is the host agent's: test/lab/batch.test.ts.
 */
import { describe, expect, it } from "vitest";
import { parseRuleset, placeRule, shadowing, type Position, type Ruleset } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";

const tcp = (port: string, verdict: string, ...extra: string[]) => {
  const multi = port.includes(",");
  return [
    ...extra,
    "-p",
    "tcp",
    "-m",
    multi ? "multiport" : "tcp",
    multi ? "--dports" : "--dport",
    port,
    "-j",
    verdict,
  ];
};

/** An iptables-save text of the filter table: policies first, then chains and rules. */
function save(policy: { INPUT?: string; FORWARD?: string }, chains: string[], rules: string[]): Ruleset {
  return parseRuleset(
    [
      "*filter",
      `:INPUT ${policy.INPUT ?? "ACCEPT"} [0:0]`,
      `:FORWARD ${policy.FORWARD ?? "ACCEPT"} [0:0]`,
      ":OUTPUT ACCEPT [0:0]",
      ...chains.map((c) => `:${c} - [0:0]`),
      ...rules,
      "COMMIT",
      "",
    ].join("\n"),
  );
}

const place = (rs: Ruleset, rule: string[], position?: Position, chain = "INPUT") =>
  placeRule(rs, { table: "filter", chain, rule, position });

/** The captured ufw ruleset (default deny, allow 22/tcp) with `ufw deny 8080/tcp` added the way ufw adds it. */
function ufwWithDeny(family: 4 | 6): Ruleset {
  const u = family === 4 ? "ufw" : "ufw6";
  const text = readFamilyFile("nf_tables", family, "ufw/save.txt").replace(
    `-A ${u}-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n`,
    `-A ${u}-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n-A ${u}-user-input -p tcp -m tcp --dport 8080 -j DROP\n`,
  );
  return parseRuleset(text);
}

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

describe("2. --ctstate NEW / --state NEW match every first packet", () => {
  it("ufw-track-input style NEW accept (default allow) must be overtaken by a DROP", () => {
    for (const m of [
      ["-m", "conntrack", "--ctstate", "NEW"],
      ["-m", "state", "--state", "NEW"],
      ["-m", "conntrack", "--ctstate", "NEW,ESTABLISHED"],
    ]) {
      const rs = save({ INPUT: "DROP" }, ["TRACK"], ["-A INPUT -j TRACK", `-A TRACK -p tcp ${m.join(" ")} -j ACCEPT`]);
      expect(place(rs, tcp("8080", "DROP"))).toMatchObject({ line: 1 });
      expect(shadowing(parseRuleset(`${rulesText(rs)}`), { table: "filter", chain: "INPUT", line: 1 })).toBeUndefined();
    }
  });
  it("ESTABLISHED,RELATED and INVALID do not match them; ! --ctstate NEW does not either", () => {
    const rs = save(
      { INPUT: "DROP" },
      [],
      [
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        "-A INPUT -p tcp -m conntrack ! --ctstate NEW -j DROP",
      ],
    );
    expect(place(rs, tcp("2222", "ACCEPT"))).toMatchObject({ line: 4, effective: true });
  });
});

describe("3. negated matches decide every ordinary client's packets", () => {
  const rs = save({}, [], ["-A INPUT ! -s 198.18.0.0/24 -p tcp -m tcp --dport 8080 -j DROP"]);
  it("only the admin net may reach 8080: an allow for everyone goes above", () => {
    expect(place(rs, tcp("8080", "ACCEPT")).line).toBe(1);
    expect(place(rs, tcp("8080", "ACCEPT"), "bottom").shadowedBy?.path).toBe("INPUT:1");
  });
  it("an allow for a host inside the admin net is not affected by it", () => {
    expect(place(rs, tcp("8080", "ACCEPT", "-s", "198.18.0.5/32")).line).toBe(2);
  });
  it("! -i lo is every ordinary packet; -i lo, -i eth0, -i eth+ are exceptions that stay above", () => {
    expect(place(save({}, [], ["-A INPUT ! -i lo -j DROP"]), tcp("2222", "ACCEPT")).line).toBe(1);
    for (const i of ["lo", "eth0", "eth+"])
      expect(place(save({}, [], [`-A INPUT -i ${i} -j DROP`]), tcp("2222", "ACCEPT")).line).toBe(2);
    // the rule's own interface is inside eth+: that one decides it
    expect(place(save({}, [], ["-A INPUT -i eth+ -j DROP"]), tcp("2222", "ACCEPT", "-i", "eth0")).line).toBe(1);
  });
  it("! --dports decides the ports it does not list", () => {
    const neg = save({}, [], ["-A INPUT -p tcp -m multiport ! --dports 22,80 -j DROP"]);
    expect(place(neg, tcp("2222", "ACCEPT")).line).toBe(1);
    expect(place(neg, tcp("80", "ACCEPT")).line).toBe(2);
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

describe("exceptions and matches that may go either way", () => {
  const exceptions = [
    "-s 198.18.9.0/24",
    "-d 198.18.0.10/32",
    "-i eth+",
    "-m set --match-set f2b-sshd src",
    "-m recent --rcheck --seconds 60 --name SSH --mask 255.255.255.255 --rsource",
    "-m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-saddr",
    "-m hashlimit --hashlimit-above 10/sec --hashlimit-mode srcip --hashlimit-name h",
    "-m addrtype --dst-type BROADCAST",
    "-m addrtype --dst-type MULTICAST",
    "-p udp -m udp --sport 67 --dport 68",
  ];
  for (const e of exceptions)
    it(`${e}: stays above`, () => {
      expect(place(save({}, [], [`-A INPUT ${e} -j DROP`]), tcp("68", "ACCEPT"))).toMatchObject({
        line: 2,
        effective: true,
      });
    });
  const either = [
    "-m limit --limit 3/min",
    '-m string --string "GET /" --algo bm --to 65535',
    '-m u32 --u32 "0x0>>0x16&0x3c@0x4>>0x10=0x50"',
    "-m mark --mark 0x1",
    "-m length --length 0:100",
  ];
  for (const m of either)
    it(`${m.split(" ").slice(0, 2).join(" ")}: may decide them, so the rule goes above`, () => {
      const rs = save({}, [], [`-A INPUT -p tcp ${m} -j DROP`]);
      expect(place(rs, tcp("8080", "ACCEPT")).line).toBe(1);
      expect(place(rs, tcp("8080", "ACCEPT"), "bottom").effective).toBe(false);
    });
  it("--syn and addrtype LOCAL match the first packet of every connection to the host", () => {
    expect(place(save({}, [], ["-A INPUT -p tcp -m tcp --syn -j DROP"]), tcp("8080", "ACCEPT")).line).toBe(1);
    expect(
      place(save({}, [], ["-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP"]), tcp("8080", "ACCEPT"))
        .line,
    ).toBe(1);
    expect(place(save({}, [], ["-A INPUT -m addrtype --dst-type LOCAL -j DROP"]), tcp("8080", "ACCEPT")).line).toBe(1);
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

/** The ruleset back as iptables-save text (for re-parsing after edits). */
function rulesText(rs: Ruleset): string {
  const out: string[] = [];
  for (const t of rs.tables.values()) {
    out.push(`*${t.name}`);
    for (const c of t.chains.values()) out.push(`:${c.name} ${c.policy ?? "-"} [0:0]`);
    for (const c of t.chains.values()) for (const r of c.rules) out.push(r.text);
    out.push("COMMIT");
  }
  return `${out.join("\n")}\n`;
}

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
