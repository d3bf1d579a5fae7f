// Preloaded into the `pulumi` CLI's node processes by the benchmark (NODE_OPTIONS=--require): records
// each call of the provider's lifecycle (check, diff, create, read, update, remove) with its start and
// end, so the benchmark measures the provider's own share of a `pulumi up` from inside the process
// that runs it, with the process's CPU seconds so far; each host transaction (host/transaction.js
// runTransaction: how many changes it carried, whether it continued a kept conversation); and each
// round trip to a host (a step of a conversation, host/shell.js, or a one-off script, Session.run):
// bytes sent and received, and how many whole-table listings (iptables-save sections) it carried.
// And the CLI's node processes themselves: when the program and the dynamic provider's process started,
// and how long the SDK's closure serializer took over a dynamic provider (it awaits while the program
// registers its resources; the engine starts the provider's process when the first registration reaches
// it), for the program of the engine floor too.
// Writes one JSON line per call to $PIT_BENCH_TRACE. Not part of the package.
const Module = require("node:module");
const { appendFileSync } = require("node:fs");

const file = process.env.PIT_BENCH_TRACE;
const OPS = ["check", "diff", "create", "read", "update", "remove"];
const wrapped = new WeakSet();
const stamp = () => performance.timeOrigin + performance.now();
const record = (line) => appendFileSync(file, `${JSON.stringify({ ...line, pid: process.pid })}\n`);

/** Wraps a module's function `name`: `fields` makes the record from its arguments when it ends. */
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const bytes = (s) => Buffer.byteLength(s ?? "");
/** A round trip's record from the script sent and the sections (or framed text) received. */
const trip = (op, script, received, listings) => ({ op, sent: bytes(script), received, listings });

function wrap(m, name, fields) {
  const fn = m[name];
  if (typeof fn !== "function") return;
  m[name] = async (...args) => {
    const t0 = stamp();
    try {
      return await fn(...args);
    } finally {
      record({ ...fields(args), t0, t1: stamp() });
    }
  };
}

/** The CLI's node process this is, by its entry point. */
const ROLES = {
  program: /[\\/]cmd[\\/]run[\\/]index\.js$/,
  "provider process": /[\\/]cmd[\\/]dynamic-provider[\\/]index\.js$/,
};
const role = Object.keys(ROLES).find((r) => ROLES[r].test(process.argv[1] ?? ""));
if (file && role) record({ op: role, t0: performance.timeOrigin, t1: performance.timeOrigin });

const load = Module._load;
Module._load = function (request, parent, isMain) {
  const m = load.call(this, request, parent, isMain);
  if (!file || !m || typeof m !== "object" || wrapped.has(m)) return m;
  let path;
  try {
    path = Module._resolveFilename(request, parent, isMain);
  } catch {
    return m;
  }
  if (/[\\/]pulumi-iptables[\\/]dist[\\/]host[\\/]shell\.js$/.test(path)) {
    wrapped.add(m);
    const open = m.openShell;
    m.openShell = async (...args) => {
      const shell = await open(...args);
      const step = shell.step.bind(shell);
      shell.step = async (name, script) => {
        const sections = await step(name, script);
        const all = Object.entries(sections);
        const received = all.reduce((n, [, v]) => n + bytes(v.out) + bytes(v.err), 0);
        record(trip("step", script, received, all.filter(([k]) => /^save[46]$/.test(k)).length));
        return sections;
      };
      return shell;
    };
  }
  if (/[\\/]pulumi-iptables[\\/]dist[\\/]ssh[\\/]session\.js$/.test(path)) {
    wrapped.add(m);
    const run = m.Session.prototype.run;
    m.Session.prototype.run = async function (script, ...rest) {
      const r = await run.call(this, script, ...rest);
      const listings = (r.stdout.match(/^@@pit-begin \S+ save[46]$/gm) ?? []).length;
      record(trip("run", script, bytes(r.stdout) + bytes(r.stderr), listings));
      return r;
    };
  }
  if (/[\\/]@pulumi[\\/]pulumi[\\/]runtime[\\/]closure[\\/]serializeClosure\.js$/.test(path)) {
    wrapped.add(m);
    wrap(m, "serializeFunction", () => ({ op: "serialize" }));
  }
  if (/[\\/]pulumi-iptables[\\/]dist[\\/]host[\\/]transaction\.js$/.test(path)) {
    wrapped.add(m);
    wrap(m, "runTransaction", (args) => ({ op: "transaction", changes: args[3].length, kept: !!args[5] }));
  }
  if (!/[\\/]pulumi-iptables[\\/]dist[\\/]provider\.js$/.test(path)) return m;
  wrapped.add(m);
  for (const op of OPS) wrap(m, op, () => ({ op, cpu: cpu() }));
  return m;
};
