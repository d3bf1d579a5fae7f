// A fake host for the transaction code: a Session-shaped object whose shell channel records every
// script the agent writes and answers each step with framed sections built from captured
// transcripts (test/fixtures). Tests assert the exact scripts and what the agent concludes.
import { EventEmitter } from "node:events";
import { execFileSync } from "node:child_process";
import type { Session } from "../../../provider/ssh";

export interface SectionAnswer {
  code?: number;
  out?: string;
  err?: string;
}
/** One step's answer: sections by name; `hang` never answers; `drop` ends the channel. */
export type StepAnswer = Record<string, SectionAnswer> | "hang" | "drop";

/** Sections as a script framed with `mark` (its $PIT_M) prints them. */
export function frame(sections: Record<string, SectionAnswer>, mark: string): string {
  return Object.entries(sections)
    .map(
      ([name, s]) =>
        `@@pit-begin ${mark} ${name}\n${s.out ?? ""}\n@@pit-stderr ${mark}\n${s.err ?? ""}\n@@pit-end ${mark} ${name} ${s.code ?? 0}\n`,
    )
    .join("");
}

/** The framing mark a script sets ($PIT_M, see protocol.ts framed). */
export const markOf = (script: string) => /^PIT_M=([0-9a-f]+)$/m.exec(script)?.[1] ?? "no-mark";

class FakeChannel extends EventEmitter {
  readonly stderr = new EventEmitter();
  private ended = false;
  constructor(private readonly host: FakeHost) {
    super();
  }
  write(text: string): boolean {
    const marker = /printf '(@@pit-step-done [0-9a-f]+)\\n'\n$/.exec(text);
    const script = text.replace(/\nprintf '@@pit-step-done [0-9a-f]+\\n'\n$/, "");
    this.host.scripts.push(script);
    const answer = this.host.answers.shift() ?? "drop";
    if (answer === "hang") return true;
    if (answer === "drop") {
      setImmediate(() => this.close());
      return true;
    }
    const framed = frame(answer, markOf(text)) + (marker ? `${marker[1]}\n` : "");
    setImmediate(() => this.emit("data", Buffer.from(framed)));
    return true;
  }
  end(text?: string): void {
    if (text) this.host.ends.push(text);
    this.close();
  }
  close(): void {
    if (this.ended) return;
    this.ended = true;
    setImmediate(() => {
      this.emit("exit", 0);
      this.emit("close");
    });
  }
}

export class FakeHost {
  readonly scripts: string[] = [];
  readonly ends: string[] = [];
  /** Scripts run with session.run (reads, fresh confirms). */
  readonly runs: string[] = [];
  /** The shells' channels, in the order opened (a test may end one, as a dropped link does). */
  readonly opened: { close(): void }[] = [];
  channels = 0;
  released = 0;
  constructor(
    public answers: StepAnswer[],
    public runAnswers: StepAnswer[] = [],
  ) {}

  session(perDialTimeout = 1): Session {
    const host = this;
    const fake = {
      key: "fake",
      target: "root@198.18.0.10:22",
      args: { host: "198.18.0.10", port: 22, user: "root", dialErrorLimit: 1, perDialTimeout, sudo: false },
      log: {},
      hostKey: { fingerprint: "SHA256:fake", publicKey: "ssh-ed25519 AAAA", algorithm: "ssh-ed25519", md5: "" },
      async origin() {
        return { clientAddress: "198.18.0.1", clientPort: 50000, serverAddress: "198.18.0.10", serverPort: 22 };
      },
      async openChannel() {
        host.channels++;
        let released = false;
        // Like Session's: a second call does nothing.
        const release = () => {
          if (!released) host.released++;
          released = true;
        };
        const channel = new FakeChannel(host);
        host.opened.push(channel);
        return { channel, release };
      },
      async run(script: string) {
        host.runs.push(script);
        const a = host.runAnswers.shift() ?? "drop";
        if (a === "hang") return new Promise(() => undefined);
        if (a === "drop") throw new Error("connection lost");
        return { code: 0, stdout: frame(a, markOf(script)), stderr: "" };
      },
      sudoFailure: () => undefined,
      async close() {},
    };
    return fake as unknown as Session;
  }
}

/** The scripts with the random transaction id replaced, for exact comparison. */
export const stable = (scripts: string[]) =>
  scripts.map((s) =>
    s
      .replace(/pulumi-iptables\.tx\/[0-9a-f]{12}/g, "pulumi-iptables.tx/<id>")
      .replace(/^PIT_M=[0-9a-f]+$/gm, "PIT_M=<mark>")
      .replace(/@@PIT_[0-9a-f]{16}/g, "@@PIT_<end>")
      .replace(/transaction [0-9a-f]{12}/g, "transaction <id>"),
  );

/** Parses a script with `sh -n` (syntax only): what the host's shell would refuse. */
export function shellSyntaxError(script: string, shell = "sh"): string | undefined {
  try {
    execFileSync(shell, ["-n"], { input: script, stdio: ["pipe", "pipe", "pipe"] });
    return undefined;
  } catch (e) {
    return String((e as { stderr?: Buffer }).stderr ?? e);
  }
}
