// The SSH layer against real OpenSSH servers (lab hosts: stock sshd limits). Run inside the lab:
//   bash test/lab/in-lab.sh npx vitest run test/lab/ssh.test.ts
import { ed25519Pair } from "../keys";
import { execFile, execFileSync } from "node:child_process";
import { Server } from "ssh2";
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_ATTEMPT, Lab, LAB_PASSWORD } from "./lab";
import type { LabHost, LabUser } from "./lab";
import {
  ConnectionError,
  HostKeyError,
  RemoteError,
  SudoError,
  closeAll,
  REDACTED,
  addressOf,
  getSession,
  pinHostKey,
} from "../../provider/ssh";
import type { CheckedConnection } from "../../provider/rules";
import type { Logger } from "../../provider/ssh";

/** Login shells of host a's users (LabHost.connection({ loginShell })). */
const SHELLS = ["/bin/bash", "/usr/bin/dash", "/usr/bin/zsh", "/usr/bin/fish"];

let lab: Lab;
let a: LabHost; // the main host
let b: LabHost; // a second host: the jump host's target
const tmp = mkdtempSync(join(tmpdir(), "pit-ssh-lab-"));

function conn(
  h: LabHost,
  user: LabUser = "root",
  extra: Partial<CheckedConnection> = {},
  family: 4 | 6 = 4,
): CheckedConnection {
  return {
    ...h.connection(user, family),
    dialErrorLimit: 10,
    perDialTimeout: 15,
    maxConcurrentDials: 8,
    sudo: false,
    ...extra,
  };
}

function recorder(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: string) => (m: string) => lines.push(`${level}: ${m}`);
  return { lines, debug: push("debug"), info: push("info"), warn: push("warn"), error: push("error") };
}

function keygen(name: string, passphrase = ""): { privateKey: string; publicKey: string } {
  const f = join(tmp, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", f]);
  return { privateKey: readFileSync(f, "utf8"), publicKey: readFileSync(`${f}.pub`, "utf8").trim() };
}

/** A session of its own: whatever the pool held for these arguments is closed first. */
async function fresh(args: CheckedConnection, log?: Logger) {
  await getSession(args).close();
  return getSession(args, log);
}

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a failure");
}

/** Everything an error would show an operator or a log: message, causes, stack, own fields. */
function everything(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e; c; c = (c as Error).cause)
    parts.push(String((c as Error).message), String((c as Error).stack), JSON.stringify(c));
  return parts.join("\n");
}

/** Routes between the two hosts through the lab's workstation namespace (this process's), for the jump host. */
async function routeBetweenHosts(): Promise<void> {
  writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
  await a.sh(`ip route replace 198.18.${b.slot}.0/24 via ${a.clientV4}`);
  await b.sh(`ip route replace 198.18.${a.slot}.0/24 via ${b.clientV4}`);
}

beforeAll(async () => {
  lab = await Lab.create();
  [a, b] = await Promise.all([
    lab.addHost({ backend: "nf_tables", loginShells: SHELLS }),
    lab.addHost({ backend: "legacy" }),
  ]);
});

afterAll(async () => {
  await closeAll();
  await lab?.destroy();
});

describe("connecting", () => {
  it("runs as root by key, reuses one connection, and reports the host key", async () => {
    const s = getSession(conn(a));
    expect(getSession(conn(a))).toBe(s);
    const r = await s.run("id -u; echo err >&2; exit 3");
    expect(r).toEqual({ code: 3, stdout: "0\n", stderr: "err\n" });
    // A command that reads stdin finds its end, not the rest of the script.
    expect((await s.run("wc -c; echo after")).stdout).toBe("0\nafter\n");
    const e = await failure(s.mustRun("echo out; echo 'it failed' >&2; exit 4"));
    expect(e).toBeInstanceOf(RemoteError);
    expect(e).toMatchObject({
      code: 4,
      stdout: "out\n",
      stderr: "it failed\n",
      command: "echo out; echo 'it failed' >&2; exit 4",
    });
    expect(e.message).toBe(`command on root@${a.v4}:22 exited with status 4: it failed`);
    expect(s.stats.connections).toBe(1);
    expect(s.stats.channels).toBe(3);
    expect(s.hostKey).toEqual({
      algorithm: "ssh-ed25519",
      fingerprint: a.hostKeyFingerprint,
      publicKey: a.hostKey,
    });
  });

  it("authenticates with a password", async () => {
    const { privateKey: _unused, ...byKey } = conn(a, "sudo");
    const s = getSession({ ...byKey, password: LAB_PASSWORD });
    const r = await s.run("id -un");
    expect(r.stdout.trim()).toBe("pit-ops");
  });

  it("authenticates with an encrypted private key, and says so when the passphrase is missing or wrong", async () => {
    const key = keygen("enc", "correct horse");
    appendFileSync(join(a.dir, "ssh", "authorized_keys"), `${key.publicKey}\n`);
    const base = { ...conn(a), privateKey: key.privateKey };
    const ok = await getSession({ ...base, privateKeyPassword: "correct horse" }).run("id -u");
    expect(ok.stdout.trim()).toBe("0");

    const missing = await failure(getSession(base).run("true"));
    expect(missing).toBeInstanceOf(ConnectionError);
    expect(missing.message).toMatch(/privateKey for root@198\.18\.\d+\.2:22 is encrypted: set privateKeyPassword/);

    const log = recorder();
    const wrong = getSession({ ...base, privateKeyPassword: "wrong battery" }, log);
    const e = await failure(wrong.run("true"));
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e.message).toMatch(/privateKeyPassword does not decrypt the privateKey/);
    expect(everything(e)).not.toContain("wrong battery");
    expect(everything(e)).not.toContain(key.privateKey.split("\n")[1]);
    expect(wrong.stats.dialFailures).toBe(0);
  });

  it("fails at once with a clear error on a key the host does not know (no retries)", async () => {
    const stranger = keygen("stranger");
    const log = recorder();
    const s = getSession({ ...conn(a), privateKey: stranger.privateKey }, log);
    const t0 = Date.now();
    const e = await failure(s.run("true"));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(e).toBeInstanceOf(ConnectionError);
    expect((e as ConnectionError).kind).toBe("auth");
    expect(e.message).toContain(`authentication as root@${a.v4}:22 failed (tried: publickey`);
    expect(log.lines.filter((l) => l.includes("Dial"))).toEqual([]);
    expect(s.stats.dialFailures).toBe(0);
    expect(everything(e)).not.toContain(stranger.privateKey.split("\n")[1]);
  });

  it("never shows a wrong password", async () => {
    const { privateKey: _unused, ...byKey } = conn(a, "sudo");
    const e = await failure(getSession({ ...byKey, password: "S3cret-Wr0ng" }).run("true"));
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e.message).toContain(`authentication as pit-ops@${a.v4}:22 failed (tried: password`);
    expect(everything(e)).not.toContain("S3cret-Wr0ng");
  });

  it("retries an unreachable host (closed port) with logged, growing delays, then fails clearly", async () => {
    const log = recorder();
    const s = getSession({ ...conn(a), port: 2, dialErrorLimit: 3 }, log);
    const t0 = Date.now();
    const e = await failure(s.run("true"));
    const took = Date.now() - t0;
    expect(e).toBeInstanceOf(ConnectionError);
    expect((e as ConnectionError).kind).toBe("dial");
    expect(e.message).toBe(
      `cannot connect to root@${a.v4}:2: 3 dial attempts failed, the last with ECONNREFUSED ` +
        "(nothing listens on that port, or a firewall rejects the connection)",
    );
    expect(log.lines.filter((l) => l.includes("Dial"))).toEqual([
      `warn: Dial 1/3 to ${a.v4}:2 failed: ECONNREFUSED: retrying in 1s; it keeps dialling up to dialErrorLimit (3) dials, each waiting up to perDialTimeout (15s): lower them in the connection to fail sooner`,
      `warn: Dial 2/3 to ${a.v4}:2 failed: ECONNREFUSED: retrying in 2s`,
    ]);
    expect(took).toBeGreaterThanOrEqual(2900);
    expect(took).toBeLessThan(6000);
    expect(s.stats.dialFailures).toBe(3);
  });

  it("checks a given hostKey: the right key or fingerprint connects, another is refused naming both", async () => {
    expect((await getSession(conn(a, "root", { hostKey: a.hostKey })).run("true")).code).toBe(0);
    expect((await getSession(conn(a, "root", { hostKey: a.hostKeyFingerprint })).run("true")).code).toBe(0);

    const log = recorder();
    const s = getSession(conn(a, "root", { hostKey: b.hostKey }), log);
    const e = await failure(s.run("true"));
    expect(e).toBeInstanceOf(HostKeyError);
    expect(e.message).toContain(a.hostKeyFingerprint);
    expect(e.message).toContain(b.hostKeyFingerprint);
    expect((e as HostKeyError).seen.fingerprint).toBe(a.hostKeyFingerprint);
    expect(s.stats.dialFailures).toBe(0);
    expect(s.stats.connections).toBe(0);
    expect(log.lines.filter((l) => l.includes("Dial"))).toEqual([]);
  });

  it("retries a port that accepts TCP but never speaks SSH, each dial bounded by perDialTimeout", async () => {
    await a.listen(7022);
    const log = recorder();
    const s = getSession({ ...conn(a), port: 7022, dialErrorLimit: 2, perDialTimeout: 1 }, log);
    const t0 = Date.now();
    const e = await failure(s.run("true"));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(e.message).toContain(
      `cannot connect to root@${a.v4}:7022: 2 dial attempts failed, the last with no SSH handshake within 1s`,
    );
    expect(log.lines).toContain(
      `warn: Dial 1/2 to ${a.v4}:7022 failed: no SSH handshake within 1s: retrying in 1s; it keeps dialling up to dialErrorLimit (2) dials, each waiting up to perDialTimeout (1s): lower them in the connection to fail sooner`,
    );
  });

  it("authenticates through an ssh-agent socket", async () => {
    const sock = join(tmp, "agent.sock");
    const out = execFileSync("ssh-agent", ["-s", "-a", sock], { encoding: "utf8" });
    const pid = /SSH_AGENT_PID=(\d+)/.exec(out)?.[1];
    try {
      const keyFile = join(tmp, "agent_key");
      writeFileSync(keyFile, a.connection().privateKey, { mode: 0o600 });
      execFileSync("ssh-add", ["-q", keyFile], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
      const { privateKey: _unused, ...noKey } = conn(a);
      const s = getSession({ ...noKey, agentSocketPath: sock });
      expect((await s.run("id -u")).stdout).toBe("0\n");
      await s.close();
    } finally {
      if (pid) process.kill(Number(pid));
    }
  });

  it("reconnects after the connection is lost", async () => {
    const s = await fresh(conn(a));
    await s.run("true");
    const before = s.stats.connections;
    const origin = await s.origin();
    // Kill the sshd process that serves this connection (found by our source port), inside the host.
    const ss = await a.sh(`ss -Htnp state established '( sport = :22 and dport = :${origin.clientPort} )'`);
    const pid = /pid=(\d+)/.exec(ss)?.[1];
    expect(pid).toBeDefined();
    await a.sh(`kill ${pid}`);
    await new Promise((r) => setTimeout(r, 300));
    expect((await s.run("echo again")).stdout).toBe("again\n");
    expect(s.stats.connections).toBe(before + 1);
  });
});

describe("channels", () => {
  it("runs 30 commands at once on one session with no channel failure (sshd MaxSessions 10)", async () => {
    const s = await fresh(conn(a)); // not connected yet: one connection for all 30
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => s.run(`sleep 0.05; echo ${i}`)));
    expect(results.map((r) => r.code)).toEqual(Array(30).fill(0));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 30 }, (_, i) => `${i}\n`));
    expect(s.stats.connections).toBe(1);
    expect(s.stats.channels).toBe(30);
    expect(s.stats.channelRetries).toBe(0);
  });

  it("retries channel opens that sshd refuses (MaxSessions) instead of failing", async () => {
    const s = await fresh(conn(a, "sudo"));
    await s.run("true");
    // Occupy 8 of sshd's 10 sessions on this connection behind the session's back, for about a second.
    const client = (s as unknown as { link: { connected: import("ssh2").Client } }).link.connected;
    const hogs = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise<import("ssh2").ClientChannel>((res, rej) =>
            client.exec("sleep 1", (err, ch) => (err ? rej(err) : res(ch))),
          ),
      ),
    );
    const closed = Promise.all(
      hogs.map(
        (ch) =>
          new Promise((r) => {
            ch.on("close", r);
            ch.resume();
            ch.stderr.resume();
          }),
      ),
    );
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.run(`echo ${i}`)));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 8 }, (_, i) => `${i}\n`));
    expect(s.stats.channelRetries).toBeGreaterThan(0);
    await closed;
  });

  it("openChannel: a long-lived shell that holds a channel slot until released", async () => {
    const s = await fresh(conn(a, "sudo", { sudo: true }));
    const shells = await Promise.all(Array.from({ length: 4 }, () => s.openChannel()));
    // All 4 slots are held: a run waits until one shell is released.
    let ran = false;
    const waiting = s.run("echo queued").then((r) => {
      ran = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(ran).toBe(false);
    const outputs = await Promise.all(
      shells.map(
        ({ channel, release }) =>
          new Promise<string>((res) => {
            let out = "";
            channel.on("data", (d: Buffer) => (out += d.toString()));
            channel.stderr.resume();
            channel.on("close", () => {
              release();
              res(out);
            });
            channel.end("id -u\nexit 0\n");
          }),
      ),
    );
    expect(outputs).toEqual(["0\n", "0\n", "0\n", "0\n"]);
    expect((await waiting).stdout).toBe("queued\n");
  });

  it("keeps up 200 short commands from many callers, each with its own output and exit status", async () => {
    // pit-ops' shell is /bin/sh: a command costs a channel round trip, not a login shell's start-up.
    const s = await fresh(conn(a, "sudo"));
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => s.run(`echo ${i}; exit ${i % 7}`)));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 200 }, (_, i) => `${i}\n`));
    expect(results.map((r) => r.code)).toEqual(Array.from({ length: 200 }, (_, i) => i % 7));
    expect(s.stats.connections).toBe(1);
  });

  it("a command in a row costs milliseconds, not a Nagle delay", async () => {
    const s = getSession(conn(a, "sudo"));
    await s.run("true");
    const t0 = Date.now();
    for (let i = 0; i < 50; i++) await s.run("true");
    expect(Date.now() - t0).toBeLessThan(2500);
  });
});

describe("login shells (issue 20.5)", () => {
  it.each(SHELLS)(
    "a script reaches sh byte for byte when the login shell is %s, with sudo and without",
    async (shell) => {
      const s = await fresh({ ...conn(a, "sudo"), user: a.connection({ loginShell: shell }).user });
      // fish reads \\ and \' inside single quotes as escapes: sent through it as sh -c '...', this was mangled.
      const script = String.raw`printf '%s|' 'a\\b' 'it'\''s' "x  y" "$(id -un)"; wc -c`;
      expect(await s.run(script)).toEqual({
        code: 0,
        stdout: `${String.raw`a\\b|it's|x  y|`}${s.args.user}|0\n`,
        stderr: "",
      });
      expect(await s.run(script, { sudo: true })).toEqual({
        code: 0,
        stdout: `${String.raw`a\\b|it's|x  y|`}root|0\n`,
        stderr: "",
      });
      expect((await s.origin()).clientAddress).toBe(a.clientV4);
    },
  );
});

describe("sudo", () => {
  it("runs as root through passwordless sudo", async () => {
    const s = getSession(conn(a, "sudo", { sudo: true }));
    expect((await s.run("id -u")).stdout).toBe("0\n");
    expect((await s.run("id -un", { sudo: false })).stdout).toBe("pit-ops\n");
  });

  it("gives a SudoError at once when sudo wants a password", async () => {
    const s = getSession(conn(a, "nopasswd", { sudo: true }));
    const t0 = Date.now();
    const e = await failure(s.run("id -u"));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(e).toBeInstanceOf(SudoError);
    expect(e).toBeInstanceOf(RemoteError);
    expect(e.message).toContain("pit-nopw needs passwordless sudo for /bin/sh");
    expect(e.message).toContain("NOPASSWD");
    expect((e as SudoError).command).toBe("id -u");
    expect((e as SudoError).stderr).toMatch(/password is required/);
  });
});

describe("origin and proxy", () => {
  it("origin() is where the connection comes from as the host sees it, for both families", async () => {
    const o4 = await getSession(conn(a)).origin();
    expect(o4).toMatchObject({ clientAddress: a.clientV4, serverAddress: a.v4, serverPort: 22 });
    expect(o4.clientPort).toBeGreaterThan(0);
    const s6 = getSession(conn(a, "root", {}, 6));
    const o6 = await s6.origin();
    expect(o6).toMatchObject({ clientAddress: a.clientV6, serverAddress: a.v6, serverPort: 22 });
    expect(await s6.origin()).toBe(o6); // cached per connection
    expect(s6.stats.channels).toBe(1);
  });

  it("reaches a host through a jump host", async () => {
    await routeBetweenHosts();

    const log = recorder();
    const viaA = getSession(
      conn(b, "root", { proxy: conn(a, "sudo", { privateKey: undefined, password: LAB_PASSWORD }) }),
      log,
    );
    const r = await viaA.run("id -u; hostname -I 2>/dev/null || ip -4 -o addr show eth0");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(b.v4);
    expect(viaA.hostKey?.fingerprint).toBe(b.hostKeyFingerprint);
    expect(await viaA.origin()).toMatchObject({ clientAddress: a.v4, serverAddress: b.v4, serverPort: 22 });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => viaA.run(`echo ${i}`)));
    expect(results.every((x, i) => x.stdout === `${i}\n`)).toBe(true);
    expect(viaA.stats.connections).toBe(1);

    // A closed port behind the jump host: retried as dial failures, then a clear error.
    const closed = getSession(conn(b, "root", { port: 2, dialErrorLimit: 2, proxy: conn(a) }), log);
    const e = await failure(closed.run("true"));
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e.message).toContain(`cannot connect to root@${b.v4}:2 (via root@${a.v4}:22): 2 dial attempts failed`);
    expect(log.lines.some((l) => l.startsWith(`warn: Dial 1/2 to ${b.v4}:2 (via root@${a.v4}:22) failed`))).toBe(true);
  });
});

describe("process lifetime", () => {
  it("an idle pooled connection (direct, or through a jump host) does not keep Node running", async () => {
    await routeBetweenHosts();
    const script = join(tmp, "idle.ts");
    const index = resolve(__dirname, "../../provider/ssh/index.ts");
    writeFileSync(
      script,
      `import { getSession } from ${JSON.stringify(index)};
const s = getSession(${JSON.stringify(conn(a))});
const p = getSession(${JSON.stringify(conn(b, "root", { proxy: conn(a, "sudo") }))});
Promise.all([s.run('echo up'), p.run('echo via')]).then(([r, q]) => { console.log(r.stdout.trim(), q.stdout.trim(), s.stats.connections); });
`,
    );
    const tsx = resolve(__dirname, "../../node_modules/.bin/tsx");
    const t0 = Date.now();
    const out = await new Promise<string>((res, rej) =>
      execFile(tsx, [script], { timeout: 20_000 }, (err, stdout, stderr) =>
        err ? rej(new Error(`${err.message}\n${stderr}`)) : res(stdout),
      ),
    );
    expect(out.trim()).toBe("up via 1");
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});

describe("host keys: nothing reaches an impostor", () => {
  let c: LabHost; // a host whose address an impostor takes
  let jump: LabHost; // a jump host whose address an impostor takes
  beforeAll(async () => {
    [c, jump] = await Promise.all([lab.addHost(), lab.addHost()]);
    writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
    await c.sh(`ip route replace 198.18.${jump.slot}.0/24 via ${c.clientV4}`);
    await jump.sh(`ip route replace 198.18.${c.slot}.0/24 via ${jump.clientV4}`);
  });
  /** Credentials of every kind at once: a key the impostor would accept, and a password. */
  const all = (h: LabHost, extra: Partial<CheckedConnection> = {}) =>
    conn(h, "root", { password: LAB_PASSWORD, dialErrorLimit: 3, ...extra });

  it("a pinned key, a given hostKey, and a reconnect in the same process: refused in the handshake, naming both keys", async () => {
    const first = await fresh(all(c));
    await first.run("true"); // the key seen first is pinned to the address for this process
    pinHostKey(addressOf(all(c)), c.hostKeyFingerprint, "the key recorded in state when this rule was created");
    const impostor = await c.impersonate();
    try {
      const cases = [
        ["the reconnect of the session that saw the real host", first],
        ["a new session with other credentials", getSession(all(c, { password: "other-password" }))],
        ["a session with the hostKey given", getSession(all(c, { hostKey: c.hostKey }))],
      ] as const;
      for (const [what, s] of cases) {
        const e = await failure(s.run("true"));
        expect(e.message, what).toMatch(/host key verification failed/);
        expect(e, what).toBeInstanceOf(HostKeyError);
        expect(e.message, what).toContain(c.hostKeyFingerprint);
        expect(e.message, what).toContain(impostor.fingerprint);
        expect(e.message, what).toMatch(/before any password or key was sent/);
        expect(e.message, what).toMatch(/set hostKey to it/);
      }
      const log = impostor.log();
      expect(log).toContain("Connection from"); // it was reached, three times...
      expect(log).not.toMatch(AUTH_ATTEMPT); // ...and offered nothing
      // What its log shows when someone does authenticate (the operator accepting its key):
      const accepted = getSession(all(c, { hostKey: impostor.hostKey }));
      expect((await accepted.run("true")).code).toBe(0);
      expect(impostor.log().slice(log.length)).toMatch(/Accepted publickey for root/);
    } finally {
      await impostor.leave();
      await closeAll();
    }
    expect((await getSession(all(c)).run("echo back")).stdout).toBe("back\n");
  });

  it("through a jump host whose key changed: the jump host is refused before anything is sent to it or through it", async () => {
    const through = (extra: Partial<CheckedConnection> = {}) => all(c, { proxy: all(jump), ...extra });
    const s = await fresh(through());
    expect((await s.run("true")).code).toBe(0);
    expect(s.proxy?.hostKey?.fingerprint).toBe(jump.hostKeyFingerprint);
    await closeAll();
    const impostor = await jump.impersonate();
    try {
      const e = await failure(getSession(through({ password: "other-password" })).run("true"));
      expect(e).toBeInstanceOf(HostKeyError);
      expect((e as HostKeyError).target).toBe(`root@${jump.v4}:22`);
      expect(e.message).toContain(jump.hostKeyFingerprint);
      expect(e.message).toContain(impostor.fingerprint);
      expect(impostor.log()).toContain("Connection from");
      expect(impostor.log()).not.toMatch(AUTH_ATTEMPT);
    } finally {
      await impostor.leave();
      await closeAll();
    }
  });
});

describe("keyboard-interactive and short secrets (an ssh2 server on the workstation's lab address)", () => {
  const answers: string[][] = [];
  let server: Server;
  let where: { host: string; port: number };
  const rounds: Record<string, { prompt: string; echo: boolean }[][]> = {
    otp: [[{ prompt: "Verification code: ", echo: false }]],
    twice: [[{ prompt: "Password: ", echo: false }], [{ prompt: "Password: ", echo: false }]],
    many: [
      [
        { prompt: "Password: ", echo: false },
        { prompt: "PIN: ", echo: false },
      ],
    ],
  };
  beforeAll(async () => {
    const hostKey = ed25519Pair().private;
    server = new Server({ hostKeys: [hostKey] }, (client) => {
      client.on("authentication", (ctx) => {
        if (ctx.method !== "keyboard-interactive") return ctx.reject(["keyboard-interactive"]);
        const script = [...(rounds[ctx.username] ?? [])];
        const next = () => {
          const prompts = script.shift();
          if (!prompts) return ctx.reject(["keyboard-interactive"]);
          ctx.prompt(prompts, (got) => {
            answers.push(got);
            next();
          });
        };
        next();
      });
      client.on("error", () => undefined);
    });
    where = { host: a.clientV4, port: 2200 };
    await new Promise<void>((res) => server.listen(where.port, where.host, res));
  });
  afterAll(() => server?.close());

  const kbd = (user: string, password: string): CheckedConnection => ({
    ...where,
    user,
    password,
    dialErrorLimit: 1,
    perDialTimeout: 5,
    maxConcurrentDials: 8,
    sudo: false,
  });

  it("answers only a password prompt, once; a code prompt, a second round and several prompts get nothing", async () => {
    answers.length = 0;
    const otp = await failure(getSession(kbd("otp", "kbd-secret-1")).run("true"));
    expect(otp.message).toMatch(/keyboard-interactive asked "Verification code:", which is not a password prompt/);
    expect(answers).toEqual([[""]]);

    answers.length = 0;
    await failure(getSession(kbd("twice", "kbd-secret-2")).run("true"));
    expect(answers).toEqual([["kbd-secret-2"], [""]]);

    answers.length = 0;
    await failure(getSession(kbd("many", "kbd-secret-3")).run("true"));
    expect(answers).toEqual([["", ""]]);
  });

  it("a one- or two-character password is redacted where it stands as a word, in errors and log lines", async () => {
    for (const pw of ["q", "Zx"]) {
      const log = recorder();
      // A user named like the password, so the failure message would carry it.
      const e = await failure(getSession({ ...kbd(pw, pw) }, log).run("true"));
      const text = `${everything(e)}\n${log.lines.join("\n")}`;
      expect(text).toContain(`authentication as ${REDACTED}@${where.host}:${where.port} failed`);
      expect(text).not.toMatch(new RegExp(`(^|[^\\p{L}\\p{N}_])${pw}([^\\p{L}\\p{N}_]|$)`, "u"));
    }
  });
});
