/**
 * Network namespaces for the rule-core lab (fixture capture and the render→iptables property test).
 * Every iptables command runs inside a namespace made here, in a private mount namespace with its
 * own tmpfs /run (so the xtables lock is private too); the legacy backend is the legacy binary
 * bind-mounted over xtables-nft-multi inside that private mount namespace only.
 */
import { spawn, spawnSync } from "node:child_process";

export type Backend = "nf_tables" | "legacy";
export const BACKENDS: Backend[] = ["nf_tables", "legacy"];

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The private mounts of a command: a tmpfs /run, and for legacy the legacy binary over the nft one.
 * In a root filesystem (another userland), the same under it, plus its /proc, then chroot there. */
function prelude(backend: Backend, root = ""): string {
  const mounts = [`mount -t tmpfs tmpfs ${root}/run`];
  if (root) mounts.push(`mount -t proc proc ${root}/proc`);
  if (backend === "legacy")
    mounts.push(`mount --bind ${root}/usr/sbin/xtables-legacy-multi ${root}/usr/sbin/xtables-nft-multi`);
  return `${mounts.join(" && ")} || exit 97\n${root ? `exec chroot ${root} /bin/sh -c "$1"\n` : ""}`;
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function labUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the rules lab needs root (ip netns add, mount) and this process is not root";
  const ip = spawnSync("ip", ["-V"], { encoding: "utf8" });
  if (ip.error || ip.status !== 0)
    return `the rules lab needs the ip command (iproute2): ${ip.error?.message ?? ip.stderr}`;
  for (const bin of ["/usr/sbin/xtables-legacy-multi", "/usr/sbin/xtables-nft-multi"]) {
    if (spawnSync("test", ["-x", bin]).status !== 0)
      return `the rules lab needs ${bin} (iptables 1.8 with both backends)`;
  }
  return undefined;
}

let counter = 0;

export class Netns {
  private constructor(
    readonly name: string,
    readonly root = "",
  ) {}

  /** Creates `<prefix>-<pid>-<n>`; throws with ip's own message when it cannot. Commands run with
   * this machine's iptables, or chrooted in `root` (an unpacked root filesystem) with its own. */
  static create(prefix: string, root = ""): Netns {
    const name = `${prefix}-${process.pid}-${++counter}`;
    const r = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
    if (r.status !== 0)
      throw new Error(`ip netns add ${name} failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
    const ns = new Netns(name, root);
    LIVE.add(ns);
    return ns;
  }

  /** `ip` arguments that run a script in the namespace, in a private mount namespace with its mounts. */
  private argv(backend: Backend, script: string): string[] {
    const sh = this.root ? prelude(backend, this.root) : prelude(backend) + script;
    return ["netns", "exec", this.name, "unshare", "--mount", "sh", "-c", sh, "_", script];
  }

  /** Runs a shell script inside the namespace with the given backend. */
  run(backend: Backend, script: string, input?: string): Result {
    const r = spawnSync("ip", this.argv(backend, script), {
      input,
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error) throw r.error;
    if (r.status === 97) throw new Error(`could not set up the private mounts in ${this.name}: ${r.stderr}`);
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** Like run, without blocking the event loop (several namespaces at work at once). */
  runAsync(backend: Backend, script: string, input?: string): Promise<Result> {
    return new Promise((resolve, reject) => {
      const child = spawn("ip", this.argv(backend, script));
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => {
        stdout += d;
      });
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      child.on("error", reject);
      child.stdin.on("error", () => undefined); // a command that exits early closes its stdin: its exit code tells
      child.on("close", (code) => {
        if (code === 97) reject(new Error(`could not set up the private mounts in ${this.name}: ${stderr}`));
        else resolve({ code: code ?? -1, stdout, stderr });
      });
      child.stdin.end(input ?? "");
    });
  }

  delete(): void {
    LIVE.delete(this);
    spawnSync("ip", ["netns", "del", this.name]);
  }
}

const LIVE = new Set<Netns>();

/** Deletes every namespace this process made and has not deleted yet. */
export function deleteAll(): void {
  for (const ns of [...LIVE]) ns.delete();
}

/** The binaries of one family. */
export function tools(family: 4 | 6) {
  const p = family === 4 ? "iptables" : "ip6tables";
  return { iptables: p, save: `${p}-save`, restore: `${p}-restore` };
}
