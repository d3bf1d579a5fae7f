// persist: true under the real pulumi CLI on lab hosts: saved by the host's own mechanism, back after
// a reboot, kept out of the files when turned off, removed by destroy; refused where ufw or firewalld
// owns the policy; a failed save leaves neither a runtime rule nor a resource in state.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import { ok, stateOf, useLab } from "./harness";
import { programProject as project, setRules } from "./program";

const CHAIN = (extra = "") => `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
${extra}-A INPUT -p tcp -m multiport --dports 8000:9000 -j REJECT --reject-with tcp-reset
COMMIT
`;

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** A host file as the host sees it (the upper layer of its /etc overlay), or "" if absent. */
const hostFile = (h: LabHost, path: string) => {
  const f = join(h.dir, "etc", path.replace(/^\/etc\//, ""));
  return existsSync(f) ? readFileSync(f, "utf8") : "";
};

describe.each([
  ["debian", "netfilter-persistent", ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"]],
  ["rhel", "iptables-services", ["/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables"]],
  ["plain", "iptables-save", ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"]],
] as const)("persist on a %s host", (layout, mechanism, files) => {
  it(`saves with ${mechanism}, survives a reboot, leaves the files when turned off and on destroy`, async () => {
    const h = await lab.addHost({ persistence: layout, rules: { v4: CHAIN(), v6: CHAIN() }, listen: { tcp: [8080] } });
    const name = `persist-${layout}`;
    const rule = { name: "app", args: { port: 8080, action: "ACCEPT", ipVersion: "both", persist: true } };
    const p = await project(name, h, [rule]);
    await ok(p.up());
    const out = (await p.outputs()).rules.app;
    expect(out.persisted).toEqual({ mechanism, files: [...files] });
    expect(out.insertedAt).toEqual({ ipv4: 3, ipv6: 3 });
    for (const f of files) expect(hostFile(h, f)).toContain(out.tag);
    expect(await lab.probe(h, 8080)).toBe("open");

    await h.reboot();
    const after = await h.iptables(4, ["-S", "INPUT"]);
    expect(after.stdout.split("\n")[3]).toBe(out.rules.ipv4);
    expect((await h.iptables(6, ["-S", "INPUT"])).stdout.split("\n")[3]).toBe(out.rules.ipv6);
    expect(await lab.probe(h, 8080)).toBe("open");
    expect(await lab.probe(h, 8080, { family: 6 })).toBe("open");
    await ok(p.refresh());
    const res = { outputs: await stateOf(p, "app") };
    expect(res.outputs.line).toEqual({ ipv4: 3, ipv6: 3 });
    expect(res.outputs.effective).toBe(true);

    // persist: false after true: the rule stays live, the files no longer hold it.
    await setRules(p, name, [{ ...rule, args: { ...rule.args, persist: false } }]);
    const preview = await p.preview();
    expect(preview.stdout).toMatch(/~ .*update|\(update\)/);
    await ok(p.up());
    for (const f of files) expect(hostFile(h, f)).not.toContain(out.tag);
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout).toContain(out.tag);
    // and back on, then destroy removes it from the files too.
    await setRules(p, name, [rule]);
    await ok(p.up());
    for (const f of files) expect(hostFile(h, f)).toContain(out.tag);
    await ok(p.destroy());
    for (const f of files) expect(hostFile(h, f)).not.toContain(out.tag);
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout).not.toContain(out.tag);
  });
});

describe("persist where it cannot or must not save", () => {
  it.each([
    [
      "ufw",
      {
        v4: "*filter\n:INPUT ACCEPT [0:0]\n:ufw-before-input - [0:0]\n:ufw-user-input - [0:0]\n-A INPUT -j ufw-before-input\n-A ufw-before-input -j ufw-user-input\nCOMMIT\n",
      },
    ],
    ["firewalld", undefined],
  ] as const)("refuses persist: true on a host whose policy %s owns, and writes nothing", async (owner, rules) => {
    const h = await lab.addHost({ rules: rules ? { ...rules } : undefined });
    // firewalld (nftables backend) keeps its rules in an nft table of its own.
    if (owner === "firewalld") await h.sh("nft add table inet firewalld");
    const before = await h.ruleset(4);
    const p = await project(`owner-${owner}`, h, [
      { name: "app", args: { port: 8080, action: "DROP", ipVersion: "ipv4", persist: true } },
    ]);
    const up = await p.up();
    expect(up.code).not.toBe(0);
    expect(up.stdout + up.stderr).toMatch(new RegExp(`${owner} owns the firewall policy`));
    expect(await h.ruleset(4)).toBe(before);
    expect(hostFile(h, "/etc/iptables/rules.v4")).toBe("");
    expect(await p.resources()).toHaveLength(0);
    // Runtime rules without persist still work there.
    await setRules(p, `owner-${owner}`, [{ name: "app", args: { port: 8080, action: "DROP", ipVersion: "ipv4" } }]);
    await ok(p.up());
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout).toMatch(/--dport 8080 .* -j DROP/);
    await ok(p.destroy());
  });

  it("rolls the rule back when the save fails (read-only rules directory) and names the file", async () => {
    const h = await lab.addHost({ rules: { v4: CHAIN() } });
    await h.sh("mount --bind -o ro /etc/iptables /etc/iptables");
    const before = await h.ruleset(4);
    const p = await project("persist-ro", h, [
      { name: "app", args: { port: 8080, action: "DROP", ipVersion: "ipv4", persist: true } },
    ]);
    const up = await p.up();
    expect(up.code).not.toBe(0);
    expect(up.stdout + up.stderr).toMatch(/rules\.v4/);
    expect(up.stdout + up.stderr).toMatch(/Read-only file system/);
    expect(up.stdout + up.stderr).toMatch(/the change was undone \(a listing shows it\)/);
    expect(await h.ruleset(4)).toBe(before);
    expect(await p.resources()).toHaveLength(0);
  });
});
