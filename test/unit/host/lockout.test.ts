// The lockout guard's judgement on real iptables-save transcripts (test/fixtures): is a new SSH
// connection from the provider accepted with a rule and without it?
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { withDeleted, withInserted } from "../../../provider/host/ruleset-text";
import { bootLockoutOf, lockoutOf, sshFate } from "../../../provider/host/lockout";
import type { GuardOrigin } from "../../../provider/host/types";
import { chainOf, parseRuleset } from "../../../provider/rules";
import type { Ruleset } from "../../../provider/rules";

// The guard judges parsed listings (the agent's, parsed once per batch), edited as the agent edits them.
const parse = (save: string) => parseRuleset(save, { table: "filter" });
const text = (name: string) => readFileSync(join(__dirname, "../../fixtures/nf_tables/ipv4", name, "save.txt"), "utf8");
const fixture = (name: string) => parse(text(name));
const origin: GuardOrigin = { clientAddress: "198.18.5.1", serverPort: 22 };
const OURS = "-A INPUT -p tcp -m tcp --dport 22 -m comment --comment pulumi-iptables:p/s/ssh/abc -j ACCEPT";
/** The ruleset with `rule` appended to INPUT, and its line. */
const withRule = (rs: Ruleset, rule: string) => {
  const line = chainOf(rs, "filter", "INPUT")!.rules.length + 1;
  return { rs: withInserted(rs, "filter", "INPUT", line, rule), line };
};
const without = (rs: Ruleset, line: number) => withDeleted(rs, "filter", "INPUT", line);

describe("sshFate", () => {
  it("a default-DROP chain (the allow guide's) refuses new SSH connections: ESTABLISHED and lo are not them", () => {
    expect(sshFate(fixture("allow-guide"), origin)).toEqual({ accepted: false, by: "the INPUT policy DROP" });
  });

  it("names the rule that accepts them, and the rule that drops them", () => {
    const { rs } = withRule(fixture("allow-guide"), OURS);
    expect(sshFate(rs, origin)).toEqual({
      accepted: true,
      by: OURS.replace(/ -m comment.* -j/, " -m comment --comment pulumi-iptables:p/s/ssh/abc -j"),
    });
    const ends = fixture("ends-in-drop");
    expect(sshFate(ends, origin).by).toBe("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT");
    expect(sshFate(without(ends, 3), origin)).toEqual({ accepted: false, by: "-A INPUT -j DROP" });
    expect(sshFate(ends, { ...origin, serverPort: 2222 })).toEqual({ accepted: false, by: "-A INPUT -j DROP" });
  });

  it("follows jumps: on the ufw host, ufw-user-input's 22 ACCEPT decides; without it, the policy", () => {
    expect(sshFate(fixture("ufw"), origin)).toEqual({
      accepted: true,
      by: "-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT",
    });
    const noSsh = parse(text("ufw").replace("-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n", ""));
    expect(sshFate(noSsh, origin).accepted).toBe(false);
  });

  it("a rule the model cannot read for every packet (a rate limit) does not count as accepting them", () => {
    const { rs } = withRule(
      fixture("allow-guide"),
      "-A INPUT -p tcp -m tcp --dport 22 -m limit --limit 3/min -j ACCEPT",
    );
    expect(sshFate(rs, origin).accepted).toBe(false);
  });
});

describe("lockoutOf", () => {
  it("refuses removing the only rule that accepts SSH on a default-DROP host, naming both deciders", () => {
    const { rs, line } = withRule(fixture("allow-guide"), OURS);
    const why = lockoutOf(rs, without(rs, line), origin, "removing the rule");
    expect(why).toMatch(
      /^removing the rule would lock the provider out of the host: new SSH connections from 198\.18\.5\.1 to port 22/,
    );
    expect(why).toContain("accepted now (by -A INPUT -p tcp -m tcp --dport 22 -m comment");
    expect(why).toContain("refused (by the INPUT policy DROP)");
  });

  it("allows it when another rule still accepts the provider's SSH: a broader one, or one for its address", () => {
    for (const other of ["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -s 198.18.5.1/32 -j ACCEPT"]) {
      const first = withRule(fixture("allow-guide"), other).rs;
      const { rs, line } = withRule(first, OURS);
      expect(lockoutOf(rs, without(rs, line), origin, "removing")).toBeUndefined();
    }
  });

  it("allows it when the rule never carried the provider's SSH (another source, another port, policy ACCEPT)", () => {
    const cases = [
      withRule(fixture("allow-guide"), OURS.replace("-p tcp", "-s 198.18.9.9/32 -p tcp")),
      withRule(fixture("allow-guide"), OURS.replace("--dport 22", "--dport 2222")),
      withRule(parse(text("allow-guide").replace(":INPUT DROP", ":INPUT ACCEPT")), OURS),
    ];
    for (const { rs, line } of cases) expect(lockoutOf(rs, without(rs, line), origin, "removing")).toBeUndefined();
  });

  it("a source-specific ban of another address above does not count; one of ours does", () => {
    const first = withRule(fixture("allow-guide"), "-A INPUT -s 198.18.9.9/32 -j DROP").rs;
    const { rs, line } = withRule(first, OURS);
    expect(sshFate(rs, origin).accepted).toBe(true);
    expect(lockoutOf(rs, without(rs, line), origin, "removing")).toMatch(/lock the provider out/);
    expect(sshFate(rs, { ...origin, clientAddress: "198.18.9.9" })).toEqual({
      accepted: false,
      by: "-A INPUT -s 198.18.9.9/32 -j DROP",
    });
  });
});

describe("bootLockoutOf: the boot file a save wrote, read back, against the live ruleset", () => {
  const FILE = "/etc/iptables/rules.v4";
  /** A transcript without the lines that contain `part`, as a save that left those rules out writes it. */
  const leaving = (name: string, part: string) =>
    text(name)
      .split("\n")
      .filter((l) => !l.includes(part))
      .join("\n");

  it("a file that lets the provider in, as the live ruleset does, passes", () => {
    expect(bootLockoutOf(fixture("ends-in-drop"), text("ends-in-drop"), origin, FILE)).toBeUndefined();
    // Live by a tagged rule, in the file as the hand-made rule it was (an adoption with persist: false).
    const live = withRule(fixture("allow-guide"), OURS).rs;
    const file = insertRuleLine(text("allow-guide"), "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT");
    expect(bootLockoutOf(live, file, origin, FILE)).toBeUndefined();
  });

  it("a file that would refuse new SSH connections the live ruleset accepts says by which rule, and what to do", () => {
    const message = bootLockoutOf(fixture("ends-in-drop"), leaving("ends-in-drop", "--dport 22"), origin, FILE);
    expect(message).toBe(
      `${FILE} as this save wrote it (the ruleset the host loads at boot) would lock the provider out of the host: ` +
        "new SSH connections from 198.18.5.1 to port 22 are accepted now (by -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT), " +
        "and would then be refused (by -A INPUT -j DROP), so no later pulumi refresh, up or destroy could reach it " +
        "after its next reboot",
    );
    // Through a user chain: the admin network's SSH-ADMIN accepts 198.18.0.5; a file without the jump does not.
    const admin = { clientAddress: "198.18.0.5", serverPort: 22 };
    expect(bootLockoutOf(fixture("host-firewall"), text("host-firewall"), admin, FILE)).toBeUndefined();
    expect(bootLockoutOf(fixture("host-firewall"), leaving("host-firewall", "-j SSH-ADMIN"), admin, FILE)).toMatch(
      /accepted now \(by -A SSH-ADMIN -s 198\.18\.0\.5\/32 -j ACCEPT\), and would then be refused/,
    );
  });

  it("is not this save's doing where the live ruleset refuses them too", () => {
    expect(bootLockoutOf(fixture("allow-guide"), text("allow-guide"), origin, FILE)).toBeUndefined();
    // From an address SSH-ADMIN rejects: refused live and in the file.
    const other = { clientAddress: "198.18.7.1", serverPort: 22 };
    expect(
      bootLockoutOf(fixture("host-firewall"), leaving("host-firewall", "-j SSH-ADMIN"), other, FILE),
    ).toBeUndefined();
  });

  it("a file it cannot read is a refusal, with why", () => {
    const broken = insertRuleLine(text("ends-in-drop"), '-A INPUT -m comment --comment "unterminated -j ACCEPT');
    expect(bootLockoutOf(fixture("ends-in-drop"), broken, origin, FILE)).toMatch(
      /^\/etc\/iptables\/rules\.v4 as this save wrote it cannot be read to check it: .*unterminated quote/,
    );
  });
});

/** The transcript with `rule` as the first rule of the filter table. */
function insertRuleLine(save: string, rule: string): string {
  return save.replace(/^(:OUTPUT .*)$/m, `$1\n${rule}`);
}

describe("the SSH packets judged as placement judges them: interface, address, nat PREROUTING, the other backend", () => {
  const rs = (rules: string[], policy = "DROP") =>
    parse(["*filter", `:INPUT ${policy} [0:0]`, ...rules, "COMMIT", ""].join("\n"));
  const nat = (rules: string[]) =>
    parseRuleset(["*nat", ":PREROUTING ACCEPT [0:0]", ...rules, "COMMIT", ""].join("\n"));
  const ssh22 = rs(["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"]);
  const viaEth1 = { ...origin, serverAddress: "198.18.1.2", inInterface: "eth1" };

  it("a DNAT of port 22 on the interface the connection arrives on sends it away: not accepted, by the DNAT", () => {
    const host = { nat: nat(["-A PREROUTING -i eth1 -p tcp -m tcp --dport 22 -j DNAT --to-destination 198.19.9.9"]) };
    expect(sshFate(ssh22, viaEth1, host)).toEqual({
      accepted: false,
      by: "-A PREROUTING -i eth1 -p tcp -m tcp --dport 22 -j DNAT --to-destination 198.19.9.9",
    });
    expect(sshFate(ssh22, { ...viaEth1, inInterface: "eth0" }, host).accepted).toBe(true);
  });

  it("a rule naming the address the connection reached decides it; another address's does not", () => {
    const onlyOther = rs(["-A INPUT -d 198.18.0.2/32 -p tcp -m tcp --dport 22 -j ACCEPT"]);
    expect(sshFate(onlyOther, viaEth1, { addresses: ["198.18.0.2", "198.18.1.2"] }).accepted).toBe(false);
    const own = rs(["-A INPUT -d 198.18.1.2/32 -p tcp -m tcp --dport 22 -j ACCEPT"]);
    expect(sshFate(own, viaEth1, { addresses: ["198.18.0.2", "198.18.1.2"] }).accepted).toBe(true);
  });

  it("the other backend's DROP of 22 refuses them, and the reason names its tables", () => {
    const other = { backend: "legacy" as const, ruleset: rs(["-A INPUT -p tcp -m tcp --dport 22 -j DROP"], "ACCEPT") };
    expect(sshFate(ssh22, viaEth1, { other })).toEqual({
      accepted: false,
      by: "the legacy tables: -A INPUT -p tcp -m tcp --dport 22 -j DROP",
    });
    // Removing iptables' own ACCEPT then cuts nothing more: they were refused already.
    expect(lockoutOf(ssh22, without(ssh22, 1), viaEth1, "removing", { other })).toBeUndefined();
  });
});
