// Issue 26, "How it must be shown": `pulumi up` puts back a rule that drifted out of effect, under the
// real CLI, probed from the client namespace. One stack on one host, five ACCEPTs (IPv4), each meeting
// another kind of drift after up: a foreign DROP inserted above it; the rule moved by hand below a DROP;
// a fail2ban-style chain (f2b-x, jumped to from INPUT) that rejects its port; an nft table that drops its
// port (no line can make it effective); and heal: false. Refresh says effective: false; preview proposes
// an update for exactly the healable ones and says why on each resource; up moves them (one tagged rule
// each, counters kept, the foreign rules untouched) and says why the others stay, the same on every run,
// and a second up changes nothing. Then a ufw host after `ufw deny` of the port and a `ufw reload`.
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/e2e/heal.test.ts
import { describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import { ufwRoot, ufwScript } from "../lab/ufw";
import { all, EMPTY, ok, stateOf, useLab } from "./harness";
import { programProject, type ProgramRule } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

const allow = (name: string, port: number, extra: Record<string, unknown> = {}): ProgramRule => ({
  name,
  args: { port, action: "ACCEPT", ipVersion: "ipv4", ...extra },
});

const RULES = [
  allow("foreign", 8081),
  allow("moved", 8082),
  allow("f2b", 8085),
  allow("nft", 8083),
  allow("optout", 8084, { heal: false }),
];

/** A listed rule's words as iptables takes them (its comment unquoted). */
const words = (rule: string) => (rule.match(/"[^"]*"|\S+/g) ?? []).slice(2).map((w) => w.replace(/^"(.*)"$/, "$1"));

/** A policy-DROP INPUT whose only accepts are loopback and established connections: every ACCEPT counts. */
const GUARDED =
  "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
  "-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n" +
  "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";

const must = async (h: LabHost, args: string[]) => {
  const r = await h.iptables(4, args);
  if (r.code !== 0) throw new Error(`iptables ${args.join(" ")}: ${r.stderr}`);
};

/** The lines of INPUT that carry `tag`, and the whole chain, for messages. */
const input = async (h: LabHost) => (await h.save(4)).split("\n").filter((l) => l.startsWith("-A INPUT "));

describe("up puts back rules that drifted out of effect", () => {
  it("heals the healable, reports the rest the same way each run, touches nothing foreign", async () => {
    const h = await lab.addHost({ rules: { v4: GUARDED, v6: EMPTY }, listen: { tcp: [8081, 8082, 8083, 8084, 8085] } });
    const p = await programProject("heal", h, RULES);
    await ok(p.up());
    for (const port of [8081, 8082, 8083, 8084, 8085])
      expect(await lab.probe(h, port), `${port} after up`).toBe("open");

    // Other tools write: a DROP above "foreign"; "moved" taken out and appended below a DROP of its port;
    // fail2ban-style f2b-x rejecting 8085, jumped to from the top; an nft table dropping 8083; a DROP above "optout".
    const moved = await stateOf(p, "moved");
    await must(h, ["-I", "INPUT", "1", "-p", "tcp", "--dport", "8081", "-j", "DROP"]);
    await must(h, ["-A", "INPUT", "-p", "tcp", "--dport", "8082", "-j", "DROP"]);
    await must(h, ["-D", "INPUT", ...words(moved.rules.ipv4)]);
    await must(h, ["-A", "INPUT", ...words(moved.rules.ipv4)]);
    await must(h, ["-N", "f2b-x"]);
    await must(h, ["-A", "f2b-x", "-p", "tcp", "--dport", "8085", "-j", "REJECT"]);
    await must(h, ["-A", "f2b-x", "-j", "RETURN"]);
    await must(h, ["-I", "INPUT", "1", "-p", "tcp", "-j", "f2b-x"]);
    await must(h, ["-I", "INPUT", "1", "-p", "tcp", "--dport", "8084", "-j", "DROP"]);
    const nft = await h.exec([
      "nft",
      "add table inet x; add chain inet x c { type filter hook input priority 10; }; add rule inet x c tcp dport 8083 drop",
    ]);
    expect(nft.code, nft.stderr).toBe(0);
    const foreign = (await input(h)).filter((l) => !l.includes("pulumi-iptables:"));
    expect(await lab.probe(h, 8081)).toBe("timeout");
    expect(await lab.probe(h, 8082)).toBe("timeout");
    expect(await lab.probe(h, 8085)).toBe("refused");

    await ok(p.refresh());
    for (const name of ["foreign", "moved", "f2b", "nft", "optout"])
      expect((await stateOf(p, name)).effective, name).toBe(false);

    const preview = all(await ok(p.preview()));
    const who = (name: string, port: number) => `${name}: INPUT of ${h.v4} (ACCEPT tcp ${port})`;
    expect(preview).toContain(`${who("foreign", 8081)} moves: INPUT:`);
    expect(preview).toMatch(
      /foreign: [^\n]*moves: INPUT:\d+ \(-A INPUT -p tcp -m tcp --dport 8081 -j DROP\) drops tcp 8081 on eth0 above it \(ipv4\): up puts it at line \d+/,
    );
    expect(preview).toMatch(
      /moved: [^\n]*moves: INPUT:\d+ \(-A INPUT -p tcp -m tcp --dport 8082 -j DROP\) drops tcp 8082/,
    );
    expect(preview).toMatch(
      /f2b: [^\n]*moves: INPUT:\d+ -> f2b-x:1 \(-A f2b-x -p tcp -m tcp --dport 8085 -j REJECT[^)]*\) rejects tcp 8085/,
    );
    const nftReport = new RegExp(
      `${who("nft", 8083).replace(/[().]/g, "\\$&")} is not in effect: [^\\n]*no line of INPUT makes it effective[^\\n]*; not moved`,
    );
    expect(preview).toMatch(nftReport);
    expect(preview).toMatch(/optout: [^\n]*is not in effect: [^\n]*up puts it at line \d+; not moved: heal is false/);
    const updating = (name: string) =>
      new RegExp(
        `~ pulumi-nodejs:dynamic/pulumi-iptables:PortRule: \\(update\\)\\n\\s+\\[id=[^\\n]*\\n\\s+\\[urn=[^\\n]*::${name}\\]`,
      );
    for (const name of ["foreign", "moved", "f2b"]) expect(preview).toMatch(updating(name));
    for (const name of ["nft", "optout"]) expect(preview).not.toMatch(updating(name));

    const counted = (await stateOf(p, "foreign")).packets;
    const up = all(await ok(p.up()));
    expect(up).toMatch(/INPUT on [^\n]*\(ipv4\): moved from line \d+ to line \d+, where it decides its packets again/);
    expect(await lab.probe(h, 8081)).toBe("open");
    expect(await lab.probe(h, 8082)).toBe("open");
    expect(await lab.probe(h, 8085)).toBe("open");
    expect(await lab.probe(h, 8083)).toBe("timeout");
    expect(await lab.probe(h, 8084)).toBe("timeout");
    const after = await input(h);
    for (const name of ["foreign", "moved", "f2b", "nft", "optout"]) {
      const s = await stateOf(p, name);
      expect(
        after.filter((l) => l.includes(s.tag)),
        name,
      ).toHaveLength(1);
      expect(s.effective, name).toBe(["foreign", "moved", "f2b"].includes(name));
      // The moved ones' state says where they are now (the others' lines are the last refresh's).
      if (s.effective) expect(s.line.ipv4, name).toBe(after.findIndex((l) => l.includes(s.tag)) + 1);
    }
    expect((await stateOf(p, "foreign")).packets).toBeGreaterThanOrEqual(counted); // counters kept (-c)
    expect(after.filter((l) => !l.includes("pulumi-iptables:"))).toEqual(foreign); // foreign rules untouched, in order
    expect((await h.save(4)).split("\n").filter((l) => l.startsWith("-A f2b-x"))).toHaveLength(2);

    // A second up: nothing to move; the same reasons for the two that stay; nothing changes on the host.
    const ruleset = await h.save(4);
    const again = all(await ok(p.up(["--refresh"])));
    expect(again).toMatch(nftReport);
    expect(again).not.toMatch(/ moves: /);
    expect(again).not.toMatch(/\bupdated\b/);
    expect(stripCounters(await h.save(4))).toBe(stripCounters(ruleset));
  }, 240_000);

  it("on a ufw host, after ufw deny of the port and ufw enabled again", async () => {
    const found = ufwRoot();
    if ("missing" in found) throw new Error(`the ufw case needs ufw: ${found.missing}`);
    const h = await lab.addHost({ backend: "nf_tables", listen: { tcp: [8080] } });
    const enable = await h.exec(["unshare", "--mount", "sh", "-c", ufwScript(found.root, ["ufw allow 22/tcp"])]);
    expect(enable.code, enable.stderr).toBe(0);
    const p = await programProject("healufw", h, [allow("open8080", 8080)]);
    await ok(p.up());
    expect(await lab.probe(h, 8080)).toBe("open");
    // ufw's deny of the port, and ufw enabled again from its files (as a reload or a reboot does).
    const deny = ufwScript(found.root, ["ufw allow 22/tcp", "ufw deny 8080/tcp"]);
    const denied = await h.exec(["unshare", "--mount", "sh", "-c", deny]);
    expect(denied.code, denied.stderr).toBe(0);
    expect(await lab.probe(h, 8080)).toBe("timeout");
    await ok(p.refresh());
    const s = await stateOf(p, "open8080");
    expect(s.effective, JSON.stringify(s.shadowedBy)).toBe(false);
    expect(all(await ok(p.preview()))).toMatch(
      /open8080: [^\n]* moves: [^\n]*ufw-user-input:\d+ \(-A ufw-user-input -p tcp -m tcp --dport 8080 -j DROP\) drops tcp 8080/,
    );
    await ok(p.up());
    expect(await lab.probe(h, 8080)).toBe("open");
    expect((await input(h)).filter((l) => l.includes(s.tag))).toHaveLength(1);
    expect((await h.save(4)).split("\n")).toContain("-A ufw-user-input -p tcp -m tcp --dport 8080 -j DROP");
  }, 180_000);
});

const stripCounters = (save: string) =>
  save
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .map((l) => l.replace(/\[\d+:\d+\]/g, ""))
    .join("\n");
