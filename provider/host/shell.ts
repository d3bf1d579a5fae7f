// A conversation with one remote shell (`sh -s`, as root through sudo when configured) over one SSH
// channel: each step writes a script to the shell's stdin and reads its framed sections back. The
// shell lives, and keeps the lock it took, until the conversation is closed. Every step has a
// deadline: past it the channel is closed, so the shell ends (its next write fails) once the host
// has killed the command it waits for (each has a host-side deadline, see protocol.ts), and the lock
// is free.
import type { Session } from "../ssh";
import { HostError } from "./errors";
import { framed, idleGuard } from "./protocol";
import type { Sections } from "./protocol";

export interface Shell {
  /** Runs one step; `name` says what it does, for errors ("applying the change"). */
  step(name: string, script: string): Promise<Sections>;
  close(): Promise<void>;
  /** The shell has ended (or its channel closed): no step can run in it any more. */
  readonly ended: boolean;
}

export async function openShell(session: Session, deadlineSec: number): Promise<Shell> {
  const { channel, release } = await session.openChannel();
  const received = receiver();
  let waiter: { marker: string; resolve: (s: string) => void; reject: (e: Error) => void } | undefined;
  let closed: Error | undefined;
  let stderr = "";

  const settle = () => {
    if (!waiter) return;
    const out = received.take(waiter.marker);
    if (out !== undefined) {
      const w = waiter;
      waiter = undefined;
      w.resolve(out);
    } else if (closed) {
      const w = waiter;
      waiter = undefined;
      w.reject(closed);
    }
  };
  channel.on("data", (d: Buffer) => {
    received.add(d);
    settle();
  });
  channel.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  let code: number | null = null;
  channel.on("exit", (c: number | null) => (code = c));
  channel.on("error", () => undefined);
  channel.on("close", () => {
    closed ??=
      session.sudoFailure("sh -s", { code: code ?? -1, stdout: received.text(), stderr }) ??
      new HostError(
        `the connection to ${session.target} (or its shell) ended in the middle of a step${stderr ? `: ${stderr.trim()}` : ""}`,
        { kind: "lost", target: session.target, command: "sh -s", status: code, stderr },
      );
    settle();
    release();
  });

  return {
    get ended() {
      return closed !== undefined;
    },
    step(name: string, script: string): Promise<Sections> {
      if (closed) return Promise.reject(closed);
      const step = framed(script);
      const marker = `${step.done}\n`;
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          closed = new HostError(`${name} on ${session.target} did not finish within ${deadlineSec}s`, {
            kind: "deadline",
            target: session.target,
            command: name,
          });
          // The close may never be answered on a dead link: the slot and the process are freed now.
          channel.close();
          release();
          settle();
        }, deadlineSec * 1000);
        waiter = {
          marker,
          resolve: (s) => {
            clearTimeout(timer);
            resolve(s);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
        const idle = idleGuard(2 * deadlineSec);
        channel.write(`${idle.before}\n${step.script}\n${idle.after}\nprintf '${step.done}\\n'\n`);
      }).then(step.parse);
    },
    async close(): Promise<void> {
      if (closed) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          channel.close();
          release();
          resolve();
        }, deadlineSec * 1000);
        channel.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        channel.end("exit 0\n");
      });
    },
  };
}

/**
 * What a shell sent, kept as the chunks received and decoded once per step: each chunk is searched
 * for the step's end marker once (with the marker's length before it, for a marker split between
 * chunks), so receiving a listing of many megabytes is linear in its size, and a character split
 * between chunks is decoded whole.
 */
export function receiver() {
  let chunks: Buffer[] = [];
  let size = 0;
  /** Bytes already searched for the marker of the current step. */
  let searched = 0;
  const all = () => (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  return {
    add(d: Buffer): void {
      chunks.push(d);
      size += d.length;
    },
    /** The text before `marker` (which is consumed with it), or undefined while it has not arrived. */
    take(marker: string): string | undefined {
      const m = Buffer.from(marker);
      const from = Math.max(0, searched - m.length + 1);
      let offset = 0;
      let k = 0;
      while (k < chunks.length && offset + chunks[k].length <= from) offset += chunks[k++].length;
      const tail = k === chunks.length - 1 ? chunks[k] : Buffer.concat(chunks.slice(k));
      const at = tail.indexOf(m, from - offset);
      searched = size;
      if (at < 0) return undefined;
      const whole = all();
      const end = offset + at;
      const rest = whole.subarray(end + m.length);
      chunks = rest.length ? [rest] : [];
      size = rest.length;
      searched = 0;
      return whole.subarray(0, end).toString("utf8");
    },
    /** Everything received and not yet taken. */
    text(): string {
      return all().toString("utf8");
    },
  };
}
