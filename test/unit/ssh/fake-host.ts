// What the unit tests of provider/ssh share: fake SSH hosts (ssh2's own in-process Server, the way
// pulumi-command tests its controller) that listen on Unix sockets in a temporary directory, and the
// connection a Session is given for one. No root, no lab, no IP traffic: a test file points every TCP
// connect of the code under test at the socket of the fake host with that "port", and removes the
// sockets after its tests:
//   vi.mock("node:net", async (original) => (await import("./fake-host")).viaSockets(await original()));
//   afterAll(removeSockets);
import { ed25519Pair } from "../../keys";
import { mkdtempSync, rmSync } from "node:fs";
import type * as Net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, utils } from "ssh2";
import type { Connection as ServerConnection, ServerChannel } from "ssh2";
import type { CheckedConnection } from "../../../provider/rules";

const SOCKETS = mkdtempSync(join(tmpdir(), "pit-unit-ssh-"));
/** The socket of the fake host with this port. */
export const socketOf = (port: number) => join(SOCKETS, `${port}.sock`);
export const removeSockets = () => rmSync(SOCKETS, { recursive: true, force: true });

/** node:net with every TCP connect going to the socket of the fake host with that port. */
export function viaSockets(net: typeof Net) {
  const connect = (opts: { port?: number }) => net.connect({ path: socketOf(Number(opts.port)) });
  return { ...net, default: { ...net, connect, createConnection: connect }, connect, createConnection: connect };
}

let nextPort = 40001;
/** A made-up port no fake host has yet: it only names a socket. */
export const newPort = () => nextPort++;

/** The password the fake hosts accept. */
export const PASSWORD = "in-process-secret";

export interface FakeServer {
  port: number;
  /** The host key's public part in SSH wire form. */
  hostKey: Buffer;
  /** "ssh-ed25519 AAAA...", as a client sees it. */
  publicKey: string;
  /** Ends every connection and stops listening. */
  close(): Promise<void>;
}

/** An SSH server with a fresh ed25519 host key, listening on a socket of its own; `onClient` serves each connection. */
export async function fakeServer(onClient: (client: ServerConnection) => void): Promise<FakeServer> {
  const keys = ed25519Pair();
  const parsed = utils.parseKey(keys.public);
  if (parsed instanceof Error) throw parsed;
  const clients = new Set<ServerConnection>();
  const server = new Server({ hostKeys: [keys.private] }, (client) => {
    clients.add(client);
    client.on("error", () => {});
    client.on("close", () => clients.delete(client));
    onClient(client);
  });
  const port = newPort();
  await new Promise<void>((resolve) => server.listen(socketOf(port), resolve));
  return {
    port,
    hostKey: parsed.getPublicSSH(),
    publicKey: `${parsed.type} ${parsed.getPublicSSH().toString("base64")}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of clients) c.end();
        server.close(() => resolve());
      }),
  };
}

/** The checked connection to a fake host: root with PASSWORD, one dial, 5 s per dial. */
export const connection = (port: number, extra: Partial<CheckedConnection> = {}): CheckedConnection => ({
  host: "198.18.255.1",
  port,
  user: "root",
  password: PASSWORD,
  dialErrorLimit: 1,
  perDialTimeout: 5,
  maxConcurrentDials: 8,
  sudo: false,
  ...extra,
});

export interface ExecHost {
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
export type Exec = (command: string, stdin: string) => { stdout?: string; stderr?: string; code: number } | null;

/** An SSH server that accepts PASSWORD for root and answers each exec with `exec`. */
export async function execHost(exec: Exec, opts: { refuseChannels?: number } = {}): Promise<ExecHost> {
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
    publicKey: server.publicKey,
    close: server.close,
  });
}

const opened: { host: ExecHost; session: { close(): Promise<void> } }[] = [];

/** A fresh Session (not the pooled one) to a new execHost; `closeOpened` closes both. */
export async function sessionOn(exec: Exec, opts: { refuseChannels?: number; conn?: Partial<CheckedConnection> } = {}) {
  // Imported here, not at the top: this module is loaded by the node:net mock, before provider/ssh.
  const { Session } = await import("../../../provider/ssh");
  const host = await execHost(exec, opts);
  const session = new Session(connection(host.port, opts.conn), {});
  opened.push({ host, session });
  return { host, session };
}

/** Closes every session and host `sessionOn` opened (afterEach). */
export async function closeOpened(): Promise<void> {
  for (const { host, session } of opened.splice(0)) {
    await session.close();
    await host.close();
  }
}
