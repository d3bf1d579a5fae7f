// The lockout guard's judgement on real iptables-save transcripts (test/fixtures): is a new SSH
// connection from the provider accepted with a rule and without it?
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { withDeleted, withInserted } from "../../../provider/host/ruleset-text";
import { lockoutOf, sshFate } from "../../../provider/lockout";
import type { SshOrigin } from "../../../provider/lockout";
import { chainOf, parseRuleset } from "../../../provider/rules";
import type { Ruleset } from "../../../provider/rules";

// The guard judges parsed listings (the agent's, parsed once per batch), edited as the agent edits them.
const parse = (save: string) => parseRuleset(save, { table: "filter" });
const text = (name: string) => readFileSync(join(__dirname, "../../fixtures/nf_tables/ipv4", name, "save.txt"), "utf8");
const fixture = (name: string) => parse(text(name));
const origin: SshOrigin = { clientAddress: "198.18.5.1", serverPort: 22 };
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
