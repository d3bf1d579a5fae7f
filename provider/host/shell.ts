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
  let buffer = "";
  let waiter: { marker: string; resolve: (s: string) => void; reject: (e: Error) => void } | undefined;
  let closed: Error | undefined;
  let stderr = "";
  let n = 0;

  const settle = () => {
    if (!waiter) return;
    const at = buffer.indexOf(waiter.marker);
    if (at >= 0) {
      const out = buffer.slice(0, at);
      buffer = buffer.slice(at + waiter.marker.length);
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
    buffer += d.toString("utf8");
    settle();
  });
  channel.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  let code: number | null = null;
  channel.on("exit", (c: number | null) => (code = c));
  channel.on("close", () => {
    closed =
      session.sudoFailure("sh -s", { code: code ?? -1, stdout: buffer, stderr }) ??
      new RemoteError(
        `the shell on ${session.target} ended before the step finished${stderr ? `: ${stderr.trim()}` : ""}`,
        "sh -s",
        null,
        buffer,
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
