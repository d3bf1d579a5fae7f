// The README's "Use it on a real host" program, pasted as it is into a fresh TypeScript project (issue
// 24): the block is read from README.md, its host and user are the only words changed (to a lab host and
// its sudo user: what every reader changes), the project is compiled with tsc and run by the real CLI
// with the packed package. Probes from the client namespace over IPv4 and IPv6 show what each rule does,
// and destroy leaves the host as it was.
// Run inside the lab, after `npm run build`:
//   bash test/lab/in-lab.sh npx vitest run test/e2e/readme.test.ts
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import { exec, type PulumiProject, ROOT } from "../pulumi";
import { EMPTY, ok, rulesets, useLab } from "./harness";
import { createProject } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** The first TypeScript block of the README's section `heading`, as written there. */
function readmeBlock(heading: string): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README.md has no section "${heading}"`);
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!block) throw new Error(`README.md's "${heading}" has no \`\`\`ts block`);
  return block[1];
}

/** The reader's edit: their host and user for the README's. Fails if the README no longer says them. */
function forHost(program: string, host: string, user: string): string {
  for (const word of ['host: "203.0.113.10"', 'user: "deploy"'])
    if (!program.includes(word)) throw new Error(`the README's program no longer says ${word}: update this test`);
  return program.replace('host: "203.0.113.10"', `host: "${host}"`).replace('user: "deploy"', `user: "${user}"`);
}

describe("the README's program on a lab host", () => {
  let h: LabHost;
  let p: PulumiProject;
  let before: Awaited<ReturnType<typeof rulesets>>;
  beforeAll(async () => {
    h = await lab.addHost({ rules: { v4: EMPTY, v6: EMPTY }, listen: { tcp: [2222, 8080, 9050] } });
    const conn = h.connection("sudo");
    p = await createProject("readme", {
      files: {
        "index.ts": forHost(readmeBlock("## Use it on a real host"), conn.host, conn.user),
        "Pulumi.yaml": "name: readme\nruntime:\n  name: nodejs\n  options:\n    typescript: false\nmain: index.js\n",
      },
      withPackage: true,
      config: { "readme:sshKey": { value: conn.privateKey, secret: true } },
    });
    // Compiled as a TypeScript project does (the template's module kind), with the packed package's types.
    const tsc = await exec(
      join(ROOT, "node_modules/.bin/tsc"),
      ["--strict", "--module", "commonjs", "--target", "es2020", "--skipLibCheck", "false", "index.ts"],
      { cwd: p.dir },
    );
    if (tsc.code !== 0) throw new Error(`tsc of the README's program failed:\n${tsc.stdout}${tsc.stderr}`);
    before = await rulesets(h);
  }, 180_000);

  it("up does what the README says of each rule, over IPv4 and IPv6; destroy removes exactly them", async () => {
    await ok(p.up());
    const probe = async (port: number) =>
      Promise.all([4, 6].map((family) => lab.probe(h, port, { family: family as 4 | 6 })));
    // allow-app: ACCEPT 2222 (both); block-admin: DROP 8080 (both, no ipVersion); reject-range: REJECT
    // 9000-9100 with tcp-reset (both).
    expect(await probe(2222)).toEqual(["open", "open"]);
    expect(await probe(8080)).toEqual(["timeout", "timeout"]);
    expect(await probe(9050)).toEqual(["refused", "refused"]);
    // dns: ACCEPT udp 53 from 10.0.0.0/8, IPv4 only: the source's family.
    const now = await rulesets(h);
    expect(now[4]).toMatch(/-A INPUT -s 10\.0\.0\.0\/8 -p udp -m udp --dport 53 .*-j ACCEPT/);
    expect(now[6]).not.toMatch(/--dport 53 /);
    await ok(p.destroy());
    expect(await rulesets(h)).toEqual(before);
  }, 300_000);
});
