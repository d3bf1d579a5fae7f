import type * as net from "node:net";
import type { Client, ClientChannel } from "ssh2";
import { DIALS_PER_HOST } from "../rules";
import type { CheckedConnection } from "../rules";
import { withDeadline } from "../util/deadline";
import { ChannelSlots, collect, openExec } from "./channels";
import type { ChannelHost } from "./channels";
import { dial, preflight } from "./dial";
import type { Connected, DialPlan } from "./dial";
import { agentPath } from "./dial-config";
import type { DialSlot } from "./dials";
import { HostKeyError, RemoteError, redact, redactError, secretsOf } from "./errors";
import type { SudoError } from "./errors";
import { parseExpectedHostKey, pinHostKey, pinsOf, unmetPin } from "./hostkey";
import type { Pin } from "./hostkey";
import { startKeepalive } from "./keepalive";
import { addressOf, hostPort, jumpConnection, leavePool, pooled, sessionKey } from "./pool";
import { shellCommand, sudoError } from "./sudo";
import type { HostKeyInfo, Logger, Origin, RunOptions, RunResult, SessionStats } from "./types";

/** How long a close waits for the server to end the connection before it drops the socket. */
const CLOSE_WAIT_MS = 2000;
/** What `origin` runs: the host's view of the connection. */
const SSH_CONNECTION = 'printf "%s" "$SSH_CONNECTION"';

/**
 * The pooled session for a connection: one SSH connection per (host, port, user, credentials, proxy chain)
 * per process, shared by every caller (see ./pool). It connects lazily, on first use, and reconnects after
 * a close. `log` becomes the session's logger (the latest caller's, when shared).
 */
export function getSession(conn: CheckedConnection, log?: Logger): Session {
  const session = pooled(sessionKey(conn), () => new Session(conn, log ?? {}));
  if (log) session.log = log;
  return session;
}

/** Where the connection comes from, from `origin`'s output; a RemoteError when it does not say. */
function originOf(r: RunResult, target: string): Origin {
  const f = r.stdout.trim().split(/\s+/);
  if (r.code !== 0 || f.length !== 4) {
    throw new RemoteError(
      `cannot tell where the connection to ${target} comes from: $SSH_CONNECTION is "${r.stdout.trim()}"`,
      SSH_CONNECTION,
      r.code,
      r.stdout,
      r.stderr,
    );
  }
  return { clientAddress: f[0], clientPort: Number(f[1]), serverAddress: f[2], serverPort: Number(f[3]) };
}

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
  private readonly slots = new ChannelSlots();
  private readonly secrets: (string | undefined)[];
  private sink: Logger;

  constructor(
    readonly args: CheckedConnection,
    log: Logger,
  ) {
    this.key = sessionKey(args);
    this.target = `${args.user}@${hostPort(args.host, args.port)}`;
    this.address = addressOf(args);
    this.secrets = secretsOf(args);
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
      await this.slots.acquire();
      try {
        const channels = this.channels();
        const { done } = await openExec(channels, shellCommand(sudo), (ch) => ({
          done: collect(channels, ch, script),
        }));
        const result = await done;
        const refused = sudo && result.code !== 0 ? this.sudoFailure(script, result) : undefined;
        if (refused) throw refused;
        return result;
      } finally {
        this.slots.release();
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
      await this.slots.acquire();
    } catch (e) {
      this.unref();
      throw e;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.slots.release();
      this.unref();
    };
    try {
      const channel = await openExec(this.channels(), command, (ch) => ch);
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
      const p = this.run(SSH_CONNECTION, { sudo: false }).then((r) => originOf(r, this.target));
      this.originPromise = p;
      p.catch(() => {
        if (this.originPromise === p) this.originPromise = undefined;
      });
    }
    return this.originPromise;
  }

  /** A SudoError when a command run through sudo failed because of sudo itself (for callers that
   * hold a channel of their own, like a conversation opened with openChannel). */
  sudoFailure(command: string, r: RunResult): SudoError | undefined {
    return sudoError({ target: this.target, user: this.args.user, secrets: this.secrets }, command, r);
  }

  /** Closes the connection (the next `run` reconnects) and removes the session from the pool. */
  async close(): Promise<void> {
    leavePool(this);
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    this.originPromise = undefined;
    if (!client) return;
    // Keep the process alive until the close completes: an idle session's socket is unref'd.
    this.sock?.ref();
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    client.end();
    const late = () => new Error(`no close from ${this.target} within ${CLOSE_WAIT_MS} ms`);
    await withDeadline(closed, CLOSE_WAIT_MS, late, { ref: false }).catch(() => this.sock?.destroy());
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

  /** Keepalives (see ./keepalive) every perDialTimeout/3 seconds while something is in flight, none when idle. */
  private keepalive(): void {
    clearInterval(this.kaTimer);
    this.kaTimer = undefined;
    const client = this.client;
    if (this.refs === 0 || !client) return;
    this.kaTimer = startKeepalive(
      client,
      Math.max(1000, (this.args.perDialTimeout * 1000) / 3),
      () => this.client === client,
      () => this.log.warn?.(`Connection to ${this.target}: no answer to 3 keepalives, closing it`),
    );
  }

  // --- connecting -------------------------------------------------------------------------------

  /** What opening a channel needs of this session (./channels). */
  private channels(): ChannelHost {
    return {
      target: this.target,
      secrets: this.secrets,
      log: this.log,
      stats: this.stats,
      client: () => this.getClient(),
      forget: (client) => {
        if (this.client === client) this.client = undefined;
      },
    };
  }

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

  /** Dials (./dial), holding the process alive while it does, and adopts the connection made. */
  private async dial(): Promise<Client> {
    const plan = this.dialPlan();
    preflight(plan);
    this.ref();
    try {
      return this.adopt(await dial(plan));
    } finally {
      this.unref();
    }
  }

  private dialPlan(): DialPlan {
    return {
      conn: this.args,
      target: this.target,
      secrets: this.secrets,
      log: this.log,
      agent: agentPath(this.args),
      pins: () => this.pins(),
      slots: this.dialSlots(),
      urgent: () => !this.early,
      // The jump host's connection, with its own pins met, before anything goes through it.
      jump: async () => this.proxy?.verifiedClient(this.early),
      stats: this.stats,
    };
  }

  /** The sshds a handshake involves, with the connections' limits: this host's, and its jump host's. */
  private dialSlots(): DialSlot[] {
    // State written before maxConcurrentDials existed has none: the default.
    const slot = (s: Session) => ({ key: s.address, limit: s.args.maxConcurrentDials ?? DIALS_PER_HOST });
    return this.proxy ? [slot(this), slot(this.proxy)] : [slot(this)];
  }

  /** Makes a new connection this session's: its client, socket and host key, and the first pin of its address. */
  private adopt({ client, sock, hostKey }: Connected): Client {
    client.on("close", () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.originPromise = undefined;
      this.log.debug?.(`Connection to ${this.target} closed`);
    });
    this.client = client;
    this.sock = sock;
    this.hostKey = hostKey;
    // The first key seen at this address is required from then on, in this process.
    if (!this.args.hostKey && pinsOf(this.address).length === 0)
      pinHostKey(this.address, hostKey.fingerprint, `the key it presented at its first connection in this run`);
    this.stats.connections++;
    if (this.refs === 0) sock?.unref();
    else this.keepalive();
    this.log.debug?.(`Connected to ${this.target} (host key ${hostKey.fingerprint})`);
    return client;
  }
}
