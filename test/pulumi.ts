// Runs the real `pulumi` CLI (built from Go modules by scripts/pulumi-cli.sh, cached outside the
// clone) on a Pulumi project with a local file backend in a temporary state directory.
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(__dirname, "..");
/** Pulumi projects of the tests live under the repo, so that node_modules is found walking up. */
const WORK = join(ROOT, ".lab");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((res, rej) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env, maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 600_000 },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        if (typeof code !== "number") return rej(new Error(`${cmd} ${args.join(" ")}: ${err?.message}\n${stderr}`));
        res({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

let binDir: Promise<string> | undefined;
/** The directory holding pulumi, pulumi-language-nodejs and the dynamic-provider launcher. */
export function pulumiBinDir(): Promise<string> {
  binDir ??= exec("bash", [join(ROOT, "scripts/pulumi-cli.sh")], { timeoutMs: 60 * 60_000 }).then((r) => {
    if (r.code !== 0)
      throw new Error(
        `the real Pulumi CLI is not available (scripts/pulumi-cli.sh exited ${r.code}):\n${r.stderr.slice(-2000)}`,
      );
    return r.stdout.trim().split("\n").pop()!;
  });
  return binDir;
}

let packed: Promise<string> | undefined;
/** `npm pack` of this package (as a user gets it), unpacked once per process; returns its folder. */
export function packedPackage(): Promise<string> {
  packed ??= (async () => {
    // In the lab run's own directory, which in-lab.sh removes when the run ends.
    const base = process.env.PIT_LAB_DIR ?? WORK;
    mkdirSync(base, { recursive: true });
    const dir = mkdtempSync(join(base, "pack-"));
    // dist/ as `npm test` built it: `prepare` would rebuild it under the other test files' feet.
    const r = await exec("npm", ["pack", "--silent", "--ignore-scripts", "--pack-destination", dir], { cwd: ROOT });
    if (r.code !== 0) throw new Error(`npm pack failed: ${r.stderr}`);
    const tgz = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
    const t = await exec("tar", ["-xzf", join(dir, tgz), "-C", dir]);
    if (t.code !== 0) throw new Error(`unpacking ${tgz} failed: ${t.stderr}`);
    return join(dir, "package");
  })();
  return packed;
}

export interface ProjectOptions {
  /** Files of the Pulumi project (index.js, ...); Pulumi.yaml is written unless given. */
  files: Record<string, string>;
  /** Stack config (`pulumi config set`), secrets marked with secret: true. */
  config?: Record<string, string | { value: string; secret: true }>;
  /** Install the packed pulumi-iptables package into the project's node_modules. */
  withPackage?: boolean | string;
}

/** A Pulumi project and stack in a fresh temporary directory with its own file backend. */
export class PulumiProject {
  private constructor(
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  static async create(name: string, opts: ProjectOptions): Promise<PulumiProject> {
    const bin = await pulumiBinDir();
    mkdirSync(WORK, { recursive: true });
    const dir = mkdtempSync(join(WORK, `${name}-`));
    // Its own package.json: otherwise Node resolves "pulumi-iptables" from here to this repo itself
    // (a package's self-reference), not to the packed copy in the project's node_modules.
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name, private: true })}\n`);
    for (const [file, text] of Object.entries(opts.files)) writeFileSync(join(dir, file), text);
    if (!opts.files["Pulumi.yaml"]) {
      writeFileSync(
        join(dir, "Pulumi.yaml"),
        `name: ${name}\nruntime:\n  name: nodejs\n  options:\n    typescript: false\nmain: index.js\n`,
      );
    }
    if (opts.withPackage) {
      const pkg = typeof opts.withPackage === "string" ? opts.withPackage : await packedPackage();
      cpSync(pkg, join(dir, "node_modules", "pulumi-iptables"), { recursive: true });
    }
    mkdirSync(join(dir, ".state"));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      PULUMI_HOME: join(dir, ".pulumi-home"),
      PULUMI_BACKEND_URL: `file://${join(dir, ".state")}`,
      PULUMI_CONFIG_PASSPHRASE: "lab",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_SKIP_CONFIRMATIONS: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
      NO_COLOR: "1",
    };
    const p = new PulumiProject(dir, env);
    await p.must(["stack", "select", "--create", "dev"]);
    for (const [key, v] of Object.entries(opts.config ?? {})) {
      if (typeof v === "string") await p.must(["config", "set", key, "--", v]);
      else await p.must(["config", "set", "--secret", key, "--", v.value]);
    }
    return p;
  }

  /** Runs `pulumi ARGS --non-interactive` in the project (killed, and an error, after timeoutMs). */
  pulumi(args: string[], timeoutMs?: number): Promise<CliResult> {
    return exec("pulumi", ["--non-interactive", ...args], { cwd: this.dir, env: this.env, timeoutMs });
  }

  async must(args: string[]): Promise<CliResult> {
    const r = await this.pulumi(args);
    if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  preview(extra: string[] = []) {
    return this.pulumi(["preview", "--diff", ...extra]);
  }
  up(extra: string[] = []) {
    return this.pulumi(["up", "--yes", "--skip-preview", ...extra]);
  }
  refresh(extra: string[] = []) {
    return this.pulumi(["refresh", "--yes", "--skip-preview", ...extra]);
  }
  destroy(extra: string[] = []) {
    return this.pulumi(["destroy", "--yes", "--skip-preview", ...extra]);
  }

  async outputs(): Promise<Record<string, any>> {
    return JSON.parse((await this.must(["stack", "output", "--json", "--show-secrets"])).stdout);
  }

  /** The stack's state (pulumi stack export). */
  async state(): Promise<any> {
    return JSON.parse((await this.must(["stack", "export", "--show-secrets"])).stdout);
  }

  /** Resources of a type in state (custom dynamic resources are pulumi-nodejs:dynamic:Resource). */
  async resources(): Promise<any[]> {
    return ((await this.state()).deployment.resources ?? []).filter((r: any) =>
      String(r.type).startsWith("pulumi-nodejs:dynamic"),
    );
  }

  remove(): void {
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
