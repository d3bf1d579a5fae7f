// Preloaded into the `pulumi` CLI's node processes by the benchmark (NODE_OPTIONS=--require): records
// each call of the provider's lifecycle (check, diff, create, read, update, remove) with its start and
// end, so the benchmark measures the provider's own share of a `pulumi up` from inside the process
// that runs it. Writes one JSON line per call to $PIT_BENCH_TRACE. Not part of the package.
const Module = require("node:module");
const { appendFileSync } = require("node:fs");

const file = process.env.PIT_BENCH_TRACE;
const OPS = ["check", "diff", "create", "read", "update", "remove"];
const wrapped = new WeakSet();
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
  if (!/[\\/]pulumi-iptables[\\/]dist[\\/]provider\.js$/.test(path)) return m;
  wrapped.add(m);
  for (const op of OPS) {
    const fn = m[op];
    if (typeof fn !== "function") continue;
    m[op] = async (...args) => {
      const t0 = performance.timeOrigin + performance.now();
      try {
        return await fn(...args);
      } finally {
        const t1 = performance.timeOrigin + performance.now();
        appendFileSync(file, `${JSON.stringify({ op, pid: process.pid, t0, t1 })}\n`);
      }
    };
  }
  return m;
};
