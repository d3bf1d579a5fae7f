// A Pulumi program (JavaScript) for the e2e tests: PortRules from stack config, so each test
// changes config, not code. Config: `connection` (secret object), `rules` ([{name, args}]).
// Free of vitest: the benchmark (bench/bench.ts) runs it too.
import type { LabHost } from "../lab/lab";
import { type ProjectOptions, PulumiProject } from "../pulumi";

export const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { PortRule } = require("pulumi-iptables");
const cfg = new pulumi.Config();
const connection = cfg.requireSecretObject("connection");
const out = {};
for (const r of cfg.requireObject("rules")) {
  const rule = new PortRule(r.name, { connection: r.connection ?? connection, ...r.args });
  out[r.name] = { tag: rule.tag, rules: rule.rules, insertedAt: rule.insertedAt, placement: rule.placement, line: rule.line,
    packets: rule.packets, bytes: rule.bytes, counters: rule.counters, effective: rule.effective, shadowedBy: rule.shadowedBy,
    backend: rule.backend, hostKeyFingerprint: rule.hostKeyFingerprint, listening: rule.listening, missing: rule.missing, persisted: rule.persisted };
}
exports.rules = out;
`;

/** A PortRule as the program reads it from the `rules` config. */
export interface ProgramRule {
  name: string;
  args: Record<string, unknown>;
  connection?: Record<string, unknown>;
}

const created: PulumiProject[] = [];

/** A Pulumi project in a fresh directory, removed by removeProjects (test/e2e/harness.ts useLab calls it). */
export async function createProject(name: string, opts: ProjectOptions): Promise<PulumiProject> {
  const p = await PulumiProject.create(name, opts);
  created.push(p);
  return p;
}

/** A Pulumi project that runs PROGRAM on `host` (the npm-packed package installed, unless told otherwise). */
export const programProject = (
  name: string,
  host: LabHost,
  rules: ProgramRule[],
  withPackage: boolean | string = true,
) => programProjectVia(name, host.connection(), rules, withPackage);

/** A Pulumi project that runs PROGRAM with `connection` as its `connection` config. */
export function programProjectVia(
  name: string,
  connection: object,
  rules: ProgramRule[],
  withPackage: boolean | string = true,
): Promise<PulumiProject> {
  return createProject(name, {
    files: { "index.js": PROGRAM },
    withPackage,
    config: {
      [`${name}:connection`]: { value: JSON.stringify(connection), secret: true },
      [`${name}:rules`]: JSON.stringify(rules),
    },
  });
}

/** Replaces the program's rules (the next `up` applies them). */
export const setRules = (p: PulumiProject, name: string, rules: ProgramRule[]) =>
  p.must(["config", "set", `${name}:rules`, "--", JSON.stringify(rules)]);

/** Removes every project made by createProject or programProject in this process. */
export function removeProjects(): void {
  for (const p of created.splice(0)) p.remove();
}
