// Bounded handshakes (provider/ssh/dials.ts) and dialling in advance (provider/ssh/early.ts), seen from
// the server's side: ssh2's in-process SSH server counts the connections that are not authenticated
// yet, as sshd's MaxStartups does. No root, no lab, no IP traffic: each fake host listens on a Unix
// socket, and the Session's TCP connect is pointed at it (the port it was given picks the socket).
import * as net from "node:net";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { connection, fakeServer, newPort, PASSWORD, removeSockets, socketOf } from "./fake-host";

afterAll(removeSockets);
vi.mock("node:net", async (original) => (await import("./fake-host")).viaSockets(await original()));
import { MAX_DIALS, UNKNOWN } from "../../../provider/rules";
import type { CheckedConnection } from "../../../provider/rules";
import {
  closeAll,
  describeHostKey,
  dialForeseen,
  dials,
  foresee,
  foreseenCount,
  getSession,
  Session,
} from "../../../provider/ssh";

/** Handshakes not authenticated yet, over every fake host, and the most there ever were. */
const everywhere = { preauth: 0, max: 0 };

interface FakeHost {
  port: number;
  /** "ssh-ed25519 AAAA...": only hosts whose key is known are dialled in advance. */
  publicKey: string;
  /** Connections accepted, and the users that authenticated, in order. */
  connections: number;
  users: string[];
  /** Connections not authenticated yet now, and the most at once. */
  preauth: number;
  maxPreauth: number;
  close(): Promise<void>;
}

/**
 * An SSH server that accepts PASSWORD for any user, `authDelayMs` after it is offered (so handshakes
 * overlap), runs every command as `true`, and forwards direct-tcpip channels (a jump host) to the
 * fake host whose port they name.
 */
async function fakeHost(opts: { authDelayMs?: number } = {}): Promise<FakeHost> {
  const host = { connections: 0, users: [] as string[], preauth: 0, maxPreauth: 0 };
  const server = await fakeServer((client) => {
    host.connections++;
    let authenticated = false;
    const preauth = (by: 1 | -1) => {
      host.preauth += by;
      everywhere.preauth += by;
      host.maxPreauth = Math.max(host.maxPreauth, host.preauth);
      everywhere.max = Math.max(everywhere.max, everywhere.preauth);
    };
    preauth(1);
    client.on("close", () => {
      if (!authenticated) preauth(-1);
    });
    client.on("authentication", (ctx) => {
      if (ctx.method !== "password" || ctx.password !== PASSWORD) return ctx.reject(["password"]);
      setTimeout(() => {
        authenticated = true;
        preauth(-1);
        host.users.push(ctx.username);
        ctx.accept();
      }, opts.authDelayMs ?? 0);
    });
    client.on("ready", () => {
      client.on("session", (accept) =>
        accept().on("exec", (acceptExec) => {
          const ch = acceptExec();
          ch.exit(0);
          ch.end();
        }),
      );
      client.on("tcpip", (accept, _reject, info) => {
        const ch = accept();
        const sock = net.connect({ port: info.destPort });
        ch.pipe(sock).pipe(ch);
        sock.on("error", () => ch.destroy());
      });
    });
  });
  return Object.assign(host, {
    port: server.port,
    publicKey: describeHostKey(server.hostKey).publicKey,
    close: server.close,
  });
}

const hosts: FakeHost[] = [];
const sessions: Session[] = [];
async function host(opts: { authDelayMs?: number } = {}) {
  const h = await fakeHost(opts);
  hosts.push(h);
  return h;
}
/** A session of its own (not the pooled one): many sessions to one host, as many logins would make. */
function session(conn: CheckedConnection): Session {
  const s = new Session(conn, {});
  sessions.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
  await closeAll();
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  everywhere.max = 0;
  // Every handshake ended, so no slot is held, and nothing waits.
  expect(dials.active()).toBe(0);
  expect(dials.waiting).toBe(0);
});

const until = async (ok: () => boolean, what: string) => {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
};

describe("bounded handshakes", () => {
  it("16 logins to one host at maxConcurrentDials 3: never more than 3 unauthenticated at the server, all connect", async () => {
    const h = await host({ authDelayMs: 20 });
    const ss = Array.from({ length: 16 }, (_, i) =>
      session(connection(h.port, { user: `u${i}`, maxConcurrentDials: 3 })),
    );
    await Promise.all(ss.map((s) => s.connect()));
    expect(h.maxPreauth).toBe(3);
    expect(h.users).toHaveLength(16);
    expect(ss.map((s) => [s.stats.connections, s.stats.dialFailures])).toEqual(ss.map(() => [1, 0]));
  });

  it(`${MAX_DIALS + 4} hosts at once: at most ${MAX_DIALS} handshakes in flight in the process`, async () => {
    const hs = await Promise.all(Array.from({ length: MAX_DIALS + 4 }, () => host({ authDelayMs: 30 })));
    await Promise.all(hs.map((h) => session(connection(h.port)).connect()));
    expect(everywhere.max).toBe(MAX_DIALS);
    expect(hs.map((h) => h.users.length)).toEqual(hs.map(() => 1));
  });

  it("through a jump host at maxConcurrentDials 2: never more than 2 handshakes through it, one connection to it", async () => {
    const jump = await host();
    const target = await host({ authDelayMs: 20 });
    const via = { ...connection(jump.port, { user: "jumper" }), maxConcurrentDials: 2 };
    const { sudo: _s, ...proxy } = via;
    const ss = Array.from({ length: 8 }, (_, i) => session(connection(target.port, { user: `t${i}`, proxy })));
    await Promise.all(ss.map((s) => s.connect()));
    expect(target.maxPreauth).toBe(2);
    expect(target.users).toHaveLength(8);
    expect(jump.users).toEqual(["jumper"]);
  });

  it("a handshake that fails or times out frees its slot: the next dial to that host goes ahead", async () => {
    const h = await host();
    // A host that accepts TCP and never says a word: the handshake times out (perDialTimeout).
    const silentPort = newPort();
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(socketOf(silentPort), r));
    try {
      const mute = connection(silentPort, { perDialTimeout: 0.3, maxConcurrentDials: 1 });
      const results = await Promise.allSettled([session(mute).connect(), session(mute).connect()]);
      expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
      expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/no SSH handshake within 0.3s/);
      // Nothing listens: the dial fails at once.
      await expect(session(connection(newPort(), { maxConcurrentDials: 1 })).connect()).rejects.toThrow(
        /cannot connect/,
      );
      expect(dials.active()).toBe(0);
      await session(connection(h.port, { maxConcurrentDials: 1 })).connect();
    } finally {
      silent.close();
    }
  });

  it("state written before maxConcurrentDials existed dials with the default", async () => {
    const h = await host();
    const { maxConcurrentDials: _m, ...old } = connection(h.port);
    await session(old as CheckedConnection).connect();
    expect(h.users).toEqual(["root"]);
  });
});

describe("dialling in advance", () => {
  it("foreseeing a host opens nothing; the first change dials it, and its first command uses that connection", async () => {
    const h = await host();
    const conn = connection(h.port, { hostKey: h.publicKey });
    foresee(conn);
    foresee({ ...conn, host: UNKNOWN }); // not known yet (preview): left out
    foresee(undefined);
    expect(foreseenCount()).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(h.connections).toBe(0);
    dialForeseen();
    expect(foreseenCount()).toBe(0);
    await until(() => h.users.length === 1, "the early dial");
    const s = getSession(conn);
    await s.run("true");
    expect(s.stats.connections).toBe(1);
    expect(h.connections).toBe(1);
  });

  it("a dial made in advance yields its turn to a dial that someone waits for", async () => {
    const h = await host({ authDelayMs: 20 });
    const at = (user: string) => connection(h.port, { user, maxConcurrentDials: 1, hostKey: h.publicKey });
    for (const u of ["early1", "early2", "early3"]) foresee(at(u));
    dialForeseen();
    const urgent = getSession(at("urgent")).connect();
    // early1 got the free slot at once; then the one someone waits for, then the other early ones.
    await urgent;
    await until(() => h.users.length === 4, "every dial");
    expect(h.users).toEqual(["early1", "urgent", "early2", "early3"]);
    expect(h.maxPreauth).toBe(1);
  });

  it("a dial made in advance that someone then asks for goes first from then on", async () => {
    const h = await host({ authDelayMs: 20 });
    const at = (user: string) => connection(h.port, { user, maxConcurrentDials: 1, hostKey: h.publicKey });
    for (const u of ["early1", "early2", "early3"]) foresee(at(u));
    dialForeseen();
    await getSession(at("early3")).run("true");
    await until(() => h.users.length === 3, "every dial");
    expect(h.users).toEqual(["early1", "early3", "early2"]);
  });
});
