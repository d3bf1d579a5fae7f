import type { ClientChannel } from "ssh2";
import type { CheckedConnection } from "../rules";
import { ChannelSlots, collect, openExec } from "./channels";
import type { ChannelHost } from "./channels";
import { RemoteError, redact, secretsOf } from "./errors";
import type { SudoError } from "./errors";
import { Link } from "./link";
import { addressOf, hostPort, jumpConnection, leavePool, pooled, sessionKey } from "./pool";
import { shellCommand, sudoError } from "./sudo";
import type { HostKeyInfo, Logger, Origin, RunOptions, RunResult, SessionStats } from "./types";

/**
 * What `origin` runs: the host's view of the connection, then the route the host takes back to the
 * client (`ip route get`, iproute2's or busybox's; nothing where there is no `ip`), whose device is the
 * interface the connection arrives on where routing is symmetric. Constant text: the client's address
 * reaches `ip` as a variable's value, never as script text (globbing off).
 */
const SSH_CONNECTION =
  'printf "%s\\n" "$SSH_CONNECTION"; set -f; set -- $SSH_CONNECTION; [ -n "$1" ] && ip route get "$1" 2>/dev/null; exit 0';

/** An interface name as Linux allows it (at most 15 bytes, no space or slash), from `ip route get`'s `dev`. */
const ROUTE_DEV = /(?:^|\s)dev\s+([\w.@+-]{1,15})(?:\s|$)/;

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
export function originOf(r: RunResult, target: string): Origin {
  const [first = "", ...route] = r.stdout.trim().split("\n");
  const f = first.trim().split(/\s+/);
  if (r.code !== 0 || f.length !== 4) {
    throw new RemoteError(
      `cannot tell where the connection to ${target} comes from: $SSH_CONNECTION is "${first.trim()}"`,
      SSH_CONNECTION,
      r.code,
      r.stdout,
      r.stderr,
    );
  }
  const dev = ROUTE_DEV.exec(route.join(" "))?.[1];
  return {
    clientAddress: f[0],
    clientPort: Number(f[1]),
    serverAddress: f[2],
    serverPort: Number(f[3]),
    ...(dev && { inInterface: dev }),
  };
}

/** One pooled SSH connection (re-established as needed) and everything run over it. */
export class Session {
  readonly key: string;
  /** "user@host:port", for messages. */
  readonly target: string;
  /** Where it connects to (host:port via the jump host's address): host keys are pinned per address. */
  readonly address: string;
  readonly stats: SessionStats = { connections: 0, dialFailures: 0, channels: 0, channelRetries: 0 };
  /** The jump host's session, when there is one. */
  readonly proxy?: Session;

  /** The SSH connection, dialled when needed. */
  private readonly link: Link;
  private originPromise?: Promise<Origin>;
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
    this.link = new Link({
      args,
      target: this.target,
      address: this.address,
      secrets: this.secrets,
      stats: this.stats,
      log: () => this.log,
      jump: this.proxy?.link,
      dropped: () => {
        this.originPromise = undefined;
      },
      close: () => this.close(),
    });
  }

  /** The host key of the current (or last) connection. */
  get hostKey(): HostKeyInfo | undefined {
    return this.link.hostKey;
  }

  /**
   * Starts connecting in advance, for work that is coming (see ./early): the handshake yields its turn
   * to dials that someone waits for, until someone does. A failure is left for that first real use,
   * which dials again; a connection nobody uses is idle like any pooled one (it does not keep Node running).
   */
  dialEarly(): void {
    this.link
      .verified(true)
      .catch((e) =>
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
    this.link.hold();
    try {
      await this.link.verified();
    } finally {
      this.link.letGo();
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
    this.link.hold();
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
      this.link.letGo();
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
    this.link.hold();
    try {
      await this.slots.acquire();
    } catch (e) {
      this.link.letGo();
      throw e;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.slots.release();
      this.link.letGo();
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
    await this.link.close();
  }

  /** What opening a channel needs of this session (./channels). */
  private channels(): ChannelHost {
    return {
      target: this.target,
      secrets: this.secrets,
      log: this.log,
      stats: this.stats,
      client: () => this.link.client(),
      forget: (client) => this.link.forget(client),
    };
  }
}
