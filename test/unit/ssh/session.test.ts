// Session against ssh2's own in-process SSH server (the way pulumi-command tests its controller): no
// root, no lab, no IP traffic. The server listens on a Unix socket in a temporary directory, and the
// Session's TCP connect is pointed at it (the host name and port it was given pick the socket).
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { closeOpened, removeSockets, sessionOn } from "./fake-host";
import { RemoteError } from "../../../provider/ssh";
import { originOf } from "../../../provider/ssh/session";

afterAll(removeSockets);
afterEach(closeOpened);
// Every TCP connect of the code under test goes to the Unix socket of the fake host with that "port".
vi.mock("node:net", async (original) => (await import("./fake-host")).viaSockets(await original()));

describe("Session against an in-process SSH server", () => {
  it("runs a command: stdout, stderr and the exit status come back, a non-zero exit is a result", async () => {
    const { session } = await sessionOn((_c, stdin) =>
      stdin.includes("fail") ? { stderr: "no such thing\n", code: 3 } : { stdout: "hello\n", code: 0 },
    );
    expect(await session.run("echo hello")).toEqual({ code: 0, stdout: "hello\n", stderr: "" });
    expect(await session.run("fail")).toEqual({ code: 3, stdout: "", stderr: "no such thing\n" });
  });

  it("sends one fixed command line, the same to every login shell, and the script byte for byte on stdin", async () => {
    const stdins: string[] = [];
    const { host, session } = await sessionOn((_c, stdin) => {
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
    const { host, session } = await sessionOn((_c, stdin) => ({ stdout: stdin, code: 0 }), { conn: { sudo: true } });
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
    const { host, session } = await sessionOn(() => ({ code: 0 }));
    const seen = await session.connect();
    expect(seen.publicKey).toBe(host.publicKey);
    await Promise.all([session.run("a"), session.run("b"), session.run("c")]);
    expect(session.stats.connections).toBe(1);
    expect(host.auths.filter((m) => m === "password")).toHaveLength(1);
  });

  it("mustRun turns a non-zero exit into a RemoteError with the command, status and last lines", async () => {
    const { session } = await sessionOn(() => ({ stdout: "x\n", stderr: "a\nb\nc\nd\n", code: 2 }));
    const err = await session.mustRun("false").then(
      () => undefined,
      (e: unknown) => e as RemoteError,
    );
    expect(err).toBeInstanceOf(RemoteError);
    expect(err!.message).toMatch(/^command on root@198\.18\.255\.1:\d+ exited with status 2: b; c; d$/);
    expect([err!.command, err!.code, err!.stdout]).toEqual(["false", 2, "x\n"]);
  });

  it("reads where the connection comes from once per connection, and says so when it cannot", async () => {
    let answer = "198.18.0.1 50000 198.18.255.1 22";
    const scripts: string[] = [];
    const { host, session } = await sessionOn((_command, stdin) => {
      scripts.push(stdin);
      return { stdout: answer, code: 0 };
    });
    const origin = await session.origin();
    expect(origin).toEqual({
      clientAddress: "198.18.0.1",
      clientPort: 50000,
      serverAddress: "198.18.255.1",
      serverPort: 22,
    });
    expect(await session.origin()).toBe(origin);
    expect(host.commands).toHaveLength(1);
    expect(scripts[0]).toContain('set -f; set -- $SSH_CONNECTION; [ -n "$1" ] && ip route get "$1"');
    await session.close();
    answer = "";
    await expect(session.origin()).rejects.toThrow(/cannot tell where the connection to root@\S+ comes from/);
  });

  it("reads the interface the connection arrives on from the route back to the client (iproute2's, busybox's)", () => {
    const ok = (stdout: string) => originOf({ stdout, stderr: "", code: 0 }, "t");
    const ssh = "198.18.0.1 50000 198.18.0.2 22\n";
    expect(ok(`${ssh}198.18.0.1 dev eth0 src 198.18.0.2 uid 0 \n    cache \n`).inInterface).toBe("eth0");
    expect(ok(`${ssh}198.18.0.1 via 198.18.0.254 dev wan0  src 198.18.0.2 \n`).inInterface).toBe("wan0");
    // No ip on the host, or a name Linux would not allow: not known.
    expect(ok(ssh).inInterface).toBeUndefined();
    expect(ok(`${ssh}198.18.0.1 dev a/b\x1b[2J src 198.18.0.2\n`).inInterface).toBeUndefined();
    expect(ok(ssh)).toEqual({
      clientAddress: "198.18.0.1",
      clientPort: 50000,
      serverAddress: "198.18.0.2",
      serverPort: 22,
    });
  });
});
