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
import type { Connection as ServerConnection } from "ssh2";
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
