// What the e2e test files share besides the program: the file's lab (useLab), the rulesets its hosts
// start from, and small helpers for CLI runs and state.
import { afterAll, beforeAll, expect } from "vitest";
import { Lab } from "../lab/lab";
import type { Family, LabHost, ProbeResult } from "../lab/lab";
import type { SecondLink } from "../lab/second-link";
import type { CliResult, PulumiProject } from "../pulumi";
import { removeProjects } from "./program";
import { fromStored } from "../../provider/state";

/** An empty filter table (the block guide's start; on nf_tables the table exists once something makes it). */
export const EMPTY = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
/** The allow guide's filter table: policy DROP, ESTABLISHED,RELATED and lo accepted. */
export const ALLOW_GUIDE =
  "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
  "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
export const FAMILIES: Family[] = [4, 6];

/** What a client on each interface of a two-interface host sees of `port` (eth0 through the lab, eth1
 * through its second link), in both families. */
export async function seenOnBoth(
  lab: Lab,
  h: LabHost,
  eth1: SecondLink,
  port: number,
): Promise<Record<string, ProbeResult>> {
  const out: Record<string, ProbeResult> = {};
  for (const f of FAMILIES) {
    out[`eth0 v${f}`] = await lab.probe(h, port, { family: f, timeoutSec: 2 });
    out[`eth1 v${f}`] = await eth1.probe(port, { family: f, timeoutSec: 2 });
  }
  return out;
}

/** What seenOnBoth should see where clients on eth0 see `eth0` and those on eth1 see `eth1`, in both families. */
export const onBoth = (eth0: ProbeResult, eth1: ProbeResult) => ({
  "eth0 v4": eth0,
  "eth1 v4": eth1,
  "eth0 v6": eth0,
  "eth1 v6": eth1,
});

/**
 * The test file's lab: made before its tests, then handed to `setup` (which keeps it, and may add the
 * hosts the file's tests share); after them, every project made by createProject or programProject
 * is removed and the lab destroyed. Call once, at the top of the file.
 */
export function useLab(setup: (lab: Lab) => void | Promise<void>, timeoutMs?: number): void {
  let lab: Lab | undefined;
  beforeAll(async () => {
    lab = await Lab.create();
    await setup(lab);
  }, timeoutMs);
  afterAll(async () => {
    removeProjects();
    await lab?.destroy();
  });
}

/** Runs the functions given to it at most `n` at a time (each test runs the CLI and a provider; 2 cores). */
export function atMost(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (running >= n) await new Promise<void>((r) => waiting.push(r));
    running++;
    try {
      return await fn();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

/** What a CLI run printed, stdout then stderr. */
export const all = (r: CliResult) => r.stdout + r.stderr;

/** The CLI run, expected to succeed (its output is the failure message). */
export async function ok(run: Promise<CliResult>): Promise<CliResult> {
  const r = await run;
  expect(r.code, all(r)).toBe(0);
  return r;
}

/** A resource's outputs in state (refresh updates state, not the stack outputs), each hidden key under its
 * own name (state records them under `__`: provider/state.ts). */
export async function stateOf(p: PulumiProject, name: string): Promise<any> {
  const outputs = (await p.resources()).find((x) => String(x.urn).endsWith(`::${name}`))?.outputs;
  return outputs && fromStored(outputs);
}

/** The PortRule's lines of a `preview --diff` (from the first PortRule step's header to the stack's
 * outputs or the summary), each tag written T1, T2, ... in the order they first appear (a tag's unique
 * part hashes the lab host's address). */
export function ruleLines(out: string): string[] {
  const lines = out.split("\n");
  const start = lines.findIndex((l) => l.includes("pulumi-iptables:PortRule: ("));
  const end = lines.findIndex((l, i) => i > start && /^\s*--outputs:--|^Resources:/.test(l));
  const tags: string[] = [];
  return lines.slice(start, end).map((l) =>
    l.trimEnd().replace(/pulumi-iptables:[\w.-]+\/[\w.-]+\/[\w.-]+\/[0-9a-f]{12}/g, (t) => {
      if (!tags.includes(t)) tags.push(t);
      return `T${tags.indexOf(t) + 1}`;
    }),
  );
}

/** Both families' rulesets as LabHost.ruleset gives them (counters zeroed), to compare before and after. */
export async function rulesets(h: LabHost): Promise<Record<Family, string>> {
  return { 4: await h.ruleset(4), 6: await h.ruleset(6) };
}
