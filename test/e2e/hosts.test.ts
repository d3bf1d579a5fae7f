// Issue 14's persistence defects and the backend switch, under the real `pulumi` CLI on hosts of
// other userlands (Debian 11's iptables 1.8.7 and netfilter-persistent, run from its root filesystem):
// - a persist: false rule removed by hand must not keep its tag (which an identical rule gets again)
//   out of the rules files once that rule is persisted;
// - each family's file must hold its family's rule (one file holding the tag is not enough);
// - a host switched between the nf_tables and legacy backends: refresh and destroy say where the
//   rule is and what to do, drop nothing from state, and up never adds a second copy.
import { describe, expect, it } from "vitest";
import type { Family, HostOptions, Lab, LabHost } from "../lab/lab";
import { all, EMPTY, FAMILIES, ok, useLab } from "./harness";
import { programProject, type ProgramRule, setRules as setRulesOf } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

async function setup(name: string, opts: HostOptions) {
  const h = await lab.addHost({ userland: "bullseye", rules: { v4: EMPTY, v6: EMPTY }, ...opts });
  const p = await programProject(name, h, []);
  return { h, p, setRules: (rules: ProgramRule[]) => setRulesOf(p, name, rules) };
}

const file = async (h: LabHost, path: string) => (await h.exec(["cat", path])).stdout;
/** Rules carrying `tag` in one backend's tables, read with that backend's own save tool. */
const tagged = async (h: LabHost, f: Family, backend: "nft" | "legacy", tag: string) =>
  (await h.sh(`${f === 4 ? "iptables" : "ip6tables"}-${backend}-save`)).split("\n").filter((l) => l.includes(tag));

describe("persistence on Debian 11 (netfilter-persistent)", () => {
  it("a persist: false rule removed by hand leaves no stale tag behind: the same rule persists later", async () => {
    const { h, p, setRules } = await setup("stale-tag", {});
    const args = { port: 8080, action: "DROP", ipVersion: "both" };
    await setRules([{ name: "app", args: { ...args, persist: false } }]);
    await ok(p.up());
    const { tag, rules } = (await p.outputs()).rules.app;
    for (const f of FAMILIES) {
      const del = await h.exec([
        "sh",
        "-c",
        `${f === 4 ? "iptables" : "ip6tables"} ${rules[f === 4 ? "ipv4" : "ipv6"].replace(/^-A /, "-D ")}`,
      ]);
      expect(del.code, del.stderr).toBe(0);
    }
    await ok(p.refresh());
    expect(await p.resources()).toHaveLength(0);

    // The same rule again, now persisted: the identity tag is the same one.
    await setRules([{ name: "app", args: { ...args, persist: true } }]);
    await ok(p.up());
    const out = (await p.outputs()).rules.app;
    expect(out.tag).toBe(tag);
    expect((await file(h, "/etc/iptables/rules.v4")).split("\n")).toContain(out.rules.ipv4);
    expect((await file(h, "/etc/iptables/rules.v6")).split("\n")).toContain(out.rules.ipv6);
    expect(await file(h, "/run/pulumi-iptables.transient")).not.toContain(tag);
    await ok(p.destroy());
  }, 600_000);

  it("an IPv6 rule whose file was not saved is not reported persisted: the change is undone", async () => {
    const { h, p, setRules } = await setup("v6-unsaved", {});
    // netfilter-persistent without its IPv6 plugin: rules.v6 (an old save) is left as it was.
    await h.sh("rm /usr/share/netfilter-persistent/plugins.d/25-ip6tables && ip6tables-save > /etc/iptables/rules.v6");
    const before = { 4: await h.ruleset(4), 6: await h.ruleset(6) };
    await setRules([{ name: "app", args: { port: 8080, action: "DROP", ipVersion: "both", persist: true } }]);
    const up = await p.up();
    expect(up.code, all(up)).not.toBe(0);
    expect(all(up)).toMatch(/\/etc\/iptables\/rules\.v6 does not hold the ip6tables rule/);
    expect(all(up)).toMatch(/the change was undone \(a listing shows it\)/);
    expect({ 4: await h.ruleset(4), 6: await h.ruleset(6) }).toEqual(before);
    expect(await p.resources()).toHaveLength(0);
  }, 600_000);
});

describe("a host switched between the nf_tables and legacy backends", () => {
  it("refresh and destroy explain where the rule is, state keeps it, up adds no second copy", async () => {
    const { h, p, setRules } = await setup("switch", { backend: "nf_tables" });
    const before = { 4: await h.ruleset(4), 6: await h.ruleset(6) };
    await setRules([{ name: "app", args: { port: 9090, action: "DROP", ipVersion: "both" } }]);
    await ok(p.up());
    const { tag } = (await p.outputs()).rules.app;

    await h.switchBackend("legacy");
    const refresh = await p.refresh();
    expect(refresh.code, all(refresh)).not.toBe(0);
    expect(all(refresh)).toMatch(/is not in the legacy tables that iptables on \S+ uses now/);
    expect(all(refresh)).toMatch(/but in its nf_tables tables \(iptables, ip6tables\)/);
    expect(all(refresh)).toMatch(/switched from nf_tables to legacy/);
    expect(all(refresh)).toMatch(/update-alternatives --set iptables \/usr\/sbin\/iptables-nft/);
    expect(await p.resources()).toHaveLength(1);
    await ok(p.up());
    const destroy = await p.destroy();
    expect(destroy.code, all(destroy)).not.toBe(0);
    expect(all(destroy)).toMatch(/switched from nf_tables to legacy/);
    expect(await p.resources()).toHaveLength(1);
    for (const f of FAMILIES) {
      expect(await tagged(h, f, "nft", tag)).toHaveLength(1);
      expect(await tagged(h, f, "legacy", tag)).toHaveLength(0);
    }

    await h.switchBackend("nf_tables");
    await ok(p.refresh());
    expect(await p.resources()).toHaveLength(1);
    await ok(p.destroy());
    expect({ 4: await h.ruleset(4), 6: await h.ruleset(6) }).toEqual(before);
  }, 600_000);
});
