// Channels on one connection: at most MAX_CHANNELS at once (a queue for the rest), exec channels opened
// with retries of refused opens, and a script's result collected from a channel that runs sh.
import { constants as osConstants } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import type { Client, ClientChannel } from "ssh2";
import { RemoteError, redact, scrubError } from "./errors";
import type { Logger, RunResult, SessionStats } from "./types";

/** Channels open at once per connection: well below sshd's default MaxSessions of 10. */
export const MAX_CHANNELS = 4;
/** How often a refused channel open ("no more sessions") is retried before it counts as a failure. */
const CHANNEL_OPEN_RETRIES = 10;

const isChannelOpenFailure = (e: unknown) =>
  e instanceof Error && /Channel open failure|no more sessions/i.test(e.message);
const isNotConnected = (e: unknown) =>
  e instanceof Error && /^(Not connected|No response from server)$/.test(e.message);

/** What `run` writes to sh's stdin: the script, byte for byte, as one brace group, which sh reads to its
 * end before it runs any of it (so a command in it that reads stdin finds the end of input, never the
 * rest of the script). */
const wholeScript = (script: string) => `{\n${script}\n}\n`;

/** A connection's channel slots: MAX_CHANNELS at once, the next waiter served first. */
export class ChannelSlots {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  /** Resolves once a slot is this caller's; `release` it when its channel is done. */
  acquire(): Promise<void> {
    if (this.active < MAX_CHANNELS) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

/** What opening a channel needs of its session. */
export interface ChannelHost {
  /** "user@host:port", for messages. */
  target: string;
  secrets: readonly (string | undefined)[];
  log: Logger;
  stats: SessionStats;
  /** The connected client (connecting if need be). */
  client(): Promise<Client>;
  /** Forgets a client found closed, so that the next `client()` reconnects. */
  forget(client: Client): void;
}

/**
 * Opens an exec channel, retrying refused opens. The output is collected from within ssh2's callback:
 * a short command's output, exit status and close can arrive in the same read as the open confirmation,
 * before any awaiting code would run.
 */
export async function openExec<T>(host: ChannelHost, command: string, onOpen: (ch: ClientChannel) => T): Promise<T> {
  let refusals = 0;
  let reconnects = 0;
  for (;;) {
    const client = await host.client();
    try {
      const started = await new Promise<T>((resolve, reject) => {
        client.exec(command, (err, channel) => (err ? reject(err) : resolve(onOpen(channel))));
      });
      host.stats.channels++;
      return started;
    } catch (err) {
      if (isChannelOpenFailure(err) && refusals < CHANNEL_OPEN_RETRIES) {
        refusals++;
        host.stats.channelRetries++;
        host.log.debug?.(
          `Channel open on ${host.target} refused (${(err as Error).message}): retry ${refusals}/${CHANNEL_OPEN_RETRIES}`,
        );
        await delay(Math.min(50 * 2 ** (refusals - 1), 1000));
        continue;
      }
      if (isNotConnected(err) && reconnects < 1) {
        // The connection died while idle; the command never started, so it is safe to reconnect and retry.
        reconnects++;
        host.forget(client);
        host.log.debug?.(`Connection to ${host.target} was closed: reconnecting`);
        continue;
      }
      const cause = scrubError(err, host.secrets);
      throw new RemoteError(
        `could not start a command on ${host.target}: ${cause.message}`,
        redact(command, host.secrets),
        null,
        "",
        "",
        { cause },
      );
    }
  }
}

/** The exit status a channel reports: the command's, or 128 + the signal's number when a signal ended it. */
function exitStatus(code: number | null, signal?: string): number | null {
  if (typeof code === "number") return code;
  if (signal) return 128 + ((osConstants.signals as Record<string, number>)[`SIG${signal}`] ?? 0);
  return null;
}

/** The result of `script` on a channel that runs sh: the script is written to its stdin (see wholeScript). */
export function collect(
  host: Pick<ChannelHost, "target" | "secrets">,
  ch: ClientChannel,
  script: string,
): Promise<RunResult> {
  const { target, secrets } = host;
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let code: number | null = null;
    let failure: Error | undefined;
    ch.on("data", (d: Buffer) => out.push(d));
    ch.stderr.on("data", (d: Buffer) => err.push(d));
    ch.on("exit", (c: number | null, signal?: string) => {
      code = exitStatus(c, signal) ?? code;
    });
    ch.on("error", (e: Error) => (failure = e));
    ch.on("close", () => {
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code !== null) return resolve({ code, stdout, stderr });
      const cause = failure ? scrubError(failure, secrets) : undefined;
      reject(
        new RemoteError(
          `the connection to ${target} was lost while a command ran (it may or may not have completed)` +
            (cause ? `: ${cause.message}` : ""),
          redact(script, secrets),
          null,
          redact(stdout, secrets),
          redact(stderr, secrets),
          cause ? { cause } : undefined,
        ),
      );
    });
    ch.end(wholeScript(script));
  });
}
