// Issue 24, item 5: what the user reads under the real `pulumi` CLI. Each message on the PortRule it is
// about (not on the Stack), one message per failure (no Stack-level echo, no JavaScript stack trace),
// first words that say what to do.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../lab/lab";
import type { CliResult } from "../pulumi";
import { all, EMPTY, ok, useLab } from "./harness";
import { programProject, programProjectVia } from "./program";

const APP_IN_V4 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:APP - [0:0]\nCOMMIT\n";
const RULE = "pulumi-nodejs:dynamic/pulumi-iptables:PortRule (app)";

let lab: Lab;
let h: LabHost;
useLab(async (l) => {
  lab = l;
  h = await lab.addHost({ rules: { v4: APP_IN_V4, v6: EMPTY } });
});

/** The Diagnostics block of a CLI run, by section header ("pulumi:pulumi:Stack (x-dev)", RULE). */
function diagnostics(r: CliResult): Record<string, string> {
  const lines = all(r).split("\n");
  const out: Record<string, string> = {};
  let at = lines.indexOf("Diagnostics:");
  let header = "";
  while (at >= 0 && ++at < lines.length && (lines[at] === "" || lines[at].startsWith(" "))) {
    const m = /^ {2}(\S.*):$/.exec(lines[at]);
    if (m) header = m[1];
    else if (header && lines[at]) out[header] = `${out[header] ?? ""}${lines[at].trim()}\n`;
  }
  return out;
}

/** The Stack's section of the Diagnostics, whatever the project is called. */
const stackSection = (d: Record<string, string>) =>
  Object.entries(d).find(([k]) => k.startsWith("pulumi:pulumi:Stack"))?.[1] ?? "";

/** A private key encrypted with a passphrase. */
function encryptedKey(): string {
  const d = mkdtempSync(join(tmpdir(), "pit-key-"));
  try {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "a-passphrase", "-C", "enc", "-f", join(d, "k")]);
    return readFileSync(join(d, "k"), "utf8");
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

describe("messages on the PortRule", () => {
  it("a login that is not root, without connection.sudo: the first words say so, on the rule", async () => {
    const p = await programProjectVia("nosudo", h.connection("sudo"), [
      { name: "app", args: { port: 9601, action: "ACCEPT" } },
    ]);
    const r = await p.up();
    expect(r.code).not.toBe(0);
    const d = diagnostics(r);
    expect(d[RULE]).toMatch(
      new RegExp(
        `^error: not root: logged in as pit-ops \\(uid \\d+\\) on pit-ops@${h.v4.replace(/\./g, "\\.")}:22, and connection\\.sudo is not set: ` +
          "iptables and the lock file /run/pulumi-iptables\\.lock need root\\. Log in as root, or set connection\\.sudo: true " +
          "\\(the user needs passwordless sudo for sh\\)\n$",
      ),
    );
    expect(all(r)).not.toMatch(/Permission denied|ended in the middle of a step/);
    expect(stackSection(d)).toBe("error: update failed\n");
  });

  it("warnings and notes of a create appear on the rule, not on the Stack", async () => {
    const p = await programProject("listen", h, [{ name: "app", args: { port: 9603, action: "ACCEPT" } }]);
    const r = await ok(p.up());
    const d = diagnostics(r);
    expect(d[RULE]).toContain(
      `warning: nothing listens on tcp 9603 on ${h.v4}: the port is open, but no service answers on it\n`,
    );
    expect(d[RULE]).toMatch(/^-I INPUT 1 -p tcp -m tcp --dport 9603 .* on \S+ \(ipv4\): end of chain/);
    expect(stackSection(d)).toBe("");
    await ok(p.destroy());
  });

  it("an ACCEPT on FORWARD does not warn that nothing listens (that is for packets to the host)", async () => {
    const p = await programProject("fwd", h, [
      { name: "app", args: { port: 9602, action: "ACCEPT", chain: "FORWARD" } },
    ]);
    const r = await ok(p.up());
    expect(all(r)).not.toContain("nothing listens");
    expect(diagnostics(r)[RULE]).toMatch(/^-I FORWARD 1 -p tcp -m tcp --dport 9602 .* \(ipv4\): end of chain/);
    await ok(p.destroy());
  });

  it("a chain that exists only in IPv4, with ipVersion both: the error names the family", async () => {
    const p = await programProject("app", h, [
      { name: "app", args: { port: 9606, action: "ACCEPT", chain: "APP", ipVersion: "both" } },
    ]);
    const r = await p.up();
    expect(r.code).not.toBe(0);
    expect(diagnostics(r)[RULE]).toBe("error: chain APP does not exist in the filter table of IPv6 (ip6tables)\n");
    expect((await h.iptables(4, ["-S", "APP"])).stdout).not.toContain("9606");
  });

  it("a bad connection field in preview: named by its path, no value shown for the secret connection", async () => {
    const p = await programProjectVia("nil", { ...h.connection(), port: "abc", dialErrorLimit: 0 }, [
      { name: "app", args: { port: 9607, action: "ACCEPT" } },
    ]);
    const r = await p.preview();
    expect(r.code).not.toBe(0);
    const out = all(r);
    expect(out).not.toContain("<nil>");
    expect(out).toContain(
      "error: pulumi-nodejs:dynamic/pulumi-iptables:PortRule resource 'app' has a problem: connection.port: must be the SSH port as a number, e.g. 22",
    );
    expect(out).toContain(
      "resource 'app' has a problem: connection.dialErrorLimit: must be from 1 to 1000 attempts, or -1 for no limit",
    );
  });

  it("an encrypted private key without privateKeyPassword: found in preview", async () => {
    const p = await programProjectVia("enc", { ...h.connection(), privateKey: encryptedKey() }, [
      { name: "app", args: { port: 9608, action: "ACCEPT" } },
    ]);
    const r = await p.preview();
    expect(r.code).not.toBe(0);
    expect(all(r)).toContain(
      `error: pulumi-nodejs:dynamic/pulumi-iptables:PortRule resource 'app' has a problem: connection.privateKey: the privateKey for root@${h.v4}:22 is encrypted: set privateKeyPassword`,
    );
    expect(all(r)).not.toContain("a-passphrase");
  });

  it("a dial that keeps failing: the first retry names dialErrorLimit and perDialTimeout, on the rule", async () => {
    const p = await programProjectVia("refused", { ...h.connection(), port: 2299, dialErrorLimit: 3 }, [
      { name: "app", args: { port: 9609, action: "ACCEPT" } },
    ]);
    const r = await p.up();
    expect(r.code).not.toBe(0);
    const d = diagnostics(r);
    expect(d[RULE]).toContain(
      `warning: Dial 1/3 to ${h.v4}:2299 failed: ECONNREFUSED: retrying in 1s; it keeps dialling up to dialErrorLimit (3) dials, ` +
        "each waiting up to perDialTimeout (15s): lower them in the connection to fail sooner\n",
    );
    expect(d[RULE]).toContain(
      `error: cannot connect to root@${h.v4}:2299: 3 dial attempts failed, the last with ECONNREFUSED`,
    );
    expect(stackSection(d)).toBe("error: update failed\n");
  });
});

describe("one message per failure", () => {
  it("refresh and destroy refused by the host key: the error once, on the rule, with no stack trace", async () => {
    const t = await lab.addHost();
    const p = await programProject("hkr", t, [{ name: "app", args: { port: 9605, action: "ACCEPT" } }]);
    await ok(p.up());
    const impostor = await t.impersonate();
    try {
      for (const r of [await p.refresh(), await p.destroy()]) {
        expect(r.code).not.toBe(0);
        const out = all(r);
        const d = diagnostics(r);
        expect(d[RULE]).toMatch(/^error: host key verification failed for root@[^\n]*\n$/);
        expect(stackSection(d)).toBe("error: update failed\n");
        expect(out).not.toContain("HostKeyError");
        expect(out).not.toMatch(/\.ts:\d+|\.js:\d+|^\s+at /m);
      }
    } finally {
      await impostor.leave();
    }
    await ok(p.destroy());
  });
});
