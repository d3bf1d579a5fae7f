// One independent provider process (as a second stack's `pulumi up` would run it): creates rules
// on one host through the built provider (dist/provider.js) with at most PARALLEL creates in flight,
// and prints one line "RESULT <json>" with what each create gave. Used by parallel.test.ts.
// Input (env PIT_JOB, JSON): { connection, stack, rules: [{ name, args }], parallel, startAt }.
const { check, create, fromStored } = require("../../dist/provider.js");
const { closeAll, getSession } = require("../../dist/ssh/index.js");

async function main() {
  // closeAll() waits for connections whose sockets are unref'd: keep the process alive meanwhile.
  setInterval(() => undefined, 60_000);
  const job = JSON.parse(process.env.PIT_JOB);
  // Both processes start at the same wall-clock moment.
  await new Promise((r) => setTimeout(r, Math.max(0, job.startAt - Date.now())));
  const results = new Array(job.rules.length);
  let next = 0;
  let conn = job.connection;
  async function worker() {
    while (next < job.rules.length) {
      const i = next++;
      const r = job.rules[i];
      const { inputs, failures } = await check(
        {},
        {
          connection: job.connection,
          ...r.args,
          identity: { project: "parallel", stack: job.stack, name: r.name },
        },
      );
      if (failures.length) {
        results[i] = { name: r.name, error: `check: ${JSON.stringify(failures)}` };
        continue;
      }
      conn = inputs.connection;
      try {
        const outs = fromStored((await create(inputs)).outs); // recorded with hidden keys under __
        results[i] = { name: r.name, action: r.args.action, tag: outs.tag, line: outs.insertedAt.ipv4 };
      } catch (e) {
        results[i] = { name: r.name, action: r.args.action, tag: fromStored(inputs).tag, error: String(e?.message) };
      }
    }
  }
  await Promise.all(Array.from({ length: job.parallel }, worker));
  const stats = { ...getSession(conn).stats };
  await closeAll();
  // stdout may be a pipe (asynchronous): exit only once the result is written.
  await new Promise((r) => process.stdout.write(`\nRESULT ${JSON.stringify({ results, stats })}\n`, r));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${String(e?.stack)}\n`);
    process.exit(1);
  },
);
