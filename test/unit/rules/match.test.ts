/**
 * The classes of wrong answers issue 11 found (placement and `effective` against the kernel), one
 * describe each, on captured rulesets (test/fixtures) and on rulesets written the way the tools
 * write them. Item 8 (opposite rules in one batch) is the host agent's: test/parallel/opposite.test.ts.
 * Here: How much of a rule's ordinary packets a rule's matches take (provider/rules/match.ts), seen through placeRule and shadowing.
 */
import { describe, expect, it } from "vitest";
import { parseRuleset, shadowing } from "../../../provider/rules";
import { tcp, save, place, rulesText } from "./rulesets";

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
    "-m conntrack --ctorigsrc 198.18.9.0/24",
    "-m conntrack --ctproto udp",
    "-m conntrack --ctstate DNAT",
    "-m conntrack --ctstate SNAT,INVALID",
    "-m tos --tos 0x10/0x3f",
    "-m addrtype --dst-type BROADCAST --limit-iface-in",
    "-m hashlimit --hashlimit-above 10/sec --hashlimit-mode srcport --hashlimit-name h",
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
    // one bucket, or one count, for everyone: whether ordinary clients are over it depends on all the traffic
    "-m hashlimit --hashlimit-above 10/sec --hashlimit-name h",
    "-m hashlimit --hashlimit-upto 10/sec --hashlimit-mode dstip,dstport --hashlimit-name h",
    "-m hashlimit --hashlimit-above 10/sec --hashlimit-mode srcip --hashlimit-name h --hashlimit-srcmask 16",
    "-m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-daddr",
    "-m connlimit --connlimit-upto 10 --connlimit-mask 24 --connlimit-saddr",
    // LOCAL on the incoming interface only: a packet may be addressed to another interface's address
    "-m addrtype --dst-type LOCAL --limit-iface-in",
    "-m conntrack --ctstatus ASSURED",
    "-m conntrack --ctrepldst 198.18.9.1",
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
  it("the client's own side of the connection (--ctorigsrc negated, --ctproto, --ctorigsrcport) and TOS 0 match them", () => {
    for (const m of [
      "-m conntrack ! --ctorigsrc 198.18.9.0/24",
      "-m conntrack --ctorigsrc 0.0.0.0/0",
      "-m conntrack --ctproto tcp",
      "-m conntrack --ctorigsrcport 1024:65535",
      "-m conntrack --ctstate NEW,DNAT",
      "-m tos --tos 0x00/0xff",
      "-m tos ! --tos 0x10/0x3f",
      "-m hashlimit --hashlimit-upto 10/sec --hashlimit-mode srcip --hashlimit-name h",
    ])
      expect(place(save({}, [], [`-A INPUT ${m} -j DROP`]), tcp("8080", "ACCEPT")).line, m).toBe(1);
  });
  it("connlimit's mask is one host only at the whole address of the family (/32 on IPv6 is a site)", () => {
    const listed = (family: 4 | 6 | undefined, mask: number) =>
      parseRuleset(
        `*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m connlimit --connlimit-above 10 --connlimit-mask ${mask} --connlimit-saddr -j DROP\nCOMMIT\n`,
        family ? { family } : {},
      );
    expect(place(listed(4, 32), tcp("8080", "ACCEPT"))).toMatchObject({ line: 2, effective: true });
    expect(place(listed(6, 128), tcp("8080", "ACCEPT"))).toMatchObject({ line: 2, effective: true });
    expect(place(listed(6, 32), tcp("8080", "ACCEPT")).line).toBe(1);
    expect(place(listed(6, 64), tcp("8080", "ACCEPT")).line).toBe(1);
    // no family given and none shown by a rule: 32 may be an IPv6 site
    expect(place(listed(undefined, 32), tcp("8080", "ACCEPT")).line).toBe(1);
    // a rule's own address shows the family
    expect(place(listed(undefined, 32), tcp("8080", "ACCEPT", "-s", "198.18.0.5/32")).line).toBe(2);
  });
});
