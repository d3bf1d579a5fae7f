// Under the real pulumi CLI: the lockout guard for removals (a default-DROP host whose SSH is open
// only through a PortRule), and canary secrets that must never show up in state, the serialized
// provider, the CLI's most verbose output, the errors of wrong credentials, or files left on the host.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { CliResult, PulumiProject } from "../pulumi";
import { all, useLab } from "./harness";
import { createProject, programProject, setRules } from "./program";

let lab: Lab;
useLab((l) => {
  lab = l;
});

describe("the lockout guard, removing the rule that lets the provider in", () => {
  it("refuses removing the PortRule that accepts SSH on a default-DROP host, unless allowLockout; then it warns", async () => {
    // Default DROP, as in the allow guide; SSH from the workstation is open only by a hand rule at first.
    const guide = (extra: string) =>
      `*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n${extra}COMMIT\n`;
    const host = await lab.addHost({ rules: { v4: guide("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n") } });
    const name = "lockout";
    const ssh = (extra: Record<string, unknown> = {}) => [
      { name: "ssh", args: { port: 22, action: "ACCEPT", ipVersion: "ipv4", ...extra } },
    ];
    const p = await programProject(name, host, ssh());
    const up = await p.up();
    expect(up.code, all(up)).toBe(0);
    // The hand rule goes: from now on the PortRule alone lets the provider in.
    expect(
      (await host.iptables(4, ["-D", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"])).code,
    ).toBe(0);
    const chain = async () => (await host.iptables(4, ["-S", "INPUT"])).stdout;
    const before = await chain();
    expect(before).toMatch(/--dport 22 .*pulumi-iptables:lockout\/dev\/ssh\/.* -j ACCEPT/);

    await setRules(p, name, []);
    const refused = await p.up();
    expect(refused.code, all(refused)).not.toBe(0);
    expect(all(refused)).toMatch(
      new RegExp(
        `removing the rule -A INPUT -p tcp -m tcp --dport 22 .* would lock the provider out of the host: new SSH connections from ${host.clientV4.replace(/\./g, "\\.")} to port 22 are accepted now .* and would then be refused \\(by the INPUT policy DROP\\)`,
      ),
    );
    expect(all(refused)).toMatch(/set allowLockout: true on this PortRule and run pulumi up, then remove or change it/);
    expect(await chain()).toBe(before);
    expect(await p.resources()).toHaveLength(1);
    expect(await lab.probe(host, 22)).toBe("open");

    // Opted in on the rule first (an update in place), then removed: it goes, with a warning.
    await setRules(p, name, ssh({ allowLockout: true }));
    const optIn = await p.up();
    expect(optIn.code, all(optIn)).toBe(0);
    await setRules(p, name, []);
    const removed = await p.up();
    expect(removed.code, all(removed)).toBe(0);
    expect(all(removed)).toMatch(
      /warning: (\[runtime\] )?allowLockout is set, so this goes ahead: removing the rule .* would lock the provider out/,
    );
    expect(await chain()).not.toContain("pulumi-iptables:");
    // The kernel agrees with the guard: a new SSH connection is dropped now.
    expect(await lab.probe(host, 22)).toBe("timeout");
  });
});

describe("issue 21.7: allowLockout on a replacement counts for the old rule's removal and its confirmation", () => {
  it("a replacement with allowLockout whose old rule's removal locks the provider out goes ahead and stays; without it, refused", async () => {
    const start = `*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n`;
    // The watchdog reverts an unconfirmed change after rollbackAfter seconds: waiting past it shows what stays.
    const rollbackAfter = 10;
    const ssh = (extra: Record<string, unknown> = {}) => [
      { name: "ssh", args: { port: 22, action: "ACCEPT", ipVersion: "ipv4", rollbackAfter, ...extra } },
    ];
    /** A default-DROP host whose SSH is open only through the PortRule "ssh" (port 22), as in the guard test. */
    const onlyThroughPortRule = async (name: string) => {
      const host = await lab.addHost({ rules: { v4: start } });
      const p = await programProject(name, host, ssh());
      const up = await p.up();
      expect(up.code, all(up)).toBe(0);
      expect(
        (await host.iptables(4, ["-D", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"])).code,
      ).toBe(0);
      return { host, p };
    };
    const chain = async (host: LabHost) => (await host.iptables(4, ["-S", "INPUT"])).stdout;
    const old = (name: string) => new RegExp(`--dport 22 .*pulumi-iptables:${name}/dev/ssh/.* -j ACCEPT`);
    const moved = (name: string) => new RegExp(`--dport 2222 .*pulumi-iptables:${name}/dev/ssh/.* -j ACCEPT`);

    // Without allowLockout: the replacement's new rule goes in, the old rule's removal is refused.
    const a = await onlyThroughPortRule("lockrepl");
    await setRules(a.p, "lockrepl", ssh({ port: 2222 }));
    const refused = await a.p.up();
    expect(refused.code, all(refused)).not.toBe(0);
    expect(all(refused)).toMatch(/would lock the provider out of the host/);
    expect(all(refused)).toMatch(/set allowLockout: true on this PortRule and run pulumi up, then remove or change it/);
    await new Promise((r) => setTimeout(r, (rollbackAfter + 3) * 1000));
    expect(await chain(a.host)).toMatch(old("lockrepl"));
    expect(await lab.probe(a.host, 22)).toBe("open");

    // With allowLockout on the new inputs: the old rule goes, the up succeeds, and the delete stays.
    const b = await onlyThroughPortRule("lockoptin");
    await setRules(b.p, "lockoptin", ssh({ port: 2222, allowLockout: true }));
    const replaced = await b.p.up();
    expect(replaced.code, all(replaced)).toBe(0);
    expect(all(replaced)).toMatch(
      /warning: (\[runtime\] )?allowLockout is set, so this goes ahead: removing the rule .*--dport 22 .* would lock the provider out/,
    );
    // Past the rollback's deadline the old rule is still gone (the provider itself can no longer connect:
    // the lab's own listing tells).
    await new Promise((r) => setTimeout(r, (rollbackAfter + 3) * 1000));
    const after = await chain(b.host);
    expect(after).not.toMatch(old("lockoptin"));
    expect(after).toMatch(moved("lockoptin"));
    expect(await lab.probe(b.host, 22)).toBe("timeout");
  });
});

// Canaries: each is a secret that must not appear anywhere the operator or a log collector can read.
const CANARY = {
  password: "canary-Pw-4J8xQz",
  passphrase: "canary-Pp-7Tn2Lw",
  wrongPassword: "canary-Wr-9Hs3Kd",
  wrongPassphrase: "canary-Wp-2Mv6Rb",
};
// Each secret its own secret config value, as an operator keeps them (`pulumi config set --secret`).
const CANARY_PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { PortRule } = require("pulumi-iptables");
const cfg = new pulumi.Config();
const base = cfg.requireObject("base");
const byKey = { ...base, privateKey: cfg.requireSecret("privateKey"), privateKeyPassword: cfg.requireSecret("passphrase") };
const byPassword = { ...base, user: cfg.get("passwordUser") ?? base.user, password: cfg.requireSecret("password") };
new PortRule("by-key", { connection: byKey, port: 2271, action: "ACCEPT", ipVersion: "ipv4" });
new PortRule("by-password", { connection: byPassword, port: 2272, action: "ACCEPT", ipVersion: "ipv4" });
`;

/** The key of a secret in one of the engine's property or config dumps, right before its value. */
const DUMP_KEY = /(password|privateKeyPassword|privateKey|passphrase|value)[:=]\{(&\{\{)?/g;

/** Where a canary shows other than as the value of its key in an engine log record's dump (with context). */
function leaksOutsideEngineDumps(text: string): string[] {
  const leaks: string[] = [];
  for (const line of text.split("\n")) {
    for (const [what, value] of [...Object.entries(CANARY), ["private key", keyLine] as const]) {
      for (let at = line.indexOf(value); at >= 0; at = line.indexOf(value, at + 1)) {
        const before = line.slice(0, at);
        const keys = [...before.matchAll(DUMP_KEY)];
        const last = keys[keys.length - 1];
        const inDump =
          line.startsWith('{"time":') && last !== undefined && !before.slice(last.index + last[0].length).includes("}");
        if (!inDump) leaks.push(`${what}: ...${line.slice(Math.max(0, at - 300), at)}<here>`);
      }
    }
  }
  return leaks;
}

/** Every file under dir (the state backend, the stack's history and backups, ...), as one text. */
function allFiles(dir: string): string {
  const texts: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const path = join(d, f);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else if (st.isFile() && st.size < 50 << 20) texts.push(readFileSync(path, "latin1"));
    }
  };
  walk(dir);
  return texts.join("\n");
}

/** A line from the middle of the canary private key (set once the key exists). */
let keyLine = "";

function expectNoCanary(text: string, where: string) {
  for (const [what, value] of [...Object.entries(CANARY), ["private key", keyLine] as const]) {
    if (!value) throw new Error("no canary private key yet");
    const at = text.indexOf(value);
    expect(at < 0, `${what} in ${where}: ...${text.slice(Math.max(0, at - 600), at + 200)}...`).toBe(true);
  }
}

describe("canary secrets", () => {
  let host: LabHost;
  let p: PulumiProject;
  let key: string;
  beforeAll(async () => {
    host = await lab.addHost();
    // A key with a passphrase, and a password: both canaries, for the NOPASSWD sudo user.
    const f = join(host.dir, "canary_ed25519");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", CANARY.passphrase, "-C", "canary", "-f", f]);
    key = readFileSync(f, "utf8");
    keyLine = key.split("\n")[2];
    execFileSync("rm", ["-f", f]);
    await host.sh(`cat ${f}.pub >> ${host.dir}/ssh/authorized_keys && rm -f ${f}.pub`);
    await host.sh(`echo 'pit-ops:${CANARY.password}' | chpasswd`);
    p = await createProject("canary", { files: { "index.js": CANARY_PROGRAM }, withPackage: true });
  });

  /** The logins: the key with its passphrase, the password (and whose it is). */
  const configure = async (passphrase: string, password: string, passwordUser = "pit-ops") => {
    await p.must([
      "config",
      "set",
      "canary:base",
      "--",
      JSON.stringify({ host: host.v4, user: "pit-ops", sudo: true }),
    ]);
    await p.must(["config", "set", "canary:passwordUser", "--", passwordUser]);
    await p.must(["config", "set", "--secret", "canary:privateKey", "--", key]);
    await p.must(["config", "set", "--secret", "canary:passphrase", "--", passphrase]);
    await p.must(["config", "set", "--secret", "canary:password", "--", password]);
  };

  it("never appear in state, the serialized provider, -v=9 output, wrong-credential errors or host files", async () => {
    await configure(CANARY.passphrase, CANARY.password);
    const runs: [string, CliResult][] = [];
    const up = await p.up(["--logtostderr", "-v=9"]);
    expect(up.code, all(up)).toBe(0);
    runs.push(["up -v=9", up]);
    const exported = await p.must(["stack", "export"]);
    expectNoCanary(exported.stdout, "pulumi stack export");
    const resources = JSON.parse(exported.stdout).deployment.resources.filter((r: { type: string }) =>
      r.type.startsWith("pulumi-nodejs:dynamic"),
    );
    expect(resources).toHaveLength(2);
    for (const r of resources) {
      expectNoCanary(r.inputs.__provider, "the serialized provider");
      expect(r.outputs.connection?.["4dabf18193072939515e22adb298388d"]).toBe("1b47061264138c4ac30d75fd1eb44270"); // a secret
    }
    const refresh = await p.refresh(["--logtostderr", "-v=9"]);
    expect(refresh.code, all(refresh)).toBe(0);
    runs.push(["refresh -v=9", refresh]);

    // Wrong credentials, one run each (a wrong passphrase fails check, which may end the run before the
    // other resource's update starts): a wrong password is a credentials-only update that must prove the
    // login before it is kept.
    await configure(CANARY.wrongPassphrase, CANARY.password);
    const wrongKey = await p.up(["--continue-on-error", "--logtostderr", "-v=9"]);
    expect(wrongKey.code, all(wrongKey)).not.toBe(0);
    expect(all(wrongKey)).toContain("privateKeyPassword does not decrypt the privateKey for pit-ops@");
    runs.push(["up with a wrong passphrase", wrongKey]);
    await configure(CANARY.passphrase, CANARY.wrongPassword);
    const wrong = await p.up(["--continue-on-error", "--logtostderr", "-v=9"]);
    expect(wrong.code, all(wrong)).not.toBe(0);
    expect(all(wrong)).toMatch(/authentication as pit-ops@\S+ failed \(tried: password/);
    runs.push(["up with a wrong password", wrong]);
    // A login that works but whose sudo asks for a password: refused too, before it reaches state.
    await configure(CANARY.passphrase, "lab-password-1", "pit-nopw");
    const nosudo = await p.up();
    expect(nosudo.code, all(nosudo)).not.toBe(0);
    expect(all(nosudo)).toMatch(/sudo on pit-nopw@\S+ asks for a password/);
    runs.push(["up with a sudo that asks", nosudo]);
    // State still holds the working logins: destroy uses them.
    await configure(CANARY.passphrase, CANARY.password);
    const destroy = await p.destroy(["--logtostderr", "-v=9"]);
    expect(destroy.code, all(destroy)).toBe(0);
    runs.push(["destroy -v=9", destroy]);

    // The engine of Pulumi 3.248 itself logs secrets at -v=7 and up, for every resource: the property maps
    // of the RPCs it handles ("Unmarshaling property for RPC[...]: password={...}", sdk/go/common/resource/
    // plugin/rpc.go; "Planner decided to create ... (inputs=map[... password:{...}])") and the decrypted
    // config ("canary:password:{&{{...}}}"). Nothing a provider does keeps its inputs out of those dumps.
    // So: the operator's display (every line that is not an engine log record) holds no canary, and in the
    // engine's log records a canary appears only as the value of its own key in such a dump, never in a
    // message, an error or a log line of the provider.
    for (const [what, r] of runs) expect(leaksOutsideEngineDumps(all(r)), what).toEqual([]);
    expectNoCanary(allFiles(join(p.dir, ".state")), "the state backend's files");
    // What the provider leaves on the host: its /run (lock, undo files), the rules files, the host's /etc
    // and homes (an overlay upper layer in the lab), and the scripts' stderr files (mktemp in /tmp, which
    // this lab host shares with the machine: only those).
    const left = await host.sh(
      `grep -rlF -e '${CANARY.password}' -e '${CANARY.passphrase}' -e '${CANARY.wrongPassword}' -e '${CANARY.wrongPassphrase}' -e '${keyLine}' /run /etc/iptables ${host.dir}/etc ${host.dir}/home $(find /tmp -maxdepth 1 -name 'tmp.*' -type f) 2>/dev/null || true`,
    );
    expect(left.trim()).toBe("");
  });
});
