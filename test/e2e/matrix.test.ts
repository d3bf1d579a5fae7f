// Issue 14, "How it must be shown": the userlands operators run, under the real `pulumi` CLI. For each
// host of the matrix (Debian 11, 12 and 13 userlands x nf_tables / legacy, and the busybox + dropbear
// embedded host): the allow guide and the block guide with probes from the workstation (an opened
// port connects, a dropped one times out, REJECT refuses), refresh with the counters the probes
// raised, persist + a simulated reboot + refresh with the host's layout (Debian, RHEL, Alpine), and
// destroy restoring the ruleset byte for byte. Hosts run two at a time; the table of who passed what
// is printed at the end. Run inside the lab, after `npm run build` and `bash scripts/rootfs.sh ...`:
//   bash test/lab/in-lab.sh npx vitest run test/e2e/matrix.test.ts
import { afterAll, describe, expect, it } from "vitest";
import type { Backend, Family, HostOptions, Lab, LabHost, Userland } from "../lab/lab";
import { ALLOW_GUIDE, atMost, EMPTY, FAMILIES, ok, rulesets, stateOf, useLab } from "./harness";
import { programProject, setRules } from "./program";

const fam = (f: Family) => (f === 4 ? "ipv4" : "ipv6");

type Layout = NonNullable<HostOptions["persistence"]>;
interface MatrixHost {
  id: string;
  /** undefined: this machine's own Debian 12 binaries (the default lab host). */
  userland?: Userland;
  backend: Backend;
  persistence: Layout;
  iptables: string;
}

// Every layout on more than one userland: Debian's netfilter-persistent on each nf_tables host, the
// RHEL and Alpine files on the legacy ones, and Alpine's (a busybox system) on the embedded host.
const MATRIX: MatrixHost[] = [
  { id: "bullseye/nft", userland: "bullseye", backend: "nf_tables", persistence: "debian", iptables: "1.8.7" },
  { id: "bullseye/legacy", userland: "bullseye", backend: "legacy", persistence: "rhel", iptables: "1.8.7" },
  { id: "bookworm/nft", backend: "nf_tables", persistence: "debian", iptables: "1.8.9" },
  { id: "bookworm/legacy", backend: "legacy", persistence: "alpine", iptables: "1.8.9" },
  { id: "trixie/nft", userland: "trixie", backend: "nf_tables", persistence: "debian", iptables: "1.8.11" },
  { id: "trixie/legacy", userland: "trixie", backend: "legacy", persistence: "rhel", iptables: "1.8.11" },
  { id: "embedded/nft", userland: "embedded", backend: "nf_tables", persistence: "alpine", iptables: "1.8.9" },
];

const LAYOUT: Record<Layout, { mechanism: string; files: [string, string] }> = {
  debian: { mechanism: "netfilter-persistent", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
  rhel: { mechanism: "iptables-services", files: ["/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables"] },
  alpine: { mechanism: "iptables-save", files: ["/etc/iptables/rules-save", "/etc/iptables/rules6-save"] },
  plain: { mechanism: "iptables-save", files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"] },
};

const STEPS = [
  "allow guide",
  "refresh counters",
  "destroy (allow)",
  "block guide",
  "persist+reboot",
  "REJECT",
  "destroy (block)",
];
const results = new Map<string, Map<string, "pass" | "FAIL">>();

/** Runs one step of a host's flow and records whether it passed. */
async function step(host: string, name: string, fn: () => Promise<void>): Promise<void> {
  const row = results.get(host) ?? results.set(host, new Map()).get(host)!;
  try {
    await fn();
    row.set(name, "pass");
  } catch (err) {
    row.set(name, "FAIL");
    throw err;
  }
}

/** At most two hosts at a time: the machine has 2 cores, and each step runs the CLI and a provider. */
const slot = atMost(2);

let lab: Lab;
useLab((l) => {
  lab = l;
});
afterAll(() => {
  const width = Math.max(...MATRIX.map((h) => h.id.length));
  const lines = [
    `matrix (issue 14): ${STEPS.join(" | ")}`,
    ...MATRIX.map(
      (h) => `${h.id.padEnd(width)}  ${STEPS.map((s) => results.get(h.id)?.get(s) ?? "not run").join(" | ")}`,
    ),
  ];
  console.log(lines.join("\n"));
});

/** A file as the host itself sees it ("" when absent). */
const fileOn = async (h: LabHost, path: string) => (await h.exec(["cat", path])).stdout;

describe.concurrent("the userlands operators run", () => {
  it.each(MATRIX)(
    "$id: guides, refresh, persist + reboot, destroy under the real CLI",
    async (m) =>
      slot(async () => {
        const h = await lab.addHost({
          userland: m.userland,
          backend: m.backend,
          persistence: m.persistence,
          rules: { v4: ALLOW_GUIDE, v6: ALLOW_GUIDE },
          listen: { tcp: [2222, 8080, 8081] },
          ssh: "lo",
        });
        const name = `matrix-${m.id.replace("/", "-")}`;
        const p = await programProject(name, h, []);
        const probe = (port: number, f: Family) => lab.probe(h, port, { family: f, timeoutSec: 1 });

        let before = await rulesets(h);
        await step(m.id, "allow guide", async () => {
          for (const f of FAMILIES) expect(await probe(2222, f), `v${f} before up`).toBe("timeout");
          await setRules(p, name, [{ name: "allow", args: { port: 2222, action: "ACCEPT", ipVersion: "both" } }]);
          await ok(p.up());
          const out = (await p.outputs()).rules.allow;
          expect(out.insertedAt).toEqual({ ipv4: 3, ipv6: 3 });
          expect(out.backend).toBe(m.backend);
          expect(out.hostKeyFingerprint).toBe(h.hostKeyFingerprint);
          // Without ss (the embedded host) nobody can tell: unknown, not false, and not an error.
          expect(out.listening).toBe(m.userland === "embedded" ? undefined : true);
          for (const f of FAMILIES) expect(await probe(2222, f), `v${f} after up`).toBe("open");
        });
        await step(m.id, "refresh counters", async () => {
          await ok(p.refresh());
          const s = await stateOf(p, "allow");
          expect(s.iptablesVersion).toContain(m.iptables);
          for (const f of FAMILIES) expect(s.counters[fam(f)].packets, `v${f} packets`).toBeGreaterThan(0);
          expect(s.line).toEqual({ ipv4: 3, ipv6: 3 });
          expect(s.effective).toBe(true);
        });
        await step(m.id, "destroy (allow)", async () => {
          await ok(p.destroy());
          expect(await rulesets(h)).toEqual(before);
          for (const f of FAMILIES) expect(await probe(2222, f), `v${f} after destroy`).toBe("timeout");
        });

        // The block guide: an empty chain; the rule is persisted with the host's layout.
        for (const f of FAMILIES) await h.restore(f, EMPTY);
        before = await rulesets(h);
        const layout = LAYOUT[m.persistence];
        const block = { port: 8080, action: "DROP", ipVersion: "both", persist: true };
        let tag = "";
        await step(m.id, "block guide", async () => {
          await setRules(p, name, [{ name: "block", args: block }]);
          await ok(p.up());
          const out = (await p.outputs()).rules.block;
          tag = out.tag;
          expect(out.insertedAt).toEqual({ ipv4: 1, ipv6: 1 });
          for (const f of FAMILIES) {
            expect(await probe(8080, f), `v${f} 8080 with DROP`).toBe("timeout");
            expect(await probe(8081, f), `v${f} 8081 with DROP`).toBe("open");
          }
          expect(out.persisted).toEqual({ mechanism: layout.mechanism, files: layout.files });
          for (const f of FAMILIES) {
            const saved = await fileOn(h, layout.files[f === 4 ? 0 : 1]);
            expect(saved.split("\n"), `${layout.files[f === 4 ? 0 : 1]}`).toContain(out.rules[fam(f)]);
          }
        });
        await step(m.id, "persist+reboot", async () => {
          await h.reboot();
          for (const f of FAMILIES) {
            expect((await h.iptables(f, ["-S", "INPUT"])).stdout).toContain(tag);
            expect(await probe(8080, f), `v${f} 8080 after reboot`).toBe("timeout");
          }
          await ok(p.refresh());
          const s = await stateOf(p, "block");
          expect(s.line).toEqual({ ipv4: 1, ipv6: 1 });
          for (const f of FAMILIES) expect(s.counters[fam(f)].packets, `v${f} packets`).toBeGreaterThan(0);
        });
        await step(m.id, "REJECT", async () => {
          await setRules(p, name, [{ name: "block", args: { ...block, action: "REJECT", rejectWith: "tcp-reset" } }]);
          await ok(p.up());
          const out = (await p.outputs()).rules.block;
          expect(out.tag).not.toBe(tag);
          for (const f of FAMILIES) {
            expect(await probe(8080, f), `v${f} 8080 with REJECT`).toBe("refused");
            expect(await probe(8081, f)).toBe("open");
            const saved = await fileOn(h, layout.files[f === 4 ? 0 : 1]);
            expect(saved).toContain(out.tag);
            expect(saved).not.toContain(tag);
          }
          tag = out.tag;
        });
        await step(m.id, "destroy (block)", async () => {
          await ok(p.destroy());
          expect(await rulesets(h)).toEqual(before);
          for (const f of FAMILIES) {
            expect(await probe(8080, f)).toBe("open");
            expect(await fileOn(h, layout.files[f === 4 ? 0 : 1])).not.toContain(tag);
          }
        });
      }),
    900_000,
  );
});
