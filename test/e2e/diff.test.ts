// Issue 24, item 6 (the diff), as the user meets it under the real CLI: `pulumi preview --diff` of a
// create, an in-place update (the comment) and a replace (the port) lists only what the user wrote, as
// check normalized it, and the exact rule per family; never the provider's internal inputs (identity, tag,
// unique, adopts, defaults, ports) nor its output-only fields, which state records under `__` keys that
// the engine's display hides (provider/state.ts, HIDDEN). The PortRule still has each output under its
// documented name.
// Run inside the lab, after `npm run build`:
//   bash test/lab/in-lab.sh npx vitest run test/e2e/diff.test.ts
import { describe, expect, it } from "vitest";
import type { Lab } from "../lab/lab";
import { all, EMPTY, ok, ruleLines, useLab } from "./harness";
import { createProject, type ProgramRule as Rule, setRules } from "./program";

/** One PortRule from the `rules` config, its outputs read under their documented names. */
const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { PortRule } = require("pulumi-iptables");
const cfg = new pulumi.Config();
const [r] = cfg.requireObject("rules");
const rule = new PortRule(r.name, { connection: cfg.requireSecretObject("connection"), ...r.args });
exports.web = { port: rule.port, ports: rule.ports, action: rule.action, protocol: rule.protocol, ipVersion: rule.ipVersion,
  comment: rule.comment, position: rule.position, tag: rule.tag, rules: rule.rules, effective: rule.effective,
  counters: rule.counters, line: rule.line, missing: rule.missing, persisted: rule.persisted };
`;

let lab: Lab;
useLab((l) => {
  lab = l;
});

/** The rule's lines every preview shows the same (T1: the tag of the rule as created). */
const HEAD = (op: string, header: string) => [
  `    ${op}pulumi-nodejs:dynamic/pulumi-iptables:PortRule: (${header})`,
  ...(header === "create" ? [] : ["        [id=T1]"]),
  "        [urn=urn:pulumi:dev::diff::pulumi-nodejs:dynamic/pulumi-iptables:PortRule::web]",
  '        action       : "ACCEPT"',
  "        adopt        : false",
  "        allowLockout : false",
  '        chain        : "INPUT"',
];
/** The rule text of each family, as `iptables -S` prints it. */
const text = (port: number, comment: string, tag: string) =>
  `"-A INPUT -p tcp -m tcp --dport ${port} -m comment --comment \\"${comment} ${tag}\\" -j ACCEPT"`;

describe("preview --diff of a PortRule", () => {
  it("lists only the user's inputs and the rule on create, update in place and replace", async () => {
    const h = await lab.addHost({ rules: { v4: EMPTY, v6: EMPTY } });
    const web: Rule = { name: "web", args: { port: 8080, action: "ACCEPT", comment: "web" } };
    const p = await createProject("diff", {
      files: { "index.js": PROGRAM },
      withPackage: true,
      config: {
        "diff:connection": { value: JSON.stringify(h.connection()), secret: true },
        "diff:rules": JSON.stringify([web]),
      },
    });
    const create = await ok(p.preview());
    expect(ruleLines(all(create))).toEqual([
      ...HEAD("+ ", "create"),
      '        comment      : "web"',
      "        connection   : [secret]",
      "        heal         : true",
      '        ipVersion    : "both"',
      "        persist      : false",
      "        port         : 8080",
      '        position     : "auto"',
      '        protocol     : "tcp"',
      "        rollbackAfter: 30",
      "        rules        : {",
      `            ipv4: ${text(8080, "web", "T1")}`,
      `            ipv6: ${text(8080, "web", "T1")}`,
      "        }",
      '        table        : "filter"',
    ]);
    await ok(p.up());
    // Every output under its documented name: the normalized inputs, and those recorded under `__`.
    const out = (await p.outputs()).web;
    expect(out).toMatchObject({ port: 8080, ports: "8080", action: "ACCEPT", protocol: "tcp", ipVersion: "both" });
    expect(out).toMatchObject({ comment: "web", position: "auto", effective: true, missing: [], persisted: false });
    expect(out.tag).toMatch(/^pulumi-iptables:diff\/dev\/web\/[0-9a-f]{12}$/);
    expect(out.rules.ipv4).toBe(text(8080, "web", out.tag).slice(1, -1).replaceAll('\\"', '"'));
    expect(out.counters).toEqual({ ipv4: { packets: 0, bytes: 0 }, ipv6: { packets: 0, bytes: 0 } });
    expect(out.line).toEqual({ ipv4: 1, ipv6: 1 });
    await ok(p.preview(["--expect-no-changes"]));

    await setRules(p, "diff", [{ ...web, args: { ...web.args, comment: "web two" } }]);
    const update = await ok(p.preview());
    expect(ruleLines(all(update))).toEqual([
      ...HEAD("~ ", "update"),
      '      ~ comment      : "web" => "web two"',
      "        connection   : [secret]",
      "        heal         : true",
      '        ipVersion    : "both"',
      "        persist      : false",
      "        port         : 8080",
      '        position     : "auto"',
      '        protocol     : "tcp"',
      "        rollbackAfter: 30",
      "      ~ rules        : {",
      `          ~ ipv4: ${text(8080, "web", "T1")} => ${text(8080, "web two", "T1")}`,
      `          ~ ipv6: ${text(8080, "web", "T1")} => ${text(8080, "web two", "T1")}`,
      "        }",
      '        table        : "filter"',
    ]);
    await ok(p.up());

    await setRules(p, "diff", [{ ...web, args: { ...web.args, comment: "web two", port: 8081 } }]);
    const replace = await ok(p.preview());
    expect(ruleLines(all(replace))).toEqual([
      ...HEAD("+-", "replace"),
      '        comment      : "web two"',
      "        connection   : [secret]",
      "        heal         : true",
      '        ipVersion    : "both"',
      "        persist      : false",
      "      ~ port         : 8080 => 8081",
      '        position     : "auto"',
      '        protocol     : "tcp"',
      "        rollbackAfter: 30",
      "      ~ rules        : {",
      `          ~ ipv4: ${text(8080, "web two", "T1")} => ${text(8081, "web two", "T2")}`,
      `          ~ ipv6: ${text(8080, "web two", "T1")} => ${text(8081, "web two", "T2")}`,
      "        }",
      '        table        : "filter"',
    ]);
    await ok(p.up());
    expect((await p.outputs()).web).toMatchObject({ port: 8081, ports: "8081", comment: "web two", effective: true });
    await ok(p.destroy());
  }, 240_000);
});
