// Issue 20.4 under the real pulumi CLI: the host a PortRule is on is rebuilt after `pulumi up` (a new
// host key, the image's empty tables, fresh rules files). The operator sets hostKey as the error says;
// the next `pulumi up` must put the rule back on the new host (or say it is missing), never record it
// as there while the host's listing does not show it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { all, EMPTY, ok, stateOf, useLab } from "./harness";
import { programProject } from "./program";

let lab: Lab;
let host: LabHost;
let chained: LabHost;
/** A filter table whose INPUT jumps to a user chain, PIT-APP: the rebuilt image lacks it. */
const WITH_CHAIN = EMPTY.replace("COMMIT", ":PIT-APP - [0:0]\n-A INPUT -j PIT-APP\nCOMMIT");
useLab(async (l) => {
  lab = l;
  [host, chained] = await Promise.all([
    lab.addHost({ rules: { v4: EMPTY, v6: EMPTY } }),
    lab.addHost({ rules: { v4: WITH_CHAIN } }),
  ]);
});

/** Sets the host's key, as a rebuild left it, as the connection's hostKey (what the error tells the operator). */
const acceptNewKey = (p: PulumiProject, name: string, h: LabHost) =>
  p.must([
    "config",
    "set",
    "--secret",
    `${name}:connection`,
    "--",
    JSON.stringify({ ...h.connection(), hostKey: h.hostKeyFingerprint }),
  ]);

/** The host's INPUT chain as `iptables -S` / `ip6tables -S` lists it. */
const listing = async (h: LabHost, family: 4 | 6) => (await h.iptables(family, ["-S", "INPUT"])).stdout;

describe("issue 20.4: a rebuilt host", () => {
  it("after hostKey is set as the error says, up puts the rule back on the new host; refresh, preview and destroy agree", async () => {
    const name = "rebuilt";
    const rule = { port: 2270, action: "DROP", ipVersion: "both", persist: true };
    const p = await programProject(name, host, [{ name: "app", args: rule }]);
    await ok(p.up());
    const before = await stateOf(p, "app");
    expect(await listing(host, 4)).toContain(before.rules.ipv4);
    const oldKey = host.hostKeyFingerprint;

    await host.rebuild();
    expect(host.hostKeyFingerprint).not.toBe(oldKey);
    expect(await listing(host, 4)).not.toContain("--dport 2270");
    expect(await lab.probe(host, 2270, { timeoutSec: 1 })).toBe("refused");

    // The host's new key is refused in the handshake, and the error says what to do.
    const refused = await p.up(["--refresh"]);
    expect(refused.code, all(refused)).not.toBe(0);
    expect(all(refused)).toMatch(/host key verification failed/);
    expect(all(refused)).toContain(host.hostKeyFingerprint);
    expect(all(refused)).toMatch(/set\s+hostKey to it/);

    // Done as the error says: the new key (checked on the host itself) as hostKey, then pulumi up.
    await acceptNewKey(p, name, host);
    const up = await ok(p.up());
    expect(all(up)).toMatch(/1 updated/);
    const after = await stateOf(p, "app");
    expect(after.missing).toEqual([]);
    expect(after.hostKeyFingerprint).toBe(host.hostKeyFingerprint);
    expect(after.tag).toBe(before.tag);
    // What state says is what the new host lists, in both families, and in its rules files.
    for (const [f, n] of [
      [4, "ipv4"],
      [6, "ipv6"],
    ] as const) {
      expect(await listing(host, f)).toContain(after.rules[n]);
      expect(after.insertedAt[n]).toBe(1);
      expect(after.line[n]).toBe(1);
      expect(after.placement[n]).toEqual(expect.any(String));
    }
    expect(after.persisted).toMatchObject({ mechanism: "netfilter-persistent" });
    expect(readFileSync(join(host.etcIptables, "rules.v4"), "utf8")).toContain(after.tag);
    expect(readFileSync(join(host.etcIptables, "rules.v6"), "utf8")).toContain(after.tag);

    // Nothing left for refresh or preview to change.
    await ok(p.refresh(["--expect-no-changes"]));
    await ok(p.preview(["--expect-no-changes"]));
    // The kernel agrees: the port's packets are dropped (before the rebuild's put-back: refused).
    expect(await lab.probe(host, 2270, { timeoutSec: 1 })).toBe("timeout");

    await ok(p.destroy());
    expect(await listing(host, 4)).not.toContain("--dport 2270");
    expect(await listing(host, 6)).not.toContain("--dport 2270");
    expect(readFileSync(join(host.etcIptables, "rules.v4"), "utf8")).not.toContain(after.tag);
  });

  it("where the rule cannot go back (its chain is not on the new host), up says so and state records it missing", async () => {
    const name = "rebuiltchain";
    const p = await programProject(name, chained, [
      { name: "app", args: { port: 2271, action: "DROP", ipVersion: "ipv4", chain: "PIT-APP" } },
    ]);
    await ok(p.up());
    const before = await stateOf(p, "app");
    expect((await chained.iptables(4, ["-S", "PIT-APP"])).stdout).toContain(before.rules.ipv4);

    await chained.rebuild({ v4: EMPTY });
    await acceptNewKey(p, name, chained);
    const up = await ok(p.up());
    expect(all(up)).toMatch(
      /the rule is not on \S+ \(ipv4: not in a listing after its host key changed\), and putting it back failed/,
    );
    expect(all(up)).toMatch(/PIT-APP/);
    const after = await stateOf(p, "app");
    expect(after.missing).toEqual(["ipv4"]);
    expect(after).toMatchObject({ effective: false, line: {}, hostKeyFingerprint: chained.hostKeyFingerprint });
    expect(await chained.ruleset(4)).not.toContain(before.tag);
    // The next up replaces it: preview says so.
    const preview = await ok(p.preview());
    expect(all(preview)).toMatch(/replace/);
    await ok(p.destroy());
  });
});
