// Issue 20, item 5: sshd runs the command a client sends through the user's login shell, and fish reads
// `\\` and `\'` inside single quotes as escapes, so a script quoted for sh into that command line did not
// reach sh as written (refresh failed for a fish user: "the host gave no answer"). Under the real CLI, on
// one lab host whose users log in with bash, dash, zsh and fish (with passwordless sudo for sh, as the
// README asks of a non-root user): up, refresh and destroy work for each, and the rule is on the host,
// then off it.
import { describe, expect, it } from "vitest";
import type { Family, Lab, LabHost } from "../lab/lab";
import { atMost, EMPTY, FAMILIES, ok, stateOf, useLab } from "./harness";
import { programProjectVia } from "./program";

const SHELLS = ["/bin/bash", "/usr/bin/dash", "/usr/bin/zsh", "/usr/bin/fish"];

let lab: Lab;
let h: LabHost;
useLab(async (l) => {
  lab = l;
  h = await l.addHost({ rules: { v4: EMPTY, v6: EMPTY }, loginShells: SHELLS });
});

/** Two stacks at a time: the machine has 2 cores, and each step runs the CLI and a provider. */
const slot = atMost(2);

const fam = (f: Family) => (f === 4 ? "ipv4" : "ipv6");

describe.concurrent("issue 20.5: login shells", () => {
  it.each(SHELLS.map((shell, i) => ({ shell, port: 8081 + i })))(
    "a user whose login shell is $shell: up, refresh and destroy",
    async ({ shell, port }) =>
      slot(async () => {
        const name = `shell-${shell.split("/").pop()}`;
        const p = await programProjectVia(name, { ...h.connection({ loginShell: shell }), sudo: true }, [
          { name: "r", args: { port, action: "DROP", ipVersion: "both" } },
        ]);
        const chain = async (f: Family) => (await h.iptables(f, ["-S", "INPUT"])).stdout.split("\n");

        await ok(p.up());
        const { rules } = (await p.outputs()).rules.r;
        for (const f of FAMILIES) expect(await chain(f), `v${f} after up`).toContain(rules[fam(f)]);

        // Refresh reads the host: the probes' packets show in its counters.
        for (const f of FAMILIES) expect(await lab.probe(h, port, { family: f, timeoutSec: 1 })).toBe("timeout");
        await ok(p.refresh());
        const s = await stateOf(p, "r");
        expect(s, "the rule is still in state").toBeDefined();
        for (const f of FAMILIES) expect(s.counters[fam(f)].packets, `v${f} packets`).toBeGreaterThan(0);

        await ok(p.destroy());
        for (const f of FAMILIES) expect(await chain(f), `v${f} after destroy`).not.toContain(rules[fam(f)]);
        expect(await p.resources()).toHaveLength(0);
      }),
    600_000,
  );
});
