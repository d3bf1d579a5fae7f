// Issue 24, item 6, for stacks made by the version before it (main at 88e792d), whose state records every
// output and internal input under its own name: after the upgrade to this package (which records them under
// `__`, hidden from the engine's diffs), the same program with the same inputs changes nothing in preview
// or up, its outputs read as before, a comment-only change is an update listing only what changed, refresh
// records the new layout (after it, a replace lists only what changed too), and destroy removes exactly the rules.
// Run inside the lab, after `npm run build`:
//   bash test/lab/in-lab.sh npx vitest run test/e2e/upgrade.test.ts
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Lab } from "../lab/lab";
import { exec, packedPackage, ROOT } from "../pulumi";
import { all, EMPTY, ok, ruleLines, rulesets, stateOf, useLab } from "./harness";
import { programProject as project, type ProgramRule as Rule, setRules } from "./program";

/** The version before the state layout changed. */
const PREVIOUS = "88e792d";

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** Runs a command, failing with its output. */
async function must(cmd: string, args: string[], cwd: string) {
  const r = await exec(cmd, args, { cwd });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
}

/** The package as `npm pack` made it at `commit`, built with this checkout's node_modules; its folder. */
async function packageAt(commit: string): Promise<string> {
  const dir = mkdtempSync(join(process.env.PIT_LAB_DIR ?? join(ROOT, ".lab"), `v-${commit}-`));
  const src = join(dir, "src");
  mkdirSync(src);
  const known = await exec("git", ["-C", ROOT, "cat-file", "-e", `${commit}^{commit}`], { cwd: dir });
  if (known.code !== 0)
    throw new Error(
      `this test builds the package at ${commit}, which this clone's history lacks: clone main in full (not --depth)`,
    );
  await must("sh", ["-c", `git -C "$0" archive ${commit} | tar -x -C "$1"`, ROOT, src], dir);
  symlinkSync(join(ROOT, "node_modules"), join(src, "node_modules"));
  await must("npx", ["tsc", "-p", "tsconfig.json"], src);
  await must("npm", ["pack", "--silent", "--ignore-scripts", "--pack-destination", dir], src);
  const tgz = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
  await must("tar", ["-xzf", join(dir, tgz), "-C", dir], dir);
  return join(dir, "package");
}

/** Some of the state keys this version records under `__`: the previous one recorded them as they are. */
const OUTPUT_KEYS = ["tag", "unique", "identity", "effective", "counters", "line", "insertedAt", "hostKeyFingerprint"];

describe(`a stack made by the version before the state layout changed (${PREVIOUS})`, () => {
  it("upgrades without changes: preview and up change nothing, outputs read as before, refresh and destroy work", async () => {
    const previous = await packageAt(PREVIOUS);
    const h = await lab.addHost({ rules: { v4: EMPTY, v6: EMPTY }, listen: { tcp: [8080] } });
    const rules: Rule[] = [
      { name: "app", args: { port: 8080, action: "ACCEPT", comment: "app" } },
      { name: "block", args: { port: "9000-9100", action: "DROP", ipVersion: "ipv4" } },
    ];
    const p = await project("upgrade", h, rules, previous);
    const start = await rulesets(h);
    await ok(p.up());
    let made = await rulesets(h);
    const [before] = (await p.resources()).filter((r) => String(r.urn).endsWith("::app"));
    for (const k of OUTPUT_KEYS) expect(before.outputs, k).toHaveProperty(k);
    const outputsBefore = (await p.outputs()).rules;

    // The upgrade: this version's package in place of the previous one, same program, same inputs.
    const installed = join(p.dir, "node_modules", "pulumi-iptables");
    rmSync(installed, { recursive: true });
    cpSync(await packedPackage(), installed, { recursive: true });
    const preview = await ok(p.preview(["--expect-no-changes"]));
    expect(all(preview)).not.toMatch(/PortRule: \((update|replace|create|delete)/);
    await ok(p.up(["--expect-no-changes"]));
    expect(await rulesets(h)).toEqual(made);
    // The program reads every output as before (the state still has the previous layout).
    expect((await p.outputs()).rules).toEqual(outputsBefore);

    // A comment-only change of a rule whose state has the previous layout: an update in place.
    const ranged: Rule = { ...rules[1], args: { ...rules[1].args, comment: "range" } };
    await setRules(p, "upgrade", [rules[0], ranged]);
    const update = ruleLines(all(await ok(p.preview())));
    writeFileSync(process.env.UPGRADE_OUT ?? "/dev/null", update.join("\n"));
    expect(update[0]).toBe("    ~ pulumi-nodejs:dynamic/pulumi-iptables:PortRule: (update)");
    expect(update).toContain('      + comment      : "range"');
    // Only what changed is listed as changed: no key of the previous layout as removed, none of this one added.
    expect(update.flatMap((l) => /^ {6}[-+~] (\w+)/.exec(l)?.[1] ?? [])).toEqual(["comment", "rules"]);
    await ok(p.up());
    const block = await stateOf(p, "block");
    expect(block.rules.ipv4).toContain('--comment "range pulumi-iptables:');
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout).toContain(block.rules.ipv4);
    outputsBefore.block = (await p.outputs()).rules.block;
    made = await rulesets(h);

    // Refresh records the new layout: the outputs under `__`, read under their names.
    await ok(p.refresh());
    const [after] = (await p.resources()).filter((r) => String(r.urn).endsWith("::app"));
    for (const k of OUTPUT_KEYS) {
      expect(after.outputs, k).not.toHaveProperty(k);
      expect(after.outputs, k).toHaveProperty(`__${k}`);
    }
    const s = await stateOf(p, "app");
    expect(s).toMatchObject({ tag: before.outputs.tag, effective: true, line: before.outputs.line, port: 8080 });
    await ok(p.preview(["--expect-no-changes"]));
    await ok(p.up(["--expect-no-changes"]));
    expect((await p.outputs()).rules).toEqual(outputsBefore);
    expect(await rulesets(h)).toEqual(made);

    // Once refreshed, a replace lists only what changed (before the refresh it lists the outputs the previous
    // version recorded as removed: the engine shows the old state's keys, which no provider call rewrites).
    await setRules(p, "upgrade", [{ ...rules[0], args: { ...rules[0].args, port: 8081 } }, ranged]);
    const replace = ruleLines(all(await ok(p.preview())));
    expect(replace[0]).toBe("    +-pulumi-nodejs:dynamic/pulumi-iptables:PortRule: (replace)");
    expect(replace.flatMap((l) => /^ {6}[-+~] (\w+)/.exec(l)?.[1] ?? [])).toEqual(["port", "rules"]);
    await setRules(p, "upgrade", [rules[0], ranged]);

    // destroy removes exactly the two rules.
    await ok(p.destroy());
    expect(await rulesets(h)).toEqual(start);
  }, 300_000);
});
