// The package as TypeScript users install it (issue 24, item 1). `npm pack` runs on a copy of the
// sources without dist/ (as after `git clone; npm ci`), so the pack must build it; the tarball goes
// into fresh projects made from both templates of `pulumi new typescript` (test/fixtures/pulumi-templates:
// nodenext is pulumi/templates typescript/ at 65db26bf, node10 the one before 81e65225 of 2026-03-25),
// each compiled with its own tsc, and both entry points are imported with node.
// No lab and no root. Offline: the projects install with `npm ci --offline` from a lockfile cut out of
// this repo's, so every tarball comes from the npm cache this repo's `npm ci` filled.
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, exec, ROOT } from "../pulumi";

const TEMPLATES = join(ROOT, "test/fixtures/pulumi-templates");

/** The README's example program, plus the rules entry point and a mistake the types must catch. */
const PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import { PortRule, type PortRuleArgs } from "pulumi-iptables";
import { check, renderRule, type RuleInputs } from "pulumi-iptables/rules";

const cfg = new pulumi.Config();
const connection = { host: "203.0.113.10", user: "deploy", sudo: true, privateKey: cfg.requireSecret("sshKey") };

new PortRule("allow-app", { connection, port: 2222, action: "ACCEPT", ipVersion: "both" });
const block = new PortRule("block-admin", { connection, port: 8080, action: "DROP", comment: "old admin UI" });
// Outputs under their documented names: the normalized inputs and what the provider records.
const action: pulumi.Output<"ACCEPT" | "DROP" | "REJECT"> = block.action;
const effective: pulumi.Output<boolean> = block.effective;
export const outputs = [action, effective, block.port, block.protocol, block.tag, block.counters, block.rules];
new PortRule("dns", { connection, port: 53, protocol: "udp", action: "ACCEPT", source: "10.0.0.0/8" });
new PortRule("reject-range", { connection, port: "9000-9100", action: "REJECT", rejectWith: "tcp-reset" });

// @ts-expect-error the types reject an action iptables does not have (they are not \`any\`)
const wrong: PortRuleArgs = { connection, port: 22, action: "ALLOW" };
const checked: RuleInputs = check({}, { connection: { host: "198.18.0.10" }, port: 22, action: "ACCEPT" }).inputs;
export const rendered = [wrong, renderRule(checked, 4)];
`;

/** Imports both entry points (CommonJS and ESM) and uses each once; prints what it found. */
const IMPORTS = `
const main = require("pulumi-iptables");
const rules = require("pulumi-iptables/rules");
const { inputs, failures } = rules.check({}, { connection: { host: "198.18.0.10" }, port: "8000-8100", action: "DROP" });
import("pulumi-iptables/rules").then((esm) =>
  console.log(JSON.stringify({ PortRule: typeof main.PortRule, ports: inputs.ports, failures, esm: esm.check === rules.check })),
);
`;

/** Runs a step; a failure names the step and shows what it printed. */
async function step(what: string, cmd: string, args: string[], cwd: string): Promise<CliResult> {
  const r = await exec(cmd, args, { cwd, timeoutMs: 600_000 });
  if (r.code !== 0)
    throw new Error(`${what} (${cmd} ${args.join(" ")} in ${cwd}) exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

type LockEntry = Record<string, unknown> & {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};
type Lock = Record<string, LockEntry>;

/** The lock path Node finds `name` at from the package at lock path `from`, walking up. */
function located(lock: Lock, from: string, name: string): string | undefined {
  for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf("/node_modules/")))) {
    const path = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
    if (lock[path]) return path;
    if (!dir) return undefined;
  }
}

/** The entries of the repo's lock that `names` (and what they need) resolve to, without the repo's dev flags. */
function lockClosure(lock: Lock, names: string[]): Lock {
  const out: Lock = {};
  const visit = (from: string, name: string) => {
    const path = located(lock, from, name);
    if (!path || out[path]) return;
    const { dev: _dev, devOptional: _devOptional, ...entry } = lock[path];
    out[path] = entry;
    const needs = { ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies };
    for (const dep of Object.keys(needs)) visit(path, dep);
  };
  for (const name of names) visit("", name);
  return out;
}

const readJson = (file: string) => JSON.parse(readFileSync(file, "utf8"));

/**
 * A fresh project from a template: its tsconfig.json as is; its package.json plus the tarball (and
 * @types/node at the repo's version, the one in the npm cache); a lockfile with the repo's versions.
 */
function writeProject(dir: string, template: string, tarball: string, packed: LockEntry): void {
  mkdirSync(dir);
  cpSync(join(TEMPLATES, template, "tsconfig.json"), join(dir, "tsconfig.json"));
  const repo = readJson(join(ROOT, "package.json"));
  const pkg = readJson(join(TEMPLATES, template, "package.json"));
  pkg.name = `install-${template}`;
  pkg.dependencies["pulumi-iptables"] = `file:${tarball}`;
  pkg.devDependencies["@types/node"] = repo.devDependencies["@types/node"];
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
  const lock = readJson(join(ROOT, "package-lock.json"));
  const needed = [
    ...Object.keys(packed.dependencies ?? {}),
    ...Object.keys(pkg.dependencies),
    ...Object.keys(pkg.devDependencies),
  ];
  const packages = lockClosure(
    lock.packages,
    needed.filter((n) => n !== "pulumi-iptables"),
  );
  packages["node_modules/pulumi-iptables"] = { ...packed, resolved: `file:${tarball}` };
  const root = { name: pkg.name, dependencies: pkg.dependencies, devDependencies: pkg.devDependencies };
  writeFileSync(
    join(dir, "package-lock.json"),
    JSON.stringify(
      { name: pkg.name, lockfileVersion: 3, requires: true, packages: { "": root, ...packages } },
      null,
      2,
    ),
  );
  writeFileSync(join(dir, "index.ts"), PROGRAM);
}

/** Every file `git ls-files` knows in the working tree (tracked or new, not ignored), copied to `dir`. */
async function copySources(dir: string): Promise<void> {
  const r = await step(
    "listing the sources",
    "git",
    ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    ROOT,
  );
  for (const file of r.stdout.split("\0").filter(Boolean)) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    try {
      cpSync(join(ROOT, file), join(dir, file));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e; // deleted in the working tree
    }
  }
}

describe("npm pack, installed into fresh projects from both `pulumi new typescript` templates", () => {
  const work = mkdtempSync(join(tmpdir(), "pit-install-"));
  let tarball = "";
  let packed: LockEntry = {};
  let files: string[] = [];

  beforeAll(async () => {
    const src = join(work, "src");
    await copySources(src);
    expect(readdirSync(src)).not.toContain("dist");
    symlinkSync(join(ROOT, "node_modules"), join(src, "node_modules"));
    const out = join(work, "pack");
    mkdirSync(out);
    const r = await step("npm pack", "npm", ["pack", "--json", "--pack-destination", out], src);
    const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf("[")));
    tarball = join(out, info.filename);
    files = info.files.map((f: { path: string }) => f.path).sort();
    await step("unpacking the tarball", "tar", ["-xzf", tarball, "-C", out], out);
    const manifest = readJson(join(out, "package/package.json"));
    packed = {
      version: manifest.version,
      integrity: info.integrity,
      dependencies: manifest.dependencies,
      peerDependencies: manifest.peerDependencies,
    };
  }, 600_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("packs the built package: both entry points with their types, nothing of zod in the types", () => {
    for (const f of [
      "dist/index.js",
      "dist/index.d.ts",
      "dist/provider.js",
      "dist/rules/index.js",
      "dist/rules/index.d.ts",
    ])
      expect(files, `the tarball lacks ${f}`).toContain(f);
    expect(files.filter((f) => !/^(dist|provider)\//.test(f))).toEqual(["README.md", "package.json"]);
    // Stack traces go through the source maps to the TypeScript sources: every file a map names is shipped.
    const maps = files.filter((f) => f.endsWith(".js.map"));
    expect(maps.length).toBeGreaterThan(10);
    for (const m of maps)
      for (const s of readJson(join(work, "pack/package", m)).sources as string[])
        expect(files, `${m} names ${s}`).toContain(posix.join(posix.dirname(m), s));
    expect(files.filter((f) => f.startsWith("provider/") && !f.endsWith(".ts"))).toEqual([]);
    const zod = files.filter(
      (f) => f.endsWith(".d.ts") && /from ["']zod/.test(readFileSync(join(work, "pack/package", f), "utf8")),
    );
    expect(zod, "declaration files that import zod (they fail to compile without skipLibCheck)").toEqual([]);
  });

  for (const template of ["nodenext", "node10"]) {
    it(`the ${template} template: npm ci --offline, tsc, node imports both entry points`, async () => {
      const dir = join(work, template);
      writeProject(dir, template, tarball, packed);
      await step(`npm ci in the ${template} project`, "npm", ["ci", "--offline", "--no-audit", "--no-fund"], dir);
      const tsc = await step(
        `tsc in the ${template} project`,
        join(dir, "node_modules/.bin/tsc"),
        ["--pretty", "false"],
        dir,
      );
      expect(tsc.stdout + tsc.stderr).toBe("");
      expect(readdirSync(join(dir, "bin"))).toContain("index.js");
      const run = await step(`node importing pulumi-iptables in the ${template} project`, "node", ["-e", IMPORTS], dir);
      expect(JSON.parse(run.stdout)).toEqual({ PortRule: "function", ports: "8000:8100", failures: [], esm: true });
    }, 600_000);
  }
});
