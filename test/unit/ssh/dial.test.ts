// Dialling (provider/ssh/dial.ts): what is refused before the network, and what a failed handshake
// says. Against ssh2's in-process server (see ./fake-host): no root, no lab, no IP traffic.
import { ed25519Pair } from "../../keys";
import { utils } from "ssh2";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { closeOpened, connection, newPort, PASSWORD, removeSockets, sessionOn } from "./fake-host";

afterAll(removeSockets);
afterEach(closeOpened);
vi.mock("node:net", async (original) => (await import("./fake-host")).viaSockets(await original()));
import { ConnectionError, describeHostKey, HostKeyError, Session } from "../../../provider/ssh";

/** The error a promise rejects with. */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as Error,
  );

describe("dialling an in-process SSH server", () => {
  it("refuses a host whose key is not the expected one", async () => {
    const other = ed25519Pair();
    const parsed = utils.parseKey(other.public);
    if (parsed instanceof Error) throw parsed;
    const wrong = describeHostKey(parsed.getPublicSSH()).publicKey;
    const { session } = await sessionOn(() => ({ code: 0 }), { conn: { hostKey: wrong } });
    await expect(session.run("true")).rejects.toBeInstanceOf(HostKeyError);
  });

  it("keeps the password out of every error", async () => {
    const { session } = await sessionOn(() => ({ code: 0 }), { conn: { password: `${PASSWORD}-wrong` } });
    const err = await session.run("true").then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    const text = JSON.stringify({ m: err!.message, c: String((err as { cause?: unknown }).cause ?? "") });
    expect(text).not.toContain(PASSWORD);
  });

  it("names the methods tried and those the server accepts when authentication fails", async () => {
    const { session } = await sessionOn(() => ({ code: 0 }), { conn: { password: "wrong-password" } });
    const err = (await failure(session.connect())) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.kind).toBe("auth");
    expect(err.message).toMatch(/authentication as root@198\.18\.255\.1:\d+ failed \(tried: password/);
    expect(err.message).toContain("the server accepts: password");
  });

  it("gives up after dialErrorLimit failed dials, naming the last failure", async () => {
    // No fake host listens on this port's socket.
    const session = new Session(connection(newPort()), {});
    const err = (await failure(session.connect())) as ConnectionError;
    await session.close();
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.kind).toBe("dial");
    expect(err.message).toMatch(/cannot connect to root@198\.18\.255\.1:\d+: 1 dial attempt failed, the last with E/);
    expect(session.stats.dialFailures).toBe(1);
  });
});

describe("checks before any dial", () => {
  const refused = async (extra: Parameters<typeof connection>[1]) => {
    const session = new Session(connection(newPort(), extra), {});
    const err = (await failure(session.connect())) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.kind).toBe("config");
    expect(session.stats.dialFailures).toBe(0);
    return err.message;
  };

  it("refuses a hostKey in no known format", async () => {
    expect(await refused({ hostKey: "not a key" })).toMatch(/^hostKey .*\(for root@198\.18\.255\.1:\d+\)$/);
  });

  it("refuses a connection with no credentials at all", async () => {
    const agent = process.env.SSH_AUTH_SOCK;
    delete process.env.SSH_AUTH_SOCK;
    try {
      expect(await refused({ password: undefined })).toMatch(/^no credentials for root@/);
    } finally {
      if (agent !== undefined) process.env.SSH_AUTH_SOCK = agent;
    }
  });

  it("refuses a privateKey that is not a key, keeping it out of the message", async () => {
    const message = await refused({ privateKey: "/home/me/.ssh/id_ed25519" });
    expect(message).toMatch(/the privateKey for root@\S+ cannot be read .*not a path or a public key/);
  });

  it("refuses an encrypted privateKey without its password, and with a wrong one", async () => {
    const { private: key } = utils.generateKeyPairSync("ed25519", {
      passphrase: "right",
      cipher: "aes256-ctr",
      rounds: 4,
    });
    expect(await refused({ privateKey: key })).toMatch(/is encrypted: set privateKeyPassword/);
    expect(await refused({ privateKey: key, privateKeyPassword: "wrong" })).toMatch(
      /privateKeyPassword does not decrypt the privateKey/,
    );
  });
});
