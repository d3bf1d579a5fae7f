// Preloaded into the `pulumi` CLI's node processes by the benchmark (NODE_OPTIONS=--require): records
// each call of the provider's lifecycle (check, diff, create, read, update, remove) with its start and
// end, so the benchmark measures the provider's own share of a `pulumi up` from inside the process
// that runs it; and each host transaction (host/transaction.js runTransaction: how many changes it
// carried, whether it continued a kept conversation). Writes one JSON line per call to
// $PIT_BENCH_TRACE. Not part of the package.
const Module = require("node:module");
const { appendFileSync } = require("node:fs");

const file = process.env.PIT_BENCH_TRACE;
const OPS = ["check", "diff", "create", "read", "update", "remove"];
const wrapped = new WeakSet();
const stamp = () => performance.timeOrigin + performance.now();
const record = (line) => appendFileSync(file, `${JSON.stringify({ ...line, pid: process.pid })}\n`);

/** Wraps a module's function `name`: `before` makes the record from its arguments, written when it ends. */
function wrap(m, name, before) {
  const fn = m[name];
  if (typeof fn !== "function") return;
  m[name] = async (...args) => {
    const t0 = stamp();
    try {
      return await fn(...args);
    } finally {
      record({ ...before(args), t0, t1: stamp() });
    }
  };
}

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
  if (/[\\/]pulumi-iptables[\\/]dist[\\/]host[\\/]transaction\.js$/.test(path)) {
    wrapped.add(m);
    wrap(m, "runTransaction", (args) => ({ op: "transaction", changes: args[3].length, kept: !!args[5] }));
  }
  if (!/[\\/]pulumi-iptables[\\/]dist[\\/]provider\.js$/.test(path)) return m;
  wrapped.add(m);
  for (const op of OPS) wrap(m, op, () => ({ op }));
  return m;
};
