// Bounded handshakes against real OpenSSH (issue 15, "Scale"): many logins to one host, or through one
// jump host, never put more unauthenticated connections on the host's sshd than maxConcurrentDials,
// as that sshd itself counts them: its MaxStartups is set to the same number, so it drops (and logs,
// at LogLevel VERBOSE) every connection past it. Toxiproxy adds 150 ms to everything the host sends,
// so handshakes take long enough to overlap, and a client sees an authentication succeed well after
// sshd stopped counting it. A connection dialled early and never used does not keep Node running.
//   bash test/lab/in-lab.sh npx vitest run test/lab/dials.test.ts
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CheckedConnection } from "../../provider/rules";
import { closeAll, Session } from "../../provider/ssh";
import { Lab } from "./lab";
import type { LabHost } from "./lab";
import { Toxiproxy } from "./toxiproxy";

/** The target's MaxStartups, and the limit the provider is given. */
const LIMIT = 4;

let lab: Lab;
let toxi: Toxiproxy;
let jump: LabHost; // a jump host
let target: LabHost; // behind Toxiproxy, MaxStartups LIMIT
/** Where Toxiproxy listens for the target: on the workstation's address on the jump host's link, so
 * the jump host reaches it too. */
let via: { host: string; port: number };
const tmp = mkdtempSync(join(tmpdir(), "pit-dials-lab-"));

const sshdLog = (h: LabHost) => readFileSync(join(h.dir, "sshd.log"), "utf8");
/** What a host's sshd logged from now on: connections accepted, and connections dropped past MaxStartups. */
function watch(h: LabHost) {
  const from = sshdLog(h).length;
  const lines = () => sshdLog(h).slice(from).split("\n");
  return {
    accepted: () => lines().filter((l) => /Connection from \S+ port \d+ on /.test(l)).length,
    dropped: () => lines().filter((l) => /past MaxStartups/.test(l)),
  };
}

const conn = (h: LabHost, extra: Partial<CheckedConnection> = {}): CheckedConnection => ({
  ...h.connection("root"),
  dialErrorLimit: 10,
  perDialTimeout: 30,
  maxConcurrentDials: 8,
  sudo: false,
  ...extra,
});
/** The target, through Toxiproxy. */
const toTarget = (extra: Partial<CheckedConnection> = {}) => conn(target, { ...via, ...extra });

/** Sessions of their own (not the pooled one), as many logins to one host would make. */
const opened: Session[] = [];
function sessions(n: number, c: CheckedConnection): Session[] {
  const ss = Array.from({ length: n }, () => new Session(c, {}));
  opened.push(...ss);
  return ss;
}
const outcomes = (ss: Session[]) =>
  Promise.allSettled(ss.map((s) => s.connect())).then((rs) => rs.map((r) => r.status));

beforeAll(async () => {
  lab = await Lab.create();
  [jump, target] = await Promise.all([
    lab.addHost({ sshd: { LogLevel: "VERBOSE" } }),
    lab.addHost({ sshd: { MaxStartups: String(LIMIT), LogLevel: "VERBOSE" } }),
  ]);
  toxi = await Toxiproxy.start(lab.dir);
  via = { host: jump.clientV4, port: 26500 + target.slot };
  await toxi.api("POST", "/proxies", {
    name: `dials${target.slot}`,
    listen: `${via.host}:${via.port}`,
    upstream: `${target.v4}:22`,
    enabled: true,
  });
  await toxi.api("POST", `/proxies/dials${target.slot}/toxics`, {
    name: "slow-host",
    type: "latency",
    stream: "downstream",
    toxicity: 1,
    attributes: { latency: 150, jitter: 0 },
  });
}, 120_000);

afterAll(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await closeAll();
  toxi?.stop();
  await lab?.destroy();
});

describe(`handshakes against an sshd with MaxStartups ${LIMIT}`, () => {
  it(`16 logins to one host at maxConcurrentDials ${LIMIT}: sshd drops none, all connect at the first attempt`, async () => {
    const w = watch(target);
    const ss = sessions(16, toTarget({ maxConcurrentDials: LIMIT }));
    expect(await outcomes(ss)).toEqual(ss.map(() => "fulfilled"));
    expect(ss.map((s) => s.stats.dialFailures)).toEqual(ss.map(() => 0));
    expect(w.dropped()).toEqual([]);
    expect(w.accepted()).toBe(16);
  }, 120_000);

  it(`12 logins through one jump host at its maxConcurrentDials ${LIMIT}: one connection to the jump host, sshd behind it drops none`, async () => {
    const wTarget = watch(target);
    const wJump = watch(jump);
    // The target's own limit (10) does not hold them back: the jump host's does.
    const ss = sessions(12, toTarget({ maxConcurrentDials: 10, proxy: { ...conn(jump), maxConcurrentDials: LIMIT } }));
    expect(await outcomes(ss)).toEqual(ss.map(() => "fulfilled"));
    expect(ss.map((s) => s.stats.dialFailures)).toEqual(ss.map(() => 0));
    expect(wTarget.dropped()).toEqual([]);
    expect(wTarget.accepted()).toBe(12);
    expect(wJump.accepted()).toBe(1);
  }, 120_000);

  it(`the same sshd drops logins past ${LIMIT} when the provider is allowed more: what the tests above would see`, async () => {
    const w = watch(target);
    const ss = sessions(12, toTarget({ maxConcurrentDials: 10, dialErrorLimit: 1 }));
    const results = await outcomes(ss);
    expect(w.dropped().length).toBeGreaterThan(0);
    expect(results.filter((r) => r === "rejected").length).toBe(w.dropped().length);
  }, 120_000);
});

describe("process lifetime", () => {
  it("a connection dialled early and never used does not keep Node running", async () => {
    // Its key given: only a host whose key is known is dialled early.
    const script = join(tmp, "early.ts");
    const index = resolve(__dirname, "../../provider/ssh/index.ts");
    writeFileSync(
      script,
      `import { dialForeseen, foresee, getSession } from ${JSON.stringify(index)};
const c = ${JSON.stringify(conn(jump, { hostKey: jump.hostKey }))};
foresee(c);
dialForeseen();
const poll = () => (getSession(c).stats.connections === 1 ? console.log("dialled early") : setTimeout(poll, 20));
poll();
`,
    );
    const tsx = resolve(__dirname, "../../node_modules/.bin/tsx");
    const out = await new Promise<string>((res, rej) =>
      execFile(tsx, [script], { timeout: 20_000 }, (err, stdout, stderr) =>
        err ? rej(new Error(`${err.message}\n${stderr}`)) : res(stdout),
      ),
    );
    expect(out.trim()).toBe("dialled early");
  }, 30_000);
});
