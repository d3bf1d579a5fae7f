import * as net from "node:net";
import { createHmac, randomBytes } from "node:crypto";
import { constants as osConstants } from "node:os";
import { Client, utils } from "ssh2";
import type { ClientChannel, ConnectConfig } from "ssh2";
import type { Duplex } from "node:stream";
import { DIALS_PER_HOST } from "../rules";
import type { CheckedConnection, CheckedJumpHost } from "../rules";
import type { HostKeyInfo, Logger, Origin, RunOptions, RunResult, SessionStats } from "./types";
import { ConnectionError, HostKeyError, RemoteError, SudoError, redact, redactError, scrubError } from "./errors";
import { describeHostKey, parseExpectedHostKey, pinHostKey, pinsOf, unmetPin } from "./hostkey";
import type { Pin } from "./hostkey";
import { dials } from "./dials";
import { asksPassword } from "./prompts";
import type { Prompt } from "./prompts";
import type { DialSlot } from "./dials";

/** Channels open at once per connection: well below sshd's default MaxSessions of 10. */
export const MAX_CHANNELS = 4;
/** How often a refused channel open ("no more sessions") is retried before it counts as a failure. */
const CHANNEL_OPEN_RETRIES = 10;
/** Dial retry delay: 1s, 2s, 3s, ... at most 5s. */
const dialDelayMs = (failures: number) => Math.min(failures, 5) * 1000;

/**
 * The command line sent to sshd, which runs it through the user's login shell (`<shell> -c <line>`): a fixed
 * one, plain words that bash, dash, zsh, fish and busybox ash all read the same, so that no login shell's
 * quoting rules come between a script and sh. Every script goes to this sh on its stdin.
 */
const shellCommand = (sudo: boolean) => (sudo ? "sudo -n -- /bin/sh -s" : "sh -s");

/** What `run` writes to sh's stdin: the script, byte for byte, as one brace group, which sh reads to its
 * end before it runs any of it (so a command in it that reads stdin finds the end of input, never the
 * rest of the script). */
const wholeScript = (script: string) => `{\n${script}\n}\n`;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const pool = new Map<string, Session>();

/** "host:port", with an IPv6 address in brackets. */
function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** A jump host is dialled like any host, never through sudo. */
const jumpConnection = (j: CheckedJumpHost): CheckedConnection => ({ ...j, sudo: false });

/** Keys the credentials' part of the pool key: a hash no one outside this process can brute-force,
 * however short the password. */
const POOL_SALT = randomBytes(32);

/** The pool key: one connection per (user, host, port, credentials, expected host key, sudo, proxy chain). */
export function sessionKey(conn: CheckedConnection): string {
  const creds = createHmac("sha256", POOL_SALT)
    .update(
      JSON.stringify([
        conn.password ?? null,
        conn.privateKey ?? null,
        conn.privateKeyPassword ?? null,
        conn.agentSocketPath ?? null,
      ]),
    )
    .digest("hex")
    .slice(0, 16);
  const hk = conn.hostKey ? ` hostkey=${conn.hostKey.trim()}` : "";
  const via = conn.proxy ? ` via ${sessionKey(jumpConnection(conn.proxy))}` : "";
  return `${conn.user}@${hostPort(conn.host, conn.port)} creds=${creds}${conn.sudo ? " sudo" : ""}${hk}${via}`;
}

/** Where a connection goes, whoever logs in: "host:port", then " via " and the jump host's address.
 * Host keys are pinned per address (see `pinHostKey`). */
export function addressOf(conn: { host: string; port: number; proxy?: { host: string; port: number } }): string {
  return hostPort(conn.host, conn.port) + (conn.proxy ? ` via ${addressOf(conn.proxy)}` : "");
}

/**
 * The pooled session for a connection: one SSH connection per (host, port, user, credentials, proxy chain)
 * per process, shared by every caller. It connects lazily, on first use, and reconnects after a close.
 * `log` becomes the session's logger (the latest caller's, when shared).
 */
export function getSession(conn: CheckedConnection, log?: Logger): Session {
  const key = sessionKey(conn);
  let s = pool.get(key);
  if (!s) {
    s = new Session(conn, log ?? {});
    pool.set(key, s);
  } else if (log) {
    s.log = log;
  }
  return s;
}

/** Closes every pooled connection and empties the pool (tests, benchmarks, shutdown). */
export async function closeAll(): Promise<void> {
  const sessions = [...pool.values()];
  pool.clear();
  // Targets first, then the jump hosts they run through.
  await Promise.all(sessions.filter((s) => s.args.proxy).map((s) => s.close()));
  await Promise.all(sessions.filter((s) => !s.args.proxy).map((s) => s.close()));
}

type Ssh2Error = Error & { level?: string; code?: string | number };
/** ssh2's own keepalive timer is never unref'd; ours uses its protocol's ping and reply queue. */
type KeepaliveInternals = { _protocol?: { ping(): void }; _callbacks?: (() => void)[] };

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

const isChannelOpenFailure = (e: unknown) =>
  e instanceof Error && /Channel open failure|no more sessions/i.test(e.message);
const isNotConnected = (e: unknown) =>
  e instanceof Error && /^(Not connected|No response from server)$/.test(e.message);

/** One pooled SSH connection (re-established as needed) and everything run over it. */
export class Session {
  readonly key: string;
  /** "user@host:port", for messages. */
  readonly target: string;
  /** Where it connects to (host:port via the jump host's address): host keys are pinned per address. */
  readonly address: string;
  readonly stats: SessionStats = { connections: 0, dialFailures: 0, channels: 0, channelRetries: 0 };
  /** The host key of the current (or last) connection. */
  hostKey?: HostKeyInfo;
  /** The jump host's session, when there is one. */
  readonly proxy?: Session;

  private client?: Client;
  private connecting?: Promise<Client>;
  /** The dial under way was started in advance (`dialEarly`) and nobody waits for it yet. */
  private early = false;
  private sock?: net.Socket;
  private originPromise?: Promise<Origin>;
  private refs = 0;
  private kaTimer?: NodeJS.Timeout;
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly secrets: (string | undefined)[];
  private sink: Logger;

  constructor(
    readonly args: CheckedConnection,
    log: Logger,
  ) {
    this.key = sessionKey(args);
    this.target = `${args.user}@${hostPort(args.host, args.port)}`;
    this.address = addressOf(args);
    this.secrets = [];
    for (const c of [args, args.proxy]) this.secrets.push(c?.password, c?.privateKey, c?.privateKeyPassword);
    this.sink = log;
    if (args.proxy) this.proxy = getSession(jumpConnection(args.proxy), log);
  }

  /**
   * Starts connecting in advance, for work that is coming (see ../early): the handshake yields its turn
   * to dials that someone waits for, until someone does. A failure is left for that first real use,
   * which dials again; a connection nobody uses is idle like any pooled one (it does not keep Node running).
   */
  dialEarly(): void {
    this.verifiedClient(true).catch((e) =>
      this.log.debug?.(
        `Early dial to ${this.target} failed (the first command will dial again): ${(e as Error).message}`,
      ),
    );
  }

  /** Where log lines go; every line is redacted on its way there. */
  get log(): Logger {
    const line = (level: keyof Logger) => (m: string) => this.sink[level]?.(redact(m, this.secrets));
    return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
  }
  set log(log: Logger) {
    this.sink = log;
  }

  /**
   * Connects now if not connected (otherwise the first `run` does); resolves with the host key seen.
   * A connection made before a pin was added for this address is checked against it here.
   */
  async connect(): Promise<HostKeyInfo> {
    this.ref();
    try {
      await this.verifiedClient();
    } finally {
      this.unref();
    }
    return this.hostKey as HostKeyInfo;
  }

  /**
   * Runs `script` in sh, which reads it on stdin (see shellCommand). A non-zero exit is a result, not an
   * error; a command that could not be started or whose connection was lost is a RemoteError, and a
   * sudo that wants a password (or is not allowed) is a SudoError.
   */
  async run(script: string, opts: RunOptions = {}): Promise<RunResult> {
    const sudo = opts.sudo ?? this.args.sudo;
    this.ref();
    try {
      await this.acquire();
      try {
        const { done } = await this.openExec(shellCommand(sudo), (ch) => ({ done: this.collect(ch, script) }));
        const result = await done;
        if (sudo && result.code !== 0) this.checkSudo(script, result);
        return result;
      } finally {
        this.release();
      }
    } finally {
      this.unref();
    }
  }

  /**
   * Opens a long-lived channel running sh (through `sudo -n` like `run`, see shellCommand), for a
   * conversation: scripts go to its stdin, their output comes from its stdout. It holds one of the
   * connection's channel slots, and keeps the process alive, until `release()` is called (call it once
   * the channel has closed; calling it again does nothing).
   */
  async openChannel(opts: { sudo?: boolean } = {}): Promise<{ channel: ClientChannel; release: () => void }> {
    const command = shellCommand(opts.sudo ?? this.args.sudo);
    this.ref();
    try {
      await this.acquire();
    } catch (e) {
      this.unref();
      throw e;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.release();
      this.unref();
    };
    try {
      const channel = await this.openExec(command, (ch) => ch);
      return { channel, release };
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Like `run`, but a non-zero exit is a RemoteError carrying the command, exit status and output. */
  async mustRun(script: string, opts: RunOptions = {}): Promise<RunResult> {
    const r = await this.run(script, opts);
    if (r.code === 0) return r;
    const why = redact(
      r.stderr.trim().split("\n").slice(-3).join("; ") || r.stdout.trim().split("\n").slice(-1)[0] || "no output",
      this.secrets,
    );
    throw new RemoteError(
      `command on ${this.target} exited with status ${r.code}: ${why}`,
      redact(script, this.secrets),
      r.code,
      redact(r.stdout, this.secrets),
      redact(r.stderr, this.secrets),
    );
  }

  /** Where this connection comes from as the host sees it ($SSH_CONNECTION), cached per connection. */
  origin(): Promise<Origin> {
    if (!this.originPromise) {
      const p = this.run('printf "%s" "$SSH_CONNECTION"', { sudo: false }).then((r) => {
        const f = r.stdout.trim().split(/\s+/);
        if (r.code !== 0 || f.length !== 4) {
          throw new RemoteError(
            `cannot tell where the connection to ${this.target} comes from: $SSH_CONNECTION is "${r.stdout.trim()}"`,
            'printf "%s" "$SSH_CONNECTION"',
            r.code,
            r.stdout,
            r.stderr,
          );
        }
        return { clientAddress: f[0], clientPort: Number(f[1]), serverAddress: f[2], serverPort: Number(f[3]) };
      });
      this.originPromise = p;
      p.catch(() => {
        if (this.originPromise === p) this.originPromise = undefined;
      });
    }
    return this.originPromise;
  }

  /** Closes the connection (the next `run` reconnects) and removes the session from the pool. */
  async close(): Promise<void> {
    if (pool.get(this.key) === this) pool.delete(this.key);
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    this.originPromise = undefined;
    if (!client) return;
    // Keep the process alive until the close completes: an idle session's socket is unref'd.
    this.sock?.ref();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.sock?.destroy();
        resolve();
      }, 2000);
      timer.unref();
      client.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      client.end();
    });
  }

  // --- keeping the process alive only while something is in flight -----------------------------

  private ref(): void {
    if (++this.refs === 1) {
      this.sock?.ref();
      this.proxy?.ref();
      this.keepalive();
    }
  }

  private unref(): void {
    if (this.refs > 0 && --this.refs === 0) {
      this.sock?.unref();
      this.proxy?.unref();
      this.keepalive();
    }
  }

  /**
   * SSH keepalive while something is in flight (and none when idle, so an idle session never keeps
   * the process alive): a keepalive request every perDialTimeout/3 seconds; three unanswered in a
   * row mean the link went silent, and the connection is torn down (its channels fail at once).
   */
  private keepalive(): void {
    clearInterval(this.kaTimer);
    this.kaTimer = undefined;
    const client = this.client as (Client & KeepaliveInternals) | undefined;
    if (this.refs === 0 || !client?._protocol) return;
    let unanswered = 0;
    const timer = setInterval(
      () => {
        if (this.client !== client) return clearInterval(timer);
        if (++unanswered > 3) {
          clearInterval(timer);
          this.log.warn?.(`Connection to ${this.target}: no answer to 3 keepalives, closing it`);
          client.destroy();
          return;
        }
        client._callbacks?.push(() => {
          unanswered = 0;
        });
        client._protocol?.ping();
      },
      Math.max(1000, (this.args.perDialTimeout * 1000) / 3),
    );
    timer.unref();
    this.kaTimer = timer;
  }

  // --- channels ---------------------------------------------------------------------------------

  private acquire(): Promise<void> {
    if (this.active < MAX_CHANNELS) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  /**
   * Opens an exec channel, retrying refused opens. The output is collected from within ssh2's callback:
   * a short command's output, exit status and close can arrive in the same read as the open confirmation,
   * before any awaiting code would run.
   */
  private async openExec<T>(command: string, onOpen: (ch: ClientChannel) => T): Promise<T> {
    let refusals = 0;
    let reconnects = 0;
    for (;;) {
      const client = await this.getClient();
      try {
        const started = await new Promise<T>((resolve, reject) => {
          client.exec(command, (err, channel) => (err ? reject(err) : resolve(onOpen(channel))));
        });
        this.stats.channels++;
        return started;
      } catch (err) {
        if (isChannelOpenFailure(err) && refusals < CHANNEL_OPEN_RETRIES) {
          refusals++;
          this.stats.channelRetries++;
          this.log.debug?.(
            `Channel open on ${this.target} refused (${(err as Error).message}): retry ${refusals}/${CHANNEL_OPEN_RETRIES}`,
          );
          await sleep(Math.min(50 * 2 ** (refusals - 1), 1000));
          continue;
        }
        if (isNotConnected(err) && reconnects < 1) {
          // The connection died while idle; the command never started, so it is safe to reconnect and retry.
          reconnects++;
          if (this.client === client) this.client = undefined;
          this.log.debug?.(`Connection to ${this.target} was closed: reconnecting`);
          continue;
        }
        const cause = scrubError(err, this.secrets);
        throw new RemoteError(
          `could not start a command on ${this.target}: ${cause.message}`,
          redact(command, this.secrets),
          null,
          "",
          "",
          { cause },
        );
      }
    }
  }

  /** The result of `script` on a channel that runs sh: the script is written to its stdin (see wholeScript). */
  private collect(ch: ClientChannel, script: string): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let code: number | null = null;
      let failure: Error | undefined;
      ch.on("data", (d: Buffer) => out.push(d));
      ch.stderr.on("data", (d: Buffer) => err.push(d));
      ch.on("exit", (c: number | null, signal?: string) => {
        if (typeof c === "number") code = c;
        else if (signal) code = 128 + ((osConstants.signals as Record<string, number>)[`SIG${signal}`] ?? 0);
      });
      ch.on("error", (e: Error) => (failure = e));
      ch.on("close", () => {
        const stdout = Buffer.concat(out).toString("utf8");
        const stderr = Buffer.concat(err).toString("utf8");
        if (code === null) {
          const cause = failure ? scrubError(failure, this.secrets) : undefined;
          reject(
            new RemoteError(
              `the connection to ${this.target} was lost while a command ran (it may or may not have completed)` +
                (cause ? `: ${cause.message}` : ""),
              redact(script, this.secrets),
              null,
              redact(stdout, this.secrets),
              redact(stderr, this.secrets),
              cause ? { cause } : undefined,
            ),
          );
        } else {
          resolve({ code, stdout, stderr });
        }
      });
      ch.end(wholeScript(script));
    });
  }

  /** A SudoError when a command run through sudo failed because of sudo itself (for callers that
   * hold a channel of their own, like a conversation opened with openChannel). */
  sudoFailure(command: string, r: RunResult): SudoError | undefined {
    const who = this.target;
    const user = this.args.user;
    let message: string | undefined;
    if (/sudo: (a )?password is required|sudo: a terminal is required|sudo: no tty present/.test(r.stderr)) {
      message =
        `sudo on ${who} asks for a password: ${user} needs passwordless sudo for /bin/sh ` +
        `(e.g. "${user} ALL=(root) NOPASSWD: /bin/sh" in /etc/sudoers.d/), or connect as root`;
    } else if (/is not in the sudoers file|is not allowed to execute|may not run sudo/.test(r.stderr)) {
      message =
        `${user} may not run /bin/sh as root through sudo on ${who}: it needs passwordless sudo for /bin/sh ` +
        `(e.g. "${user} ALL=(root) NOPASSWD: /bin/sh" in /etc/sudoers.d/), or connect as root`;
    } else if (r.code === 127 && /sudo: (command )?not found|sudo: No such file/.test(r.stderr)) {
      message = `sudo is not installed on ${who}: install it and give ${user} passwordless sudo for /bin/sh, or connect as root`;
    }
    return message === undefined
      ? undefined
      : new SudoError(
          message,
          redact(command, this.secrets),
          r.code,
          redact(r.stdout, this.secrets),
          redact(r.stderr, this.secrets),
        );
  }

  private checkSudo(command: string, r: RunResult): void {
    const err = this.sudoFailure(command, r);
    if (err) throw err;
  }

  // --- connecting -------------------------------------------------------------------------------

  private getClient(early = false): Promise<Client> {
    if (this.client) return Promise.resolve(this.client);
    if (!early) this.wanted();
    if (!this.connecting) {
      this.early = early;
      const p = this.dial().catch((e) => {
        throw redactError(e, this.secrets);
      });
      this.connecting = p;
      const clear = () => {
        if (this.connecting === p) this.connecting = undefined;
      };
      p.then(clear, clear);
    }
    return this.connecting;
  }

  /** Someone waits for this connection: its dial, and its jump host's, no longer yield to others. */
  private wanted(): void {
    this.early = false;
    this.proxy?.wanted();
  }

  /** The sshds a handshake involves, with the connections' limits: this host's, and its jump host's. */
  private dialSlots(): DialSlot[] {
    // State written before maxConcurrentDials existed has none: the default.
    const slot = (s: Session) => ({ key: s.address, limit: s.args.maxConcurrentDials ?? DIALS_PER_HOST });
    return this.proxy ? [slot(this), slot(this.proxy)] : [slot(this)];
  }

  /** The connected client, its host key checked again against pins added since it connected. */
  private async verifiedClient(early = false): Promise<Client> {
    const client = await this.getClient(early);
    const unmet = this.hostKey && unmetPin(this.hostKey, this.pins());
    if (unmet) {
      const seen = this.hostKey as HostKeyInfo;
      await this.close();
      throw new HostKeyError(this.target, seen, unmet.fingerprint, unmet.source);
    }
    return client;
  }

  /** The keys this host must present: the hostKey given, or else every key pinned for its address. */
  private pins(): Pin[] {
    const given = this.args.hostKey;
    if (given) return [{ fingerprint: parseExpectedHostKey(given).fingerprint, source: "the hostKey given" }];
    return pinsOf(this.address);
  }

  /** Checks what can be checked before touching the network; failures here are never retried. */
  private preflight(): void {
    const a = this.args;
    if (a.hostKey) {
      try {
        parseExpectedHostKey(a.hostKey);
      } catch (e) {
        throw new ConnectionError(`${(e as Error).message} (for ${this.target})`, "config", this.target);
      }
    }
    if (a.privateKey) {
      const parsed = utils.parseKey(a.privateKey, a.privateKeyPassword);
      if (parsed instanceof Error) {
        const msg = parsed.message;
        let text: string;
        if (/no passphrase/i.test(msg)) text = `the privateKey for ${this.target} is encrypted: set privateKeyPassword`;
        else if (/bad passphrase|decrypt|integrity check/i.test(msg))
          text = `privateKeyPassword does not decrypt the privateKey for ${this.target}`;
        else
          text = `the privateKey for ${this.target} cannot be read (${redact(msg, this.secrets)}): give the private key itself (PEM or OpenSSH format), not a path or a public key`;
        throw new ConnectionError(text, "config", this.target, { cause: scrubError(parsed, this.secrets) });
      }
    }
    if (!a.privateKey && !a.password && !this.agentPath()) {
      throw new ConnectionError(
        `no credentials for ${this.target}: set privateKey, password or agentSocketPath (or run an ssh-agent with SSH_AUTH_SOCK set)`,
        "config",
        this.target,
      );
    }
  }

  private agentPath(): string | undefined {
    return this.args.agentSocketPath || process.env.SSH_AUTH_SOCK || undefined;
  }

  private async dial(): Promise<Client> {
    this.preflight();
    const limit = this.args.dialErrorLimit;
    const via = this.args.proxy
      ? ` (via ${this.args.proxy.user}@${hostPort(this.args.proxy.host, this.args.proxy.port)})`
      : "";
    const where = hostPort(this.args.host, this.args.port) + via;
    this.ref();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.dialOnce();
        } catch (err) {
          if (!(err instanceof DialFailure)) throw err;
          this.stats.dialFailures++;
          if (limit >= 0 && attempt >= Math.max(limit, 1)) {
            throw new ConnectionError(
              `cannot connect to ${this.target}${via}: ${attempt} dial attempt${attempt === 1 ? "" : "s"} failed, the last with ${err.reason}` +
                explainDialReason(err.reason),
              "dial",
              this.target,
              { cause: scrubError(err.original, this.secrets) },
            );
          }
          const delay = dialDelayMs(attempt);
          this.log.warn?.(
            `Dial ${attempt}${limit >= 0 ? `/${limit}` : ""} to ${where} failed: ${err.reason}: retrying in ${delay / 1000}s`,
          );
          await sleep(delay);
        }
      }
    } finally {
      this.unref();
    }
  }

  /** A transport to the target: a TCP socket with Nagle off, or a channel through the jump host's client. */
  private async openTransport(proxyClient: Client | undefined): Promise<{ stream: Duplex; tcp?: net.Socket }> {
    const a = this.args;
    if (!proxyClient) {
      const tcp = net.connect({ host: a.host, port: a.port });
      tcp.setNoDelay(true);
      tcp.setKeepAlive(true, 30_000);
      return { stream: tcp, tcp };
    }
    const stream = await new Promise<Duplex>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(
          new DialFailure(
            `no answer from ${a.host}:${a.port} through the jump host within ${a.perDialTimeout}s`,
            new Error("forwardOut timeout"),
          ),
        );
      }, a.perDialTimeout * 1000);
      try {
        proxyClient.forwardOut("127.0.0.1", 0, a.host, a.port, (err, ch) => {
          clearTimeout(timer);
          if (done) {
            ch?.destroy();
            return;
          }
          done = true;
          if (err) {
            const why = err.message.replace(/^\(SSH\) Channel open failure: ?/, "") || "refused";
            reject(new DialFailure(`the jump host could not open a connection to it: ${why}`, err));
          } else resolve(ch);
        });
      } catch (e) {
        clearTimeout(timer);
        reject(new DialFailure(`the jump host connection failed: ${(e as Error).message}`, e));
      }
    });
    return { stream };
  }

  /**
   * One dial: a transport, then the SSH handshake (host key first) and authentication over it, holding
   * a dial slot (./dials) from the transport's open until the handshake has ended, however it ended.
   */
  private async dialOnce(): Promise<Client> {
    // The jump host's connection first, holding no slot (its own dial takes one): its key is checked
    // (and its pins met) before anything goes through it.
    const proxyClient = await this.proxy?.verifiedClient(this.early);
    const release = await dials.acquire(this.dialSlots(), () => !this.early);
    try {
      const { stream, tcp } = await this.openTransport(proxyClient);
      const attempt: Attempt = { methods: this.authMethods(), tried: [] };
      const client = new Client();
      client.on("keyboard-interactive", this.keyboardAnswer(attempt));
      return await this.handshake(client, this.dialConfig(stream, attempt), attempt, stream, tcp);
    } finally {
      release();
    }
  }

  /** The authentication methods to offer, in order, from the credentials given. */
  private authMethods(): string[] {
    const methods: string[] = [];
    if (this.args.privateKey) methods.push("publickey");
    if (this.agentPath()) methods.push("agent");
    if (this.args.password) methods.push("password", "keyboard-interactive");
    return methods;
  }

  /**
   * ssh2's configuration for one handshake. The host key is checked in `hostVerifier`, which ssh2 calls
   * during key exchange, before the first authentication request: a host that fails it never sees a
   * user name, password, key signature or agent request.
   */
  private dialConfig(stream: Duplex, attempt: Attempt): ConnectConfig {
    const a = this.args;
    return {
      sock: stream as ConnectConfig["sock"],
      username: a.user,
      readyTimeout: a.perDialTimeout * 1000,
      keepaliveInterval: 0, // ssh2's keepalive timer would keep the process alive; TCP keepalive is on instead
      privateKey: a.privateKey,
      passphrase: a.privateKeyPassword,
      password: a.password,
      agent: this.agentPath(),
      tryKeyboard: !!a.password,
      hostVerifier: (key: Buffer) => {
        attempt.seen = describeHostKey(key);
        attempt.mismatch = unmetPin(attempt.seen, this.pins());
        return !attempt.mismatch;
      },
      authHandler: (methodsLeft, _partial, next) => {
        if (methodsLeft) attempt.serverAllows = methodsLeft;
        while (attempt.methods.length) {
          const m = attempt.methods.shift() as string;
          const base = m === "agent" ? "publickey" : m;
          if (methodsLeft && !methodsLeft.includes(base as never)) continue;
          attempt.tried.push(m);
          return next(m as never);
        }
        return next(false as never);
      },
    };
  }

  /**
   * Keyboard-interactive: the password goes to one prompt that asks for the password (asksPassword), once.
   * Anything else (a one-time password or code, a question, several prompts, a second round) is declined
   * with empty answers, and named in the error if authentication fails.
   */
  private keyboardAnswer(attempt: Attempt) {
    return (_name: string, _instructions: string, _lang: string, prompts: Prompt[], finish: (r: string[]) => void) => {
      if (prompts.length === 0) return finish([]);
      if (asksPassword(prompts) && !attempt.answered && this.args.password) {
        attempt.answered = true;
        return finish([this.args.password]);
      }
      attempt.declined = prompts.map((p) => JSON.stringify(p.prompt.trim().slice(0, 60))).join(", ");
      finish(prompts.map(() => ""));
    };
  }

  /** Connects the client over the transport and settles with it (ready) or with what went wrong. */
  private handshake(
    client: Client,
    config: ConnectConfig,
    attempt: Attempt,
    stream: Duplex,
    tcp: net.Socket | undefined,
  ): Promise<Client> {
    return new Promise<Client>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        client.end();
        stream.destroy();
        reject(e);
      };
      client.on("error", (err: Ssh2Error) => {
        if (settled) return this.log.debug?.(`Connection to ${this.target}: ${err.message}`);
        if (err.level === "agent") {
          this.log.debug?.(`ssh-agent at ${config.agent} could not be used for ${this.target}: ${err.message}`);
          return;
        }
        fail(this.failureOf(err, attempt));
      });
      client.on("close", () => {
        if (this.client === client) {
          this.client = undefined;
          this.originPromise = undefined;
          this.log.debug?.(`Connection to ${this.target} closed`);
        }
        if (!settled) fail(new DialFailure("connection closed before the SSH handshake", new Error("closed")));
      });
      client.on("ready", () => {
        if (settled) return;
        settled = true;
        const seen = attempt.seen as HostKeyInfo;
        this.client = client;
        this.sock = tcp;
        this.hostKey = seen;
        // The first key seen at this address is required from then on, in this process.
        if (!this.args.hostKey && pinsOf(this.address).length === 0)
          pinHostKey(this.address, seen.fingerprint, `the key it presented at its first connection in this run`);
        this.stats.connections++;
        if (this.refs === 0) tcp?.unref();
        else this.keepalive();
        this.log.debug?.(`Connected to ${this.target} (host key ${seen.fingerprint})`);
        resolve(client);
      });
      try {
        client.connect(config);
      } catch (e) {
        fail(
          new ConnectionError(
            `cannot connect to ${this.target}: ${redact((e as Error).message, this.secrets)}`,
            "config",
            this.target,
          ),
        );
      }
    });
  }

  /** What a handshake error means: the wrong host, refused credentials, or a dial worth retrying. */
  private failureOf(err: Ssh2Error, attempt: Attempt): Error {
    if (attempt.mismatch && attempt.seen)
      return new HostKeyError(this.target, attempt.seen, attempt.mismatch.fingerprint, attempt.mismatch.source);
    if (err.level === "client-authentication") {
      const allows = attempt.serverAllows ? `; the server accepts: ${attempt.serverAllows.join(", ")}` : "";
      const declined = attempt.declined
        ? `; keyboard-interactive asked ${attempt.declined}, which is not a password prompt, so it was not answered`
        : "";
      return new ConnectionError(
        `authentication as ${this.target} failed (tried: ${attempt.tried.join(", ") || "nothing usable"}${allows}${declined}). ` +
          `Check user, and that the key is in ~${this.args.user}/.ssh/authorized_keys or the password is right`,
        "auth",
        this.target,
        { cause: scrubError(err, this.secrets) },
      );
    }
    return new DialFailure(describeDialError(err, this.args.perDialTimeout), err);
  }
}

/** What one handshake learns along the way, for its outcome and its error messages. */
interface Attempt {
  /** Authentication methods not tried yet. */
  methods: string[];
  tried: string[];
  serverAllows?: string[];
  /** The host key the server presented, and the pin it failed, if any. */
  seen?: HostKeyInfo;
  mismatch?: Pin;
  /** Keyboard-interactive: the password was given to a password prompt (once), or prompts were declined. */
  answered?: boolean;
  declined?: string;
}
