// A conversation with one remote shell (`sh -s`, as root through sudo when configured) over one SSH
// channel: each step writes a script to the shell's stdin and reads its framed sections back. The
// shell lives, and keeps the lock it took, until the conversation is closed.
import type { Session } from "../ssh";
import { RemoteError } from "../ssh";
import { parseSections } from "./protocol";
import type { Sections } from "./protocol";

export interface Shell {
  step(script: string): Promise<Sections>;
  close(): Promise<void>;
}

export async function openShell(session: Session): Promise<Shell> {
  const { channel, release } = await session.openChannel("sh -s");
  const received = receiver();
  let waiter: { marker: string; resolve: (s: string) => void; reject: (e: Error) => void } | undefined;
  let closed: Error | undefined;
  let stderr = "";
  let n = 0;

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
  channel.on("close", () => {
    closed =
      session.sudoFailure("sh -s", { code: code ?? -1, stdout: received.text(), stderr }) ??
      new RemoteError(
        `the shell on ${session.target} ended before the step finished${stderr ? `: ${stderr.trim()}` : ""}`,
        "sh -s",
        null,
        received.text(),
        stderr,
      );
    settle();
    release();
  });

  return {
    step(script: string): Promise<Sections> {
      if (closed) return Promise.reject(closed);
      const marker = `@@pit-step-done ${++n}\n`;
      return new Promise<string>((resolve, reject) => {
        waiter = { marker, resolve, reject };
        channel.write(`${script}\nprintf '${marker.trimEnd()}\\n'\n`);
      }).then(parseSections);
    },
    async close(): Promise<void> {
      if (closed) return;
      await new Promise<void>((resolve) => {
        channel.once("close", () => resolve());
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
