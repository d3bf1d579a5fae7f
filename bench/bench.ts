// The benchmark of issue 6 (not a test: it asserts nothing about time). On lab hosts, for N = 1, 10
// and 50 ACCEPT rules on one host, apply and destroy:
//   (a) this provider: its lifecycle (create/remove of dist/provider.js) at the engine's parallelism;
//   (b) this provider through the real `pulumi` CLI (up --skip-preview / destroy, default parallelism), once per N;
//   (c) what @pulumi/command users write: a fresh OpenSSH connection per rule running
//       `iptables -C ... || iptables -I INPUT 4 ...` (`iptables -D ...` to destroy), sequential and 8 at a time;
//   (d) the lower bound: one OpenSSH connection running one `iptables-restore --noflush` of all N lines.
// Then 20 hosts x 25 rules against 1 host x 25 rules (provider lifecycle at parallelism 8).
// Prints medians of several runs, ratios to the lower bound measured in the same run, and the SSH
// connections (TCP SYNs to port 22 counted inside the host) and round trips (channels) each made.
//   npm run bench   (= npm run build && bash test/lab/in-lab.sh tsx bench/bench.ts)
// Env: BENCH_RUNS (default 3).
import { spawn } from "node:child_process";
import { cpus } from "node:os";
import { join } from "node:path";
import { check, create, remove } from "../dist/provider.js";
import type { PortRuleState } from "../dist/provider.js";
import { hostAgent } from "../dist/host/agent.js";
import { closeAll } from "../dist/ssh/index.js";
import type { CheckedConnection } from "../dist/rules/index.js";
import { Lab } from "../test/lab/lab";
import type { LabHost } from "../test/lab/lab";
import { PulumiProject } from "../test/pulumi";
import { PROGRAM } from "../test/e2e/program";
import { BASE, BASE_INPUT, PARALLEL } from "../test/parallel/base";

/** The line of the final DROP: where a hand-written `iptables -I` puts an ACCEPT. */
const DROP_LINE = 4;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SIZES = [1, 10, 50];
const PORT0 = 20000;

const now = () => performance.now();
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(2);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const log = (m: string) => process.stderr.write(`${m}\n`);

let lab: Lab;
let sshKey: string;

/** One OpenSSH client run: exit status, stderr, and whether sshd refused it (MaxStartups). */
function ssh(h: LabHost, command: string, input?: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const args = [
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "LogLevel=ERROR",
      "-i",
      sshKey,
      `root@${h.v4}`,
      command,
    ];
    const child = spawn("ssh", args, { stdio: [input === undefined ? "ignore" : "pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    if (input !== undefined) child.stdin!.end(input);
    child.on("close", (code) => resolve({ code: code ?? -1, stderr }));
  });
}
const refused = (r: { code: number; stderr: string }) => r.code === 255;

/** Runs fn(i) for i < n with at most `parallel` in flight. */
async function pool<T>(n: number, parallel: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

const spec = (port: number) => `-p tcp -m tcp --dport ${port} -m comment --comment bench-${port} -j ACCEPT`;

async function inputChain(h: LabHost): Promise<string[]> {
  return (await h.save(4, { table: "filter" })).split("\n").filter((l) => l.startsWith("-A INPUT "));
}

/** Counting new SSH connections inside the host: a rule without a target in the raw table (never touched here). */
async function countSyns(h: LabHost): Promise<void> {
  await h.sh("iptables -w 5 -t raw -A PREROUTING -p tcp --dport 22 --syn");
}
async function syns(h: LabHost): Promise<number> {
  const out = await h.sh("iptables -w 5 -t raw -L PREROUTING -n -v -x -Z");
  const line = out.split("\n").find((l) => /dpt:22/.test(l));
  return Number(line?.trim().split(/\s+/)[0] ?? NaN);
}

/** The chain must be back to the base before each measurement; a leftover is counted and reset. */
async function reset(h: LabHost): Promise<number> {
  const chain = await inputChain(h);
  const extra = chain.length - BASE_INPUT.length;
  if (JSON.stringify(chain) !== JSON.stringify(BASE_INPUT)) await h.restore(4, BASE);
  await syns(h);
  return extra;
}

/** How many of the N rules (by port) are in the chain, and whether all are above the final DROP. */
async function present(h: LabHost, ports: number[]): Promise<{ present: number; misplaced: number }> {
  const chain = await inputChain(h);
  const drop = chain.indexOf("-A INPUT -j DROP");
  let n = 0;
  let mis = 0;
  for (const p of ports) {
    const at = chain.findIndex((l) => l.includes(`--dport ${p} `));
    if (at >= 0) n++;
    if (at > drop) mis++;
  }
  return { present: n, misplaced: mis };
}

interface Sample {
  apply: number;
  destroy: number;
  /** SSH connections (SYNs seen by the host), apply + destroy. */
  conns: number;
  /** Round trips: exec channels (ssh2) or ssh invocations; NaN when not measured. */
  channels: number;
  /** Rules missing after apply / left after destroy; connections refused. */
  lost: number;
  refused: number;
}

// --- (d) the lower bound -----------------------------------------------------------------------
async function lowerBound(h: LabHost, ports: number[]): Promise<Sample> {
  await reset(h);
  const restore = (lines: string[]) => `*filter\n${lines.join("\n")}\nCOMMIT\n`;
  let t = now();
  const a = await ssh(
    h,
    "iptables-restore --noflush -w 5",
    restore(ports.map((p) => `-I INPUT ${DROP_LINE} ${spec(p)}`)),
  );
  const apply = now() - t;
  const after = await present(h, ports);
  t = now();
  const d = await ssh(h, "iptables-restore --noflush -w 5", restore(ports.map((p) => `-D INPUT ${spec(p)}`)));
  const destroy = now() - t;
  if (a.code || d.code) throw new Error(`lower bound failed: ${a.stderr} ${d.stderr}`);
  const conns = await syns(h);
  const left = await reset(h);
  return { apply, destroy, conns, channels: 2, lost: ports.length - after.present + left, refused: 0 };
}

// --- (c) one connection per rule -----------------------------------------------------------------
async function perRule(h: LabHost, ports: number[], parallel: number): Promise<Sample> {
  await reset(h);
  let t = now();
  const ups = await pool(ports.length, parallel, (i) =>
    ssh(
      h,
      `iptables -w 5 -C INPUT ${spec(ports[i])} 2>/dev/null || iptables -w 5 -I INPUT ${DROP_LINE} ${spec(ports[i])}`,
    ),
  );
  const apply = now() - t;
  const after = await present(h, ports);
  t = now();
  const downs = await pool(ports.length, parallel, (i) => ssh(h, `iptables -w 5 -D INPUT ${spec(ports[i])}`));
  const destroy = now() - t;
  const conns = await syns(h);
  const left = await reset(h);
  const all = [...ups, ...downs];
  const failedOther = all.filter((r) => r.code !== 0 && !refused(r));
  if (failedOther.length)
    log(`  per-rule x${parallel}: ${failedOther.length} commands failed: ${failedOther[0].stderr.trim()}`);
  return {
    apply,
    destroy,
    conns,
    channels: all.length,
    lost: ports.length - after.present + Math.max(0, left),
    refused: all.filter(refused).length,
  };
}

// --- (a) this provider's lifecycle ---------------------------------------------------------------
interface Fleet {
  hosts: LabHost[];
  perHost: number;
}

/**
 * The session a host's agent uses. `fresh` closes these, so that each phase starts without a
 * connection, as a fresh `pulumi` process does.
 */
const sessionOf = (conn: CheckedConnection) => hostAgent(conn, {}).session;
async function fresh(sessions: { close(): Promise<void> }[]): Promise<void> {
  await Promise.all(sessions.map((s) => s.close()));
  await closeAll();
}

async function checkedInputs(h: LabHost, ports: number[], stack: string) {
  return Promise.all(
    ports.map(async (port, i) => {
      const { inputs, failures } = await check(
        {},
        { connection: h.connection(), port, action: "ACCEPT", identity: { project: "bench", stack, name: `r${i}` } },
      );
      if (failures.length) throw new Error(JSON.stringify(failures));
      return inputs as any;
    }),
  );
}

/**
 * Creates then removes perHost rules on every host of the fleet. `parallel` in flight per host
 * ("host") or in total ("total"). A fresh connection for each phase, as each `pulumi` run is a fresh
 * provider process.
 */
async function lifecycle(
  fleet: Fleet,
  parallel: number,
  scope: "host" | "total",
): Promise<Sample & { misplaced: number }> {
  const ports = Array.from({ length: fleet.perHost }, (_, i) => PORT0 + i);
  for (const h of fleet.hosts) await reset(h);
  const inputs = (await Promise.all(fleet.hosts.map((h) => checkedInputs(h, ports, "lifecycle")))).flat();
  const connOf = (k: number) => inputs[k * fleet.perHost].connection as CheckedConnection;
  await fresh(fleet.hosts.map((_, k) => sessionOf(connOf(k))));
  // The sessions this phase uses (closing one takes it out of the pool: take them after).
  const createSessions = fleet.hosts.map((_, k) => sessionOf(connOf(k)));
  const channels0 = createSessions.map((s) => s.stats.channels);
  const drive = async (fn: (i: number) => Promise<unknown>) => {
    if (scope === "total") return pool(inputs.length, parallel, fn);
    return Promise.all(fleet.hosts.map((_, k) => pool(fleet.perHost, parallel, (i) => fn(k * fleet.perHost + i))));
  };

  let t = now();
  const outs: PortRuleState[] = new Array(inputs.length);
  let failures = 0;
  await drive(async (i) => {
    try {
      outs[i] = (await create(inputs[i])).outs as PortRuleState;
    } catch (e) {
      failures++;
      log(`  create failed: ${(e as Error).message}`);
    }
  });
  const apply = now() - t;
  let present_ = 0;
  let misplaced = 0;
  for (const h of fleet.hosts) {
    const p = await present(h, ports);
    present_ += p.present;
    misplaced += p.misplaced;
  }
  await fresh(createSessions);
  // A new provider process: a new connection (remove checks the recorded host key on it).
  const removeSessions = fleet.hosts.map((_, k) => sessionOf(connOf(k)));
  const channels1 = removeSessions.map((s) => s.stats.channels);
  const createChannels = createSessions.reduce((n, s, k) => n + s.stats.channels - channels0[k], 0);
  t = now();
  await drive(async (i) => {
    if (!outs[i]) return;
    try {
      await remove(outs[i].tag, outs[i]);
    } catch (e) {
      failures++;
      log(`  remove failed: ${(e as Error).message}`);
    }
  });
  const destroy = now() - t;
  await fresh(removeSessions);
  let conns = 0;
  let left = 0;
  for (const h of fleet.hosts) {
    conns += await syns(h);
    left += await reset(h);
  }
  const channels = createChannels + removeSessions.reduce((n, s, k) => n + s.stats.channels - channels1[k], 0);
  return { apply, destroy, conns, channels, lost: inputs.length - present_ + left + failures, refused: 0, misplaced };
}

// --- (b) the real CLI ------------------------------------------------------------------------------
async function cli(h: LabHost, ports: number[]): Promise<Sample> {
  await reset(h);
  const rules = ports.map((port, i) => ({ name: `r${i}`, args: { port, action: "ACCEPT" } }));
  const p = await PulumiProject.create("bench", {
    files: { "index.js": PROGRAM },
    withPackage: true,
    config: {
      "bench:connection": { value: JSON.stringify(h.connection()), secret: true },
      "bench:rules": JSON.stringify(rules),
    },
  });
  try {
    let t = now();
    const up = await p.up();
    const apply = now() - t;
    if (up.code) throw new Error(`pulumi up exited ${up.code}: ${up.stdout.slice(-1500)}${up.stderr.slice(-1500)}`);
    const after = await present(h, ports);
    t = now();
    const down = await p.destroy();
    const destroy = now() - t;
    if (down.code)
      throw new Error(`pulumi destroy exited ${down.code}: ${down.stdout.slice(-1500)}${down.stderr.slice(-1500)}`);
    const conns = await syns(h);
    const left = await reset(h);
    return { apply, destroy, conns, channels: NaN, lost: ports.length - after.present + left, refused: 0 };
  } finally {
    p.remove();
  }
}

// --- the table -------------------------------------------------------------------------------------
interface Row {
  n: string;
  approach: string;
  samples: Sample[];
  lower?: Sample[];
  note?: string;
}

function rowText(r: Row): string {
  const med = (k: "apply" | "destroy") => median(r.samples.map((s) => s[k]));
  const lmed = (k: "apply" | "destroy") => (r.lower ? median(r.lower.map((s) => s[k])) : NaN);
  const total = med("apply") + med("destroy");
  const ltotal = lmed("apply") + lmed("destroy");
  const per = (k: keyof Sample) => {
    const v = median(r.samples.map((s) => s[k] as number));
    return Number.isNaN(v) ? "n/m" : String(v);
  };
  const lost = r.samples.reduce((n, s) => n + s.lost, 0);
  const refusedN = r.samples.reduce((n, s) => n + s.refused, 0);
  return `| ${r.n} | ${r.approach} | ${r.samples.length} | ${sec(med("apply"))} | ${sec(med("destroy"))} | ${r.lower ? ratio(med("apply"), lmed("apply")) : "-"} | ${r.lower ? ratio(med("destroy"), lmed("destroy")) : "-"} | ${r.lower ? ratio(total, ltotal) : "-"} | ${per("conns")} | ${per("channels")} | ${refusedN} | ${lost} |${r.note ? ` ${r.note}` : ""}`;
}

async function main() {
  const started = now();
  // The provider logs through @pulumi/pulumi's log, which prints to the console outside the engine:
  // keep stdout for the table.
  for (const k of ["log", "info", "warn", "error", "debug"] as const) console[k] = () => undefined;
  // closeAll() waits for connections whose sockets are unref'd: keep the process alive meanwhile.
  const keepAlive = setInterval(() => undefined, 60_000);
  lab = await Lab.create();
  sshKey = join(lab.dir, "client_ed25519");
  try {
    log(`bench: ${cpus().length} CPUs, ${RUNS} runs, parallelism ${PARALLEL}`);
    const h = await lab.addHost({ backend: "nf_tables", rules: { v4: BASE } });
    await countSyns(h);
    // One discarded run: the first use of the provider's code in this process (module loading, JIT).
    await lifecycle({ hosts: [h], perHost: 2 }, PARALLEL, "host");
    const rows: Row[] = [];
    const summary: Record<string, number> = {};

    for (const n of SIZES) {
      const ports = Array.from({ length: n }, (_, i) => PORT0 + i);
      const s: Record<string, Sample[]> = { lower: [], provider: [], seq: [], par: [], par16: [] };
      for (let run = 0; run < RUNS; run++) {
        log(`N=${n} run ${run + 1}/${RUNS}`);
        s.lower.push(await lowerBound(h, ports));
        log(`  lower ${JSON.stringify(s.lower.at(-1))}`);
        s.provider.push(await lifecycle({ hosts: [h], perHost: n }, PARALLEL, "host"));
        log(`  provider ${JSON.stringify(s.provider.at(-1))}`);
        s.seq.push(await perRule(h, ports, 1));
        s.par.push(await perRule(h, ports, PARALLEL));
        s.par16.push(await perRule(h, ports, 16));
      }
      log(`N=${n} CLI`);
      const c = await cli(h, ports);
      rows.push(
        {
          n: String(n),
          approach: "lower bound: 1 ssh, 1 iptables-restore --noflush",
          samples: s.lower,
          lower: s.lower,
        },
        {
          n: String(n),
          approach: `pulumi-iptables lifecycle, ${PARALLEL} in flight`,
          samples: s.provider,
          lower: s.lower,
        },
        { n: String(n), approach: "pulumi-iptables via `pulumi up` / `destroy` (1 run)", samples: [c], lower: s.lower },
        { n: String(n), approach: "1 ssh per rule (`-C \\|\\| -I`), sequential", samples: s.seq, lower: s.lower },
        {
          n: String(n),
          approach: `1 ssh per rule (\`-C \\|\\| -I\`), ${PARALLEL} at a time`,
          samples: s.par,
          lower: s.lower,
        },
        { n: String(n), approach: "1 ssh per rule (`-C \\|\\| -I`), 16 at a time", samples: s.par16, lower: s.lower },
      );
      const tot = (xs: Sample[]) => median(xs.map((x) => x.apply)) + median(xs.map((x) => x.destroy));
      summary[`provider/lower N=${n}`] = tot(s.provider) / tot(s.lower);
      summary[`seq/provider N=${n}`] = tot(s.seq) / tot(s.provider);
      summary[`par8/provider N=${n}`] = tot(s.par) / tot(s.provider);
    }

    log("fleet: 20 hosts");
    const fleet: LabHost[] = [h];
    while (fleet.length < 20) fleet.push(await lab.addHost({ backend: "nf_tables", rules: { v4: BASE } }));
    for (const f of fleet.slice(1)) await countSyns(f);
    const one: Sample[] = [];
    const perHost: Sample[] = [];
    const total: Sample[] = [];
    for (let run = 0; run < RUNS; run++) {
      log(`fleet run ${run + 1}/${RUNS}`);
      one.push(await lifecycle({ hosts: [h], perHost: 25 }, PARALLEL, "host"));
      perHost.push(await lifecycle({ hosts: fleet, perHost: 25 }, PARALLEL, "host"));
      total.push(await lifecycle({ hosts: fleet, perHost: 25 }, PARALLEL, "total"));
    }
    const fleetRows: Row[] = [
      { n: "1x25", approach: `pulumi-iptables lifecycle, ${PARALLEL} in flight`, samples: one, lower: one },
      {
        n: "20x25",
        approach: `pulumi-iptables lifecycle, ${PARALLEL} in flight per host (${PARALLEL * 20} in all)`,
        samples: perHost,
        lower: one,
      },
      {
        n: "20x25",
        approach: `pulumi-iptables lifecycle, ${PARALLEL} in flight in all (one engine at --parallel ${PARALLEL})`,
        samples: total,
        lower: one,
      },
    ];
    const tot = (xs: Sample[]) => median(xs.map((x) => x.apply)) + median(xs.map((x) => x.destroy));
    summary["20x25 per-host/1x25"] = tot(perHost) / tot(one);
    summary["20x25 total/1x25"] = tot(total) / tot(one);

    const header =
      "| N | approach | runs | apply s (median) | destroy s (median) | apply / lower | destroy / lower | total / lower | SSH connections | round trips (channels) | refused | lost or left |\n" +
      "|---|---|---|---|---|---|---|---|---|---|---|---|";
    const out = [
      `### One host, N rules (${cpus().length} CPUs, ${RUNS} runs each, medians; ratios to the lower bound of the same N in this run)`,
      "",
      header,
      ...rows.map(rowText),
      "",
      "### 20 hosts x 25 rules against 1 host x 25 rules (ratios to 1x25 of this run)",
      "",
      header.replace("/ lower |", "/ 1x25 |").replace("/ lower |", "/ 1x25 |").replace("/ lower |", "/ 1x25 |"),
      ...fleetRows.map(rowText),
      "",
      "### Targets",
      "",
      `- 50 rules within 1.5x of the lower bound (apply + destroy): ${summary["provider/lower N=50"].toFixed(2)}x -> ${summary["provider/lower N=50"] <= 1.5 ? "met" : "NOT met"}`,
      `- >= 10x faster than one connection per rule, N=50: sequential ${summary["seq/provider N=50"].toFixed(2)}x -> ${summary["seq/provider N=50"] >= 10 ? "met" : "NOT met"}; ${PARALLEL} at a time ${summary["par8/provider N=50"].toFixed(2)}x -> ${summary["par8/provider N=50"] >= 10 ? "met" : "NOT met"}`,
      `- 20x25 within 2x of 1x25: ${PARALLEL} in flight per host ${summary["20x25 per-host/1x25"].toFixed(2)}x -> ${summary["20x25 per-host/1x25"] <= 2 ? "met" : "NOT met"}; ${PARALLEL} in flight in all ${summary["20x25 total/1x25"].toFixed(2)}x -> ${summary["20x25 total/1x25"] <= 2 ? "met" : "NOT met"}`,
      "",
      `(bench took ${sec(now() - started)} s)`,
    ];
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    await closeAll();
    await lab.destroy();
    clearInterval(keepAlive);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench failed: ${(e as Error).stack}\n`);
    process.exit(1);
  },
);
