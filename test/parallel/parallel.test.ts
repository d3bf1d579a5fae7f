// Issue 6, "How it must be shown": many PortRules on one host at once. The engine calls create for
// many resources within milliseconds (Pulumi's default --parallel is 4 x CPUs); every rule must land
// where placement says relative to the chain's final DROP, none lost, over one SSH connection, also
// with a second provider process and with a foreign writer that ignores the lock. Lab only:
//   npm run build && bash test/lab/in-lab.sh npx vitest run test/parallel
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { check, create, fromStored, remove } from "../../provider/provider";
import type { PortRuleState } from "../../provider/provider";
import { closeAll, getSession } from "../../provider/ssh";
import type { CheckedConnection } from "../../provider/rules";
import { Lab } from "../lab/lab";
import type { Backend, LabHost } from "../lab/lab";
import { PulumiProject } from "../pulumi";
import type { CliResult } from "../pulumi";
import { PROGRAM } from "../e2e/program";
import { BASE, BASE_INPUT, PARALLEL } from "./base";

type Action = "ACCEPT" | "DROP";
interface Spec {
  name: string;
  args: { port: number; action: Action };
}
interface Ours {
  name: string;
  action: Action;
  tag: string;
}

/** n rules, every third a DROP, on ports from `base` up. */
const specs = (n: number, base: number, prefix = "r"): Spec[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `${prefix}${i}`,
    args: { port: base + i, action: (i % 3 === 2 ? "DROP" : "ACCEPT") as Action },
  }));

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create();
});
afterAll(async () => {
  await closeAll();
  await lab?.destroy();
});

/** The INPUT chain of the filter table as iptables-save prints it. */
async function inputChain(h: LabHost): Promise<string[]> {
  return (await h.save(4, { table: "filter" })).split("\n").filter((l) => l.startsWith("-A INPUT "));
}

/** What is wrong with our rules in the chain: not there, there twice, an ACCEPT below the final DROP. */
function problems(chain: string[], ours: Ours[]): string[] {
  const out: string[] = [];
  // The chain's own final DROP (auto-placed DROP rules of ours may follow it: they change nothing there).
  const finalDrop = chain.indexOf("-A INPUT -j DROP");
  if (finalDrop < 0 || chain.lastIndexOf("-A INPUT -j DROP") !== finalDrop)
    out.push(`not exactly one "-A INPUT -j DROP": ${JSON.stringify(chain)}`);
  for (const r of ours) {
    const at = chain.map((l, i) => (l.includes(`${r.tag}"`) || l.includes(`${r.tag} `) ? i : -1)).filter((i) => i >= 0);
    if (at.length === 0) out.push(`${r.name} (${r.tag}) is missing`);
    else if (at.length > 1) out.push(`${r.name} (${r.tag}) is there ${at.length} times`);
    else if (r.action === "ACCEPT" && at[0] > finalDrop)
      out.push(`${r.name} ACCEPT is at line ${at[0] + 1}, below the final DROP at line ${finalDrop + 1}`);
  }
  return out;
}

/** The chain without our rules (and foreign leftovers show up here). */
const others = (chain: string[], ours: Ours[]) => chain.filter((l) => !ours.some((r) => l.includes(r.tag)));

/** Runs fn(i) for i < n with at most `parallel` in flight, as the engine does. */
async function pool<T>(n: number, parallel: number, fn: (i: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const results: PromiseSettledResult<T>[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await fn(i) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results;
}

/** Checked inputs of one rule, identity set as the PortRule constructor sets it. */
async function checked(h: LabHost, stack: string, s: Spec) {
  const { inputs, failures } = await check(
    {},
    { connection: h.connection(), ...s.args, identity: { project: "parallel", stack, name: s.name } },
  );
  expect(failures).toEqual([]);
  return fromStored<any>(inputs); // the engine records hidden keys under __
}

const reasons = (rs: PromiseSettledResult<unknown>[]) =>
  rs.flatMap((r) => (r.status === "rejected" ? [String((r.reason as Error)?.message ?? r.reason)] : []));

describe.each(["nf_tables", "legacy"] as Backend[])("one host, many rules at once (%s)", (backend) => {
  let h: LabHost;
  beforeAll(async () => {
    h = await lab.addHost({ backend, rules: { v4: BASE } });
  });

  it("30 creates at the engine's parallelism: all placed, one connection, few transactions; 30 removes restore the chain", async () => {
    await h.restore(4, BASE);
    await closeAll();
    const rules = specs(30, 10000);
    const inputs = await Promise.all(rules.map((s) => checked(h, "lifecycle", s)));
    const session = getSession(inputs[0].connection as CheckedConnection);

    const created = await pool(rules.length, PARALLEL, (i) => create(inputs[i]));
    expect(reasons(created)).toEqual([]);
    const outs = created.map((r) =>
      fromStored<PortRuleState>((r as PromiseFulfilledResult<{ outs: object }>).value.outs),
    );
    const ours: Ours[] = outs.map((o, i) => ({ name: rules[i].name, action: rules[i].args.action, tag: o.tag }));
    const chain = await inputChain(h);
    expect(problems(chain, ours)).toEqual([]);
    expect(others(chain, ours)).toEqual(BASE_INPUT);
    expect(chain).toHaveLength(34);
    console.log(`[${backend}] 30 creates at parallelism ${PARALLEL}: ${JSON.stringify(session.stats)}`);
    expect(session.stats.connections).toBe(1);
    expect(session.stats.dialFailures).toBe(0);
    // One channel per transaction (plus one for $SSH_CONNECTION, for the lockout guard of the DROPs).
    expect(session.stats.channels).toBeLessThanOrEqual(10);

    // Removes check the host key recorded at create on the same pooled connection.
    const channels = session.stats.channels;
    const removed = await pool(outs.length, PARALLEL, (i) => remove(outs[i].tag, outs[i]));
    expect(reasons(removed)).toEqual([]);
    expect(await inputChain(h)).toEqual(BASE_INPUT);
    console.log(`[${backend}] 30 removes at parallelism ${PARALLEL}: ${JSON.stringify(session.stats)}`);
    expect(session.stats.connections).toBe(1);
    expect(session.stats.channels - channels).toBeLessThanOrEqual(10);
  });

  it("two provider processes (two stacks) creating 10 rules each at the same moment: 0 misplaced", async () => {
    await h.restore(4, BASE);
    const startAt = Date.now() + 2000;
    const jobs = ["a", "b"].map((stack, k) =>
      runProcess({
        connection: h.connection(),
        stack,
        rules: specs(10, 11000 + 100 * k, `${stack}`),
        parallel: PARALLEL,
        startAt,
      }),
    );
    const done = await Promise.all(jobs);
    const results = done.flatMap((d) => d.results);
    expect(results.filter((r) => r.error)).toEqual([]);
    const ours: Ours[] = results.map((r) => ({ name: r.name, action: r.action, tag: r.tag }));
    expect(ours).toHaveLength(20);
    const chain = await inputChain(h);
    expect(problems(chain, ours)).toEqual([]);
    expect(others(chain, ours)).toEqual(BASE_INPUT);
    console.log(`[${backend}] two processes: ${JSON.stringify(done.map((d) => d.stats))}`);
  });

  it("a foreign writer that ignores the lock moves line numbers while 20 rules are created: each rule placed or cleanly failed", async () => {
    await h.restore(4, BASE);
    await closeAll();
    // Inserts and deletes rules at the top and in the middle, and every 10th round a DROP of
    // our port range at the top (which shadows our ACCEPTs while it is there). Bounded in count and time.
    const loop =
      "for i in $(seq 300); do a=198.18.200.$((i%250+1)); " +
      "iptables -w 5 -I INPUT 1 -s $a -j ACCEPT; iptables -w 5 -I INPUT 3 -s $a -p udp -j ACCEPT; " +
      "if [ $((i%10)) = 0 ]; then iptables -w 5 -I INPUT 1 -p tcp --dport 12000:12999 -j DROP; fi; " +
      "iptables -w 5 -D INPUT -s $a -j ACCEPT; " +
      "if [ $((i%10)) = 0 ]; then iptables -w 5 -D INPUT -p tcp --dport 12000:12999 -j DROP; fi; " +
      "iptables -w 5 -D INPUT -s $a -p udp -j ACCEPT; done";
    const writer = h.exec(["timeout", "60", "sh", "-c", loop]);
    const rules = specs(20, 12000);
    const inputs = await Promise.all(rules.map((s) => checked(h, "foreign", s)));
    await new Promise((r) => setTimeout(r, 200));
    // Spread the creates over the writer's run: each waits a little before it starts.
    const created = await pool(rules.length, PARALLEL, async (i) => {
      await new Promise((r) => setTimeout(r, 50 + ((i * 137) % 400)));
      return create(inputs[i]);
    });
    const w = await writer;
    expect(w.code, w.stderr).toBe(0);

    const chain = await inputChain(h);
    const ok: Ours[] = [];
    const failed: string[] = [];
    created.forEach((r, i) => {
      if (r.status === "fulfilled")
        ok.push({
          name: rules[i].name,
          action: rules[i].args.action,
          tag: fromStored<PortRuleState>(r.value.outs).tag,
        });
      else {
        failed.push(`${rules[i].name}: ${(r.reason as Error).message}`);
        // A failed create leaves nothing of its rule on the host.
        expect(
          chain.filter((l) => l.includes(inputs[i].tag as string)),
          `${rules[i].name} failed but is on the host`,
        ).toEqual([]);
      }
    });
    console.log(
      `[${backend}] foreign writer: ${ok.length} created, ${failed.length} failed cleanly${failed.length ? `:\n  ${failed.join("\n  ")}` : ""}`,
    );
    expect(problems(chain, ok)).toEqual([]);
    expect(others(chain, ok)).toEqual(BASE_INPUT);
  });
});

interface ProcessResult {
  results: { name: string; action: Action; tag: string; line?: number; error?: string }[];
  stats: Record<string, number>;
}

/** Runs test/parallel/stack-process.cjs (dist/provider.js in its own node process). */
function runProcess(job: Record<string, unknown>): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, "stack-process.cjs")], {
      env: { ...process.env, PIT_JOB: JSON.stringify(job) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (code !== 0 || !line)
        return reject(new Error(`provider process exited ${code}:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`));
      resolve(JSON.parse(line.slice("RESULT ".length)));
    });
  });
}

describe("30 rules through the real CLI: pulumi up --parallel 16, then destroy", () => {
  let h: LabHost;
  let p: PulumiProject | undefined;
  beforeAll(async () => {
    h = await lab.addHost({ backend: "nf_tables", rules: { v4: BASE } });
  });
  afterAll(() => p?.remove());

  it("every rule placed, none lost, no sshd refusal; destroy restores the chain", async () => {
    const rules = specs(30, 13000);
    p = await PulumiProject.create("parallel", {
      files: { "index.js": PROGRAM },
      withPackage: true,
      config: {
        "parallel:connection": { value: JSON.stringify(h.connection()), secret: true },
        "parallel:rules": JSON.stringify(rules),
      },
    });
    const all = (r: CliResult) => r.stdout + r.stderr;
    const up = await p.up(["--parallel", "16"]);
    expect(up.code, all(up)).toBe(0);
    const outputs = (await p.outputs()).rules as Record<string, { tag: string }>;
    const ours: Ours[] = rules.map((s) => ({ name: s.name, action: s.args.action, tag: outputs[s.name]?.tag }));
    expect(ours.filter((r) => !r.tag)).toEqual([]);
    const chain = await inputChain(h);
    expect(problems(chain, ours)).toEqual([]);
    expect(others(chain, ours)).toEqual(BASE_INPUT);

    const down = await p.destroy(["--parallel", "16"]);
    expect(down.code, all(down)).toBe(0);
    expect(await inputChain(h)).toEqual(BASE_INPUT);
    const sshdLog = readFileSync(join(h.dir, "sshd.log"), "utf8");
    expect(sshdLog).not.toMatch(/MaxStartups|no more sessions|refused|drop connection/i);
    expect(all(up) + all(down)).not.toMatch(/no more sessions|Channel open failure|ECONNRESET|MaxStartups/i);
  });
});
