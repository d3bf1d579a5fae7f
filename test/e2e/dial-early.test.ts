// Dial once per host per run, before the first batch needs it (issue 15), under the real `pulumi` CLI:
// `pulumi preview` and an `up` with no changes open no SSH connection; in an `up`, each host gets one
// connection, and at --parallel 1 (the engine creates the rules one at a time, in an order of its own)
// the host whose first rule comes last was connected before that rule's create began: it was dialled
// at the run's first create, as soon as Check had seen its rule (its host key given: hosts whose key is
// not known yet are not dialled early). Connections are seen by each host's
// sshd (LogLevel VERBOSE logs every connection it accepts), polled by this test with its clock; each
// create's start (and its host) is recorded inside the provider's process by a preload.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { LabHost } from "../lab/lab";
import { ok, useLab } from "./harness";
import { createProject, PROGRAM } from "./program";

/** Preloaded into the CLI's node processes: appends {host, t0} for each create of the provider. */
const TRACE = `
const Module = require("node:module");
const { appendFileSync } = require("node:fs");
const load = Module._load;
const done = new WeakSet();
Module._load = function (request, parent, isMain) {
  const m = load.call(this, request, parent, isMain);
  if (!m || typeof m.create !== "function" || done.has(m)) return m;
  let path = "";
  try { path = Module._resolveFilename(request, parent, isMain); } catch {}
  if (!/[\\\\/]pulumi-iptables[\\\\/]dist[\\\\/]provider\\.js$/.test(path)) return m;
  done.add(m);
  const create = m.create;
  m.create = (inputs) => {
    appendFileSync(process.env.PIT_CREATE_TRACE, JSON.stringify({ host: inputs.connection.host, t0: Date.now() }) + "\\n");
    return create(inputs);
  };
  return m;
};
`;

let hosts: LabHost[];
useLab(async (lab) => {
  hosts = await Promise.all([0, 1, 2].map(() => lab.addHost({ sshd: { LogLevel: "VERBOSE" } })));
});

/** Connections a host's sshd has accepted so far. */
const accepted = (h: LabHost) =>
  readFileSync(join(h.dir, "sshd.log"), "utf8").match(/Connection from \S+ port \d+ on /g)?.length ?? 0;
const tagged = async (h: LabHost) =>
  (await h.save(4, { table: "filter" })).split("\n").filter((l) => l.includes("pulumi-iptables:")).length;

describe("SSH connections of a run", () => {
  it("none in preview or a no-change up; one per host in an up, each dialled before its first create once the run changes hosts", async () => {
    // Three rules on the first host, one on each of the others.
    const placed = [0, 0, 0, 1, 2];
    const rules = placed.map((k, i) => ({
      name: `r${i}`,
      // Host keys given: only a host whose key is known is dialled before its own first batch.
      connection: { ...hosts[k].connection(), hostKey: hosts[k].hostKey },
      args: { port: 9100 + i, action: "ACCEPT", ipVersion: "ipv4" },
    }));
    const p = await createProject("dialearly", {
      files: { "index.js": PROGRAM, "trace.cjs": TRACE },
      withPackage: true,
      config: { "dialearly:connection": { value: "{}", secret: true }, "dialearly:rules": JSON.stringify(rules) },
    });
    const trace = join(p.dir, "creates.jsonl");
    writeFileSync(trace, "");
    p.env.NODE_OPTIONS = `${p.env.NODE_OPTIONS ?? ""} --require ${join(p.dir, "trace.cjs")}`.trim();
    p.env.PIT_CREATE_TRACE = trace;
    let counts = hosts.map(accepted);
    const since = () => {
      const now = hosts.map(accepted);
      const d = now.map((n, k) => n - counts[k]);
      counts = now;
      return d;
    };

    await ok(p.preview());
    expect(since()).toEqual([0, 0, 0]);

    // During the up: when each host's sshd first sees a connection, by this test's clock.
    const connectedAt: (number | undefined)[] = [undefined, undefined, undefined];
    let done = false;
    const up = p.up(["--parallel", "1"]).finally(() => {
      done = true;
    });
    while (!done) {
      hosts.forEach((h, k) => {
        if (connectedAt[k] === undefined && accepted(h) > counts[k]) connectedAt[k] = Date.now();
      });
      await new Promise((r) => setTimeout(r, 20));
    }
    await ok(up);
    expect(await Promise.all(hosts.map(tagged))).toEqual([3, 1, 1]);
    expect(since()).toEqual([1, 1, 1]);
    const creates = readFileSync(trace, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { host: string; t0: number });
    expect(creates).toHaveLength(5);
    const firstCreate = hosts.map((h) => Math.min(...creates.filter((c) => c.host === h.v4).map((c) => c.t0)));
    const last = firstCreate.indexOf(Math.max(...firstCreate));
    expect(connectedAt[last]).toBeDefined();
    expect(connectedAt[last]!).toBeLessThan(firstCreate[last]);

    await ok(p.preview());
    await ok(p.up());
    expect(since()).toEqual([0, 0, 0]);

    await ok(p.destroy());
    expect(await Promise.all(hosts.map(tagged))).toEqual([0, 0, 0]);
  });
});
