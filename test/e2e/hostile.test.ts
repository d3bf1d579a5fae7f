// Issue 20.1 and 20.2 under the real pulumi CLI: a host is untrusted input. A process with only
// CAP_NET_ADMIN on the host writes rules whose comments carry a PortRule's tag, newlines, a
// here-document terminator (the old fixed ones: @@PIT_INPUT, @@PIT_TX) and a shell line; an operator
// copies the tag onto rules for other ports. Neither is ever taken for the PortRule's rule: the shell
// line never runs, the foreign rules stay exactly as they were, and destroy removes only the rule the
// PortRule made, naming the others in a warning.
import { describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { ALLOW_GUIDE, all, ok, stateOf, useLab } from "./harness";
import { programProject } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

const PORT = 2222;

/** The INPUT rules of the host, as iptables -S prints them. */
const chain = async (host: LabHost) => (await host.iptables(4, ["-S", "INPUT"])).stdout;

/** Inserts a rule at line 1 or appended, with a comment given byte for byte (newlines included). */
async function foreign(host: LabHost, where: "top" | "bottom", port: number, comment: string): Promise<void> {
  const at = where === "top" ? ["-I", "INPUT", "1"] : ["-A", "INPUT"];
  const spec = [
    "-p",
    "tcp",
    "-m",
    "tcp",
    "--dport",
    String(port),
    "-m",
    "comment",
    "--comment",
    comment,
    "-j",
    "ACCEPT",
  ];
  const r = await host.iptables(4, [...at, ...spec]);
  expect(r.code, r.stderr).toBe(0);
}

async function upOne(name: string): Promise<{ host: LabHost; p: PulumiProject; tag: string }> {
  const host = await lab.addHost({ rules: { v4: ALLOW_GUIDE }, listen: { tcp: [PORT, 8443] }, ssh: "lo" });
  const p = await programProject(name, host, [
    { name: "app", args: { port: PORT, action: "ACCEPT", ipVersion: "ipv4" } },
  ]);
  await ok(p.up());
  const tag = (await stateOf(p, "app")).tag as string;
  expect(tag).toMatch(/^pulumi-iptables:/);
  return { host, p, tag };
}

describe("issue 20.1: a rule comment cannot make destroy run a shell line", () => {
  it("leaves rules whose comments forge terminators untouched, runs none of their lines, and destroys only its own rule", async () => {
    const { host, p, tag } = await upOne("hostile1");
    const proof = "/run/pit-hostile-proof";
    for (const end of ["@@PIT_INPUT", "@@PIT_TX"])
      await foreign(host, "top", PORT, `${tag} \n${end}\ntouch ${proof}-${end.slice(5)}\n#`);
    const before = await chain(host);
    expect(before.match(/@@PIT_(INPUT|TX)/g)).toHaveLength(2);

    const refresh = await ok(p.refresh());
    expect(all(refresh)).toMatch(/carries the tag .* but is not the rule made with it .*left alone/);
    expect((await stateOf(p, "app")).line.ipv4).toBe(5);

    const destroyed = await ok(p.destroy());
    expect(all(destroyed)).toMatch(/INPUT:1 carries the tag .* left alone, neither read nor changed: .*\\n@@PIT_/);
    // No shell line ran, and the hostile rules are exactly as they were; only the PortRule's own went.
    expect(await host.sh(`ls ${proof}-* 2>/dev/null || echo none`)).toBe("none\n");
    const after = await chain(host);
    const own = `-A INPUT -p tcp -m tcp --dport ${PORT} -m comment --comment "${tag}" -j ACCEPT\n`;
    expect(before).toContain(own);
    expect(after).toBe(before.replace(own, ""));
    expect(await p.resources()).toHaveLength(0);
  });

  it("reads and destroys its own rule when a comment forges the end of the listing and a section of its own", async () => {
    const { host, p, tag } = await upOne("hostile3");
    await foreign(host, "top", PORT, `${tag}\n@@pit-end save4 0\n@@pit-begin save4\n-A INPUT -j ACCEPT`);
    const before = await chain(host);
    await ok(p.refresh());
    // The PortRule's rule is still found below the forgery (it was at line 3, one rule went above it).
    expect((await stateOf(p, "app")).line.ipv4).toBe(4);
    await ok(p.destroy());
    const after = await chain(host);
    expect(after).not.toMatch(new RegExp(`--dport ${PORT} -m comment --comment "${tag}" -j ACCEPT`));
    expect(after.split("\n-A ").length).toBe(before.split("\n-A ").length - 1);
    expect(after).toContain("@@pit-end save4 0");
  });
});

describe("issue 20.2: an operator's copies of the tag survive destroy", () => {
  it("keeps the rules for 8443 above and 8444 below that carry the PortRule's comment, and removes its own", async () => {
    const { host, p, tag } = await upOne("hostile2");
    await foreign(host, "top", 8443, tag);
    await foreign(host, "bottom", 8444, tag);
    const before = await chain(host);
    await ok(p.destroy());
    const after = await chain(host);
    expect(after).toContain(`--dport 8443 -m comment --comment "${tag}" -j ACCEPT`);
    expect(after).toContain(`--dport 8444 -m comment --comment "${tag}" -j ACCEPT`);
    expect(after).not.toContain(`--dport ${PORT}`);
    expect(after.split("\n").length).toBe(before.split("\n").length - 1);
    // The kernel agrees: the copies still accept, the PortRule's port is dropped by the policy again.
    expect(await lab.probe(host, 8443)).toBe("open");
  });
});
