// Toxiproxy (github.com/Shopify/toxiproxy/v2, built by scripts/toxiproxy.sh and cached) in the lab:
// one server per test process, in the workstation namespace, its API and its proxies on the
// workstation's loopback only. A proxy stands between the provider and a lab host's sshd; toxics
// (latency, timeout, reset_peer, limit_data, ...) are added and removed through its HTTP API.
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import * as net from "node:net";
import { join, resolve } from "node:path";
import type { LabConnection, LabHost } from "./lab";
import { LabError } from "./lab";

const ROOT = resolve(__dirname, "../..");

let binary: Promise<string> | undefined;
/** The toxiproxy-server binary (built once, cached under ~/.cache/toxiproxy). */
export function toxiproxyBinary(): Promise<string> {
  binary ??= new Promise((res, rej) =>
    execFile("bash", [join(ROOT, "scripts/toxiproxy.sh")], { timeout: 15 * 60_000 }, (err, stdout, stderr) =>
      err
        ? rej(new LabError(`Toxiproxy is not available (scripts/toxiproxy.sh failed): ${stderr.slice(-1500)}`))
        : res(stdout.trim().split("\n").pop()!),
    ),
  );
  return binary;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = net.createServer();
    s.once("error", () => r(false));
    s.listen(port, "127.0.0.1", () => s.close(() => r(true)));
  });
}

/** A toxic as Toxiproxy's API takes it. */
export interface Toxic {
  type: "latency" | "timeout" | "reset_peer" | "limit_data" | "bandwidth" | "slow_close" | "slicer";
  stream?: "upstream" | "downstream";
  attributes?: Record<string, number>;
  name?: string;
}

export class Toxiproxy {
  private constructor(
    private readonly child: ChildProcess,
    readonly apiPort: number,
  ) {}

  /** Starts a server on the workstation's loopback (a port from the lab run's own range). */
  static async start(labDir: string): Promise<Toxiproxy> {
    if (!process.env.PIT_LAB_WS) throw new LabError("Toxiproxy runs inside the lab's workstation namespace only");
    const bin = await toxiproxyBinary();
    // A port unique within this run: a slot directory, as lab hosts do (mkdir is atomic).
    mkdirSync(join(labDir, "toxiproxy"), { recursive: true });
    for (let n = 1; n < 100; n++) {
      const port = 27400 + n;
      try {
        mkdirSync(join(labDir, "toxiproxy", String(n)));
      } catch {
        continue;
      }
      if (!(await portFree(port))) continue;
      const child = spawn(bin, ["-host", "127.0.0.1", "-port", String(port)], { stdio: "ignore", detached: true });
      child.unref();
      const t = new Toxiproxy(child, port);
      for (let i = 0; i < 100; i++) {
        if (
          await t.api("GET", "/version").then(
            () => true,
            () => false,
          )
        )
          return t;
        await new Promise((r) => setTimeout(r, 50));
      }
      t.stop();
      throw new LabError(`toxiproxy-server did not answer on 127.0.0.1:${port}`);
    }
    throw new LabError("no free Toxiproxy port");
  }

  /** The server's process id (the benchmark counts its CPU time). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  async api(method: string, path: string, body?: unknown): Promise<unknown> {
    const r = await fetch(`http://127.0.0.1:${this.apiPort}${path}`, {
      method,
      headers: body ? { "content-type": "application/json" } : undefined,
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok) throw new LabError(`toxiproxy ${method} ${path}: ${r.status} ${text}`);
    if (!(r.headers.get("content-type") ?? "").includes("json")) return text;
    return text ? JSON.parse(text) : undefined;
  }

  /** A proxy to a lab host's sshd, on the workstation's loopback. */
  async proxy(host: LabHost): Promise<SshProxy> {
    const name = `h${host.slot}`;
    const port = 26000 + host.slot;
    await this.api("POST", "/proxies", { name, listen: `127.0.0.1:${port}`, upstream: `${host.v4}:22`, enabled: true });
    return new SshProxy(this, name, port, host);
  }

  stop(): void {
    if (this.child.pid) {
      try {
        process.kill(this.child.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  }
}

export class SshProxy {
  constructor(
    private readonly server: Toxiproxy,
    readonly name: string,
    readonly port: number,
    readonly host: LabHost,
  ) {}

  /** The host's connection arguments, through the proxy. */
  connection(user: Parameters<LabHost["connection"]>[0] = "root"): LabConnection {
    return { ...this.host.connection(user), host: "127.0.0.1", port: this.port };
  }

  async add(toxic: Toxic): Promise<string> {
    const name = toxic.name ?? `${toxic.type}-${toxic.stream ?? "downstream"}`;
    await this.server.api("POST", `/proxies/${this.name}/toxics`, {
      name,
      type: toxic.type,
      stream: toxic.stream ?? "downstream",
      toxicity: 1,
      attributes: toxic.attributes ?? {},
    });
    return name;
  }

  async remove(name: string): Promise<void> {
    await this.server.api("DELETE", `/proxies/${this.name}/toxics/${name}`);
  }

  /** Removes every toxic of this proxy. */
  async clear(): Promise<void> {
    const toxics = (await this.server.api("GET", `/proxies/${this.name}/toxics`)) as { name: string }[];
    for (const t of toxics) await this.remove(t.name);
  }

  /** Points the proxy at another upstream ("198.18.3.2:22"): the provider then meets another host. */
  async upstream(address: string): Promise<void> {
    await this.server.api("POST", `/proxies/${this.name}`, { upstream: address });
  }
}
