// Session against ssh2's own in-process SSH server (the way pulumi-command tests its controller): no
// root, no lab, no IP traffic. The server listens on a Unix socket in a temporary directory, and the
// Session's TCP connect is pointed at it (the host name and port it was given pick the socket).
import { ed25519Pair } from "../../keys";
import { utils } from "ssh2";
import type { ServerChannel } from "ssh2";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { connection, fakeServer, PASSWORD, removeSockets } from "./fake-host";

afterAll(removeSockets);
// Every TCP connect of the code under test goes to the Unix socket of the fake host with that "port".
vi.mock("node:net", async (original) => (await import("./fake-host")).viaSockets(await original()));
import type { CheckedConnection } from "../../../provider/rules";
import { describeHostKey, HostKeyError, RemoteError, Session } from "../../../provider/ssh";

interface FakeHost {
  port: number;
  /** "ssh-ed25519 AAAA...", as the client sees it. */
  publicKey: string;
  /** Every exec request the server received, in order. */
  commands: string[];
  /** Authentication methods clients tried, in order. */
  auths: string[];
  /** Channel opens refused so far (see `refuseChannels`). */
  refused: number;
  close(): Promise<void>;
}

/** The answer to an exec; null: none (the server goes away instead). */
type Exec = (command: string, stdin: string) => { stdout?: string; stderr?: string; code: number } | null;

/** An SSH server that accepts PASSWORD for root and answers each exec with `exec`. */
async function fakeHost(exec: Exec, opts: { refuseChannels?: number } = {}): Promise<FakeHost> {
  const host = { commands: [] as string[], auths: [] as string[], refused: 0 };
  const answer = (ch: ServerChannel, command: string) => {
    host.commands.push(command);
    let stdin = "";
    ch.on("data", (d: Buffer) => {
      stdin += d.toString("utf8");
    });
    ch.on("end", () => {
      const r = exec(command, stdin);
      if (!r) return;
      if (r.stdout) ch.write(r.stdout);
      if (r.stderr) ch.stderr.write(r.stderr);
      ch.exit(r.code);
      ch.end();
    });
  };
  const server = await fakeServer((client) => {
    client.on("authentication", (ctx) => {
      host.auths.push(ctx.method);
      if (ctx.method === "password" && ctx.username === "root" && ctx.password === PASSWORD) ctx.accept();
      else ctx.reject(["password"]);
    });
    client.on("ready", () => {
      client.on("session", (accept, reject) => {
        if (host.refused < (opts.refuseChannels ?? 0)) {
          host.refused++;
          reject();
          return;
        }
        accept().on("exec", (acceptExec, _reject, info) => answer(acceptExec(), info.command));
      });
    });
  });
  return Object.assign(host, {
    port: server.port,
    publicKey: describeHostKey(server.hostKey).publicKey,
    close: server.close,
  });
}

const open: { host?: FakeHost; session?: Session }[] = [];
afterEach(async () => {
  for (const { host, session } of open.splice(0)) {
    await session?.close();
    await host?.close();
  }
});

async function setup(exec: Exec, opts: { refuseChannels?: number; conn?: Partial<CheckedConnection> } = {}) {
  const host = await fakeHost(exec, opts);
  const session = new Session(connection(host.port, opts.conn), {});
  open.push({ host, session });
  return { host, session };
}

describe("Session against an in-process SSH server", () => {
  it("runs a command: stdout, stderr and the exit status come back, a non-zero exit is a result", async () => {
    const { session } = await setup((_c, stdin) =>
      stdin.includes("fail") ? { stderr: "no such thing\n", code: 3 } : { stdout: "hello\n", code: 0 },
    );
    expect(await session.run("echo hello")).toEqual({ code: 0, stdout: "hello\n", stderr: "" });
    expect(await session.run("fail")).toEqual({ code: 3, stdout: "", stderr: "no such thing\n" });
  });

  it("sends one fixed command line, the same to every login shell, and the script byte for byte on stdin", async () => {
    const stdins: string[] = [];
    const { host, session } = await setup((_c, stdin) => {
      stdins.push(stdin);
      return { code: 0 };
    });
    // What fish reads differently from sh inside single quotes (\\ and \'), and what every shell expands.
    const script = `printf '%s\\n' 'a\\\\b' 'it'\\''s' "$HOME" \`id\` $(true) *`;
    await session.run(script);
    await session.run("true", { sudo: true });
    expect(host.commands).toEqual(["sh -s", "sudo -n -- /bin/sh -s"]);
    expect(stdins).toEqual([`{\n${script}\n}\n`, "{\ntrue\n}\n"]);
  });

  it("opens a conversation's shell with the same command line, through sudo -n when the connection says sudo", async () => {
    const { host, session } = await setup((_c, stdin) => ({ stdout: stdin, code: 0 }), { conn: { sudo: true } });
    const { channel, release } = await session.openChannel();
    const out = await new Promise<string>((resolve) => {
      let text = "";
      channel.on("data", (d: Buffer) => (text += d.toString("utf8")));
      channel.on("close", () => resolve(text));
      channel.end("echo hi\n");
    });
    release();
    expect(out).toBe("echo hi\n");
    expect(host.commands).toEqual(["sudo -n -- /bin/sh -s"]);
  });

  it("records the host key it saw, and shares one connection between commands", async () => {
    const { host, session } = await setup(() => ({ code: 0 }));
    const seen = await session.connect();
    expect(seen.publicKey).toBe(host.publicKey);
    await Promise.all([session.run("a"), session.run("b"), session.run("c")]);
    expect(session.stats.connections).toBe(1);
    expect(host.auths.filter((m) => m === "password")).toHaveLength(1);
  });

  it("refuses a host whose key is not the expected one", async () => {
    const other = ed25519Pair();
    const parsed = utils.parseKey(other.public);
    if (parsed instanceof Error) throw parsed;
    const wrong = describeHostKey(parsed.getPublicSSH()).publicKey;
    const { session } = await setup(() => ({ code: 0 }), { conn: { hostKey: wrong } });
    await expect(session.run("true")).rejects.toBeInstanceOf(HostKeyError);
  });

  it("retries a channel open the server refuses (MaxSessions) instead of failing the command", async () => {
    const { host, session } = await setup(() => ({ stdout: "ok", code: 0 }), { refuseChannels: 2 });
    expect((await session.run("true")).stdout).toBe("ok");
    expect(host.refused).toBe(2);
    expect(session.stats.channelRetries).toBeGreaterThanOrEqual(2);
  });

  it("keeps the password out of every error", async () => {
    const { session } = await setup(() => ({ code: 0 }), { conn: { password: `${PASSWORD}-wrong` } });
    const err = await session.run("true").then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    const text = JSON.stringify({ m: err!.message, c: String((err as { cause?: unknown }).cause ?? "") });
    expect(text).not.toContain(PASSWORD);
  });

  it("says what was lost when the server goes away mid-command", async () => {
    let hostRef: FakeHost | undefined;
    // The server ends the connection instead of answering (no exit status is ever sent).
    const { host, session } = await setup(() => {
      void hostRef!.close();
      return null;
    });
    hostRef = host;
    await expect(session.run("true")).rejects.toBeInstanceOf(RemoteError);
  });
});
