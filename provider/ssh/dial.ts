// Dialling: a transport (TCP, or a channel through the jump host), the SSH handshake over it with the
// configuration of ./dial-config, and retries of what a retry may fix. It connects and reports what it
// connected; the session adopts the connection (see Session).
import * as net from "node:net";
import type { Duplex } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { Client, utils } from "ssh2";
import { isUnknown } from "../rules";
import type { CheckedConnection, CheckedJumpHost } from "../rules";
import { withDeadline } from "../util";
import { newAttempt, keyboardAnswer, sshConfig } from "./dial-config";
import type { Attempt } from "./dial-config";
import { dials } from "./dials";
import type { DialSlot } from "./dials";
import { ConnectionError, HostKeyError, redact, scrubError, secretsOf } from "./errors";
import { parseExpectedHostKey } from "./hostkey";
import type { Pin } from "./hostkey";
import { hostPort } from "./pool";
import type { HostKeyInfo, Logger, SessionStats } from "./types";

/** Dial retry delay: 1s, 2s, 3s, ... at most 5s. */
const dialDelayMs = (failures: number) => Math.min(failures, 5) * 1000;

type Ssh2Error = Error & { level?: string; code?: string | number };

/** What a dial needs to know of the session it dials for. */
export interface DialPlan {
  conn: CheckedConnection;
  /** "user@host:port", for messages. */
  target: string;
  secrets: readonly (string | undefined)[];
  log: Logger;
  /** The ssh-agent to use, if any (see agentPath). */
  agent: string | undefined;
  /** The keys the host must present, asked when it presents one. */
  pins: () => readonly Pin[];
  /** The sshds the handshake involves (see ./dials), and whether someone waits for it now. */
  slots: DialSlot[];
  urgent: () => boolean;
  /** The jump host's connection, its key checked against its pins; undefined without a jump host. */
  jump: () => Promise<Client | undefined>;
  /** Counts the failed attempts. */
  stats: SessionStats;
}

/** A connection made: the client (ready), its TCP socket (none through a jump host), the host key seen. */
export interface Connected {
  client: Client;
  sock?: net.Socket;
  hostKey: HostKeyInfo;
}

/** One dial attempt failed in a way that a retry may fix. */
class DialFailure extends Error {
  constructor(
    readonly reason: string,
    readonly original: unknown,
  ) {
    super(reason);
  }
}

function describeDialError(err: Ssh2Error, timeoutSec: number): string {
  if (err.level === "client-timeout") return `no SSH handshake within ${timeoutSec}s`;
  if (typeof err.code === "string" && /^E[A-Z]+$/.test(err.code)) return err.code;
  if (/Connection lost before handshake/.test(err.message)) return "connection closed before the SSH handshake";
  return err.message;
}

function explainDialReason(reason: string): string {
  if (/ECONNREFUSED/.test(reason)) return " (nothing listens on that port, or a firewall rejects the connection)";
  if (/EHOSTUNREACH|ENETUNREACH/.test(reason)) return " (no route to the host: check the address and the network)";
  if (/ENOTFOUND|EAI_AGAIN/.test(reason)) return " (the host name does not resolve)";
  if (/handshake within|ETIMEDOUT/.test(reason))
    return " (the host is down, or a firewall drops the packets; perDialTimeout sets the wait)";
  if (/before the SSH handshake|ECONNRESET/.test(reason))
    return " (sshd dropped the connection: it may be overloaded, see MaxStartups)";
  return "";
}

/** Why the privateKey (with privateKeyPassword) cannot be used, or undefined: it parses, or none is given.
 * Needs no network, so `check` (preview) asks it too. */
export function privateKeyProblem(
  a: { privateKey?: string; privateKeyPassword?: string },
  target: string,
  secrets: readonly (string | undefined)[],
): { text: string; cause: Error; passphrase: boolean } | undefined {
  if (!a.privateKey) return undefined;
  const parsed = utils.parseKey(a.privateKey, a.privateKeyPassword);
  if (!(parsed instanceof Error)) return undefined;
  const msg = parsed.message;
  const cause = scrubError(parsed, secrets);
  if (/no passphrase/i.test(msg))
    return { text: `the privateKey for ${target} is encrypted: set privateKeyPassword`, cause, passphrase: true };
  if (/bad passphrase|decrypt|integrity check/i.test(msg))
    return { text: `privateKeyPassword does not decrypt the privateKey for ${target}`, cause, passphrase: true };
  return {
    text: `the privateKey for ${target} cannot be read (${redact(msg, secrets)}): give the private key itself (PEM or OpenSSH format), not a path or a public key`,
    cause,
    passphrase: false,
  };
}

/** The private keys of a connection and of its jump host that are encrypted without the passphrase that
 * decrypts them, by property, for `check` (so preview finds them). Keys not known yet are skipped; a key
 * that cannot be read at all is left to the dial, which says why. */
export function unusableKeys(conn: CheckedConnection): { property: string; reason: string }[] {
  const secrets = secretsOf(conn);
  const hops: [string, CheckedConnection | CheckedJumpHost | undefined][] = [
    ["connection.privateKey", conn],
    ["connection.proxy.privateKey", conn.proxy],
  ];
  return hops.flatMap(([property, c]) => {
    if (!c || [c.privateKey, c.privateKeyPassword, c.host, c.user, c.port].some(isUnknown)) return [];
    const problem = privateKeyProblem(c, `${c.user}@${hostPort(c.host, c.port)}`, secrets);
    return problem?.passphrase ? [{ property, reason: problem.text }] : [];
  });
}

/** Checks what can be checked before touching the network; failures here are never retried. */
export function preflight(plan: DialPlan): void {
  const { conn: a, target, secrets } = plan;
  if (a.hostKey) {
    try {
      parseExpectedHostKey(a.hostKey);
    } catch (e) {
      throw new ConnectionError(`${(e as Error).message} (for ${target})`, "config", target);
    }
  }
  const unreadable = privateKeyProblem(a, target, secrets);
  if (unreadable) throw new ConnectionError(unreadable.text, "config", target, { cause: unreadable.cause });
  if (!a.privateKey && !a.password && !plan.agent) {
    throw new ConnectionError(
      `no credentials for ${target}: set privateKey, password or agentSocketPath (or run an ssh-agent with SSH_AUTH_SOCK set)`,
      "config",
      target,
    );
  }
}

/** Said once, at the first failed dial: how long the retries may take, and which settings bound it. */
function retryHint(a: CheckedConnection): string {
  const dials =
    a.dialErrorLimit < 0 ? "with no limit (dialErrorLimit -1)" : `up to dialErrorLimit (${a.dialErrorLimit}) dials`;
  return `; it keeps dialling ${dials}, each waiting up to perDialTimeout (${a.perDialTimeout}s): lower them in the connection to fail sooner`;
}

/** Dials until a dial succeeds, or fails in a way no retry fixes, or the connection's dialErrorLimit is reached. */
export async function dial(plan: DialPlan): Promise<Connected> {
  const { conn: a, target } = plan;
  const limit = a.dialErrorLimit;
  const via = a.proxy ? ` (via ${a.proxy.user}@${hostPort(a.proxy.host, a.proxy.port)})` : "";
  const where = hostPort(a.host, a.port) + via;
  for (let attempt = 1; ; attempt++) {
    try {
      return await dialOnce(plan);
    } catch (err) {
      if (!(err instanceof DialFailure)) throw err;
      plan.stats.dialFailures++;
      if (limit >= 0 && attempt >= Math.max(limit, 1)) {
        throw new ConnectionError(
          `cannot connect to ${target}${via}: ${attempt} dial attempt${attempt === 1 ? "" : "s"} failed, the last with ${err.reason}` +
            explainDialReason(err.reason),
          "dial",
          target,
          { cause: scrubError(err.original, plan.secrets) },
        );
      }
      const wait = dialDelayMs(attempt);
      plan.log.warn?.(
        `Dial ${attempt}${limit >= 0 ? `/${limit}` : ""} to ${where} failed: ${err.reason}: retrying in ${wait / 1000}s` +
          (attempt === 1 ? retryHint(a) : ""),
      );
      await delay(wait);
    }
  }
}

/**
 * One dial: a transport, then the SSH handshake (host key first) and authentication over it, holding
 * a dial slot (./dials) from the transport's open until the handshake has ended, however it ended.
 */
async function dialOnce(plan: DialPlan): Promise<Connected> {
  // The jump host's connection first, holding no slot (its own dial takes one): its key is checked
  // (and its pins met) before anything goes through it.
  const proxyClient = await plan.jump();
  const release = await dials.acquire(plan.slots, plan.urgent);
  try {
    const { stream, tcp } = await openTransport(plan.conn, proxyClient);
    const attempt = newAttempt(plan.conn, plan.agent);
    const client = new Client();
    client.on("keyboard-interactive", keyboardAnswer(attempt, plan.conn.password));
    const config = sshConfig(plan.conn, { sock: stream, agent: plan.agent, pins: plan.pins }, attempt);
    const hostKey = await handshake(plan, client, config, attempt, stream);
    return { client, sock: tcp, hostKey };
  } finally {
    release();
  }
}

/** A transport to the target: a TCP socket with Nagle off, or a channel through the jump host's client. */
async function openTransport(
  a: CheckedConnection,
  proxyClient: Client | undefined,
): Promise<{ stream: Duplex; tcp?: net.Socket }> {
  if (!proxyClient) {
    const tcp = net.connect({ host: a.host, port: a.port });
    tcp.setNoDelay(true);
    tcp.setKeepAlive(true, 30_000);
    return { stream: tcp, tcp };
  }
  const opened = new Promise<Duplex>((resolve, reject) => {
    try {
      proxyClient.forwardOut("127.0.0.1", 0, a.host, a.port, (err, ch) => {
        if (!err) return resolve(ch);
        const why = err.message.replace(/^\(SSH\) Channel open failure: ?/, "") || "refused";
        reject(new DialFailure(`the jump host could not open a connection to it: ${why}`, err));
      });
    } catch (e) {
      reject(new DialFailure(`the jump host connection failed: ${(e as Error).message}`, e));
    }
  });
  const expired = () =>
    new DialFailure(
      `no answer from ${a.host}:${a.port} through the jump host within ${a.perDialTimeout}s`,
      new Error("forwardOut timeout"),
    );
  try {
    return { stream: await withDeadline(opened, a.perDialTimeout * 1000, expired) };
  } catch (e) {
    // A channel that opens after the deadline is closed at once.
    opened.then(
      (ch) => ch.destroy(),
      () => {},
    );
    throw e;
  }
}

/** Connects the client over the transport; settles with the host key seen (ready) or with what went wrong. */
function handshake(
  plan: DialPlan,
  client: Client,
  config: ReturnType<typeof sshConfig>,
  attempt: Attempt,
  stream: Duplex,
): Promise<HostKeyInfo> {
  const { target, log } = plan;
  return new Promise<HostKeyInfo>((resolve, reject) => {
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      client.end();
      stream.destroy();
      reject(e);
    };
    client.on("error", (err: Ssh2Error) => {
      if (settled) return log.debug?.(`Connection to ${target}: ${err.message}`);
      if (err.level === "agent") {
        log.debug?.(`ssh-agent at ${config.agent} could not be used for ${target}: ${err.message}`);
        return;
      }
      fail(failureOf(plan, err, attempt));
    });
    client.on("close", () => {
      if (!settled) fail(new DialFailure("connection closed before the SSH handshake", new Error("closed")));
    });
    client.on("ready", () => {
      if (settled) return;
      settled = true;
      resolve(attempt.seen as HostKeyInfo);
    });
    try {
      client.connect(config);
    } catch (e) {
      fail(
        new ConnectionError(
          `cannot connect to ${target}: ${redact((e as Error).message, plan.secrets)}`,
          "config",
          target,
        ),
      );
    }
  });
}

/** What a handshake error means: the wrong host, refused credentials, or a dial worth retrying. */
function failureOf(plan: DialPlan, err: Ssh2Error, attempt: Attempt): Error {
  const { target } = plan;
  if (attempt.mismatch && attempt.seen)
    return new HostKeyError(target, attempt.seen, attempt.mismatch.fingerprint, attempt.mismatch.source);
  if (err.level === "client-authentication") {
    const allows = attempt.serverAllows ? `; the server accepts: ${attempt.serverAllows.join(", ")}` : "";
    const declined = attempt.declined
      ? `; keyboard-interactive asked ${attempt.declined}, which is not a password prompt, so it was not answered`
      : "";
    return new ConnectionError(
      `authentication as ${target} failed (tried: ${attempt.tried.join(", ") || "nothing usable"}${allows}${declined}). ` +
        `Check user, and that the key is in ~${plan.conn.user}/.ssh/authorized_keys or the password is right`,
      "auth",
      target,
      { cause: scrubError(err, plan.secrets) },
    );
  }
  return new DialFailure(describeDialError(err, plan.conn.perDialTimeout), err);
}
