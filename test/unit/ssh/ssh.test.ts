import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  HostKeyError,
  describeHostKey,
  fingerprintOf,
  hostKeyMatches,
  parseExpectedHostKey,
  redact,
  sessionKey,
  shellJoin,
  shellQuote,
  verifyHostKey,
} from "../../../provider/ssh";
import type { CheckedConnection } from "../../../provider/rules";

/** What a real sh makes of a quoted word: its one word back (or a note of how many words it became). */
function throughSh(quoted: string): string {
  return execFileSync("sh", ["-c", `set -- ${quoted}; printf %s "$1"; [ $# -eq 1 ] || printf ' [%s words]' $#`], {
    encoding: "utf8",
  });
}

describe("shellQuote", () => {
  const cases = [
    "",
    "plain",
    "-I",
    "a b",
    "it's",
    "''",
    '"double"',
    "$HOME $(id) `id` ${x}",
    "semi; reboot #",
    "back\\slash",
    "new\nline",
    "tab\there",
    "*?[a-z]~",
    "!history",
    "ünïcödé ✓",
    "'; rm -rf / #'",
    "--comment=pulumi:stack/name",
  ];
  for (const s of cases) {
    it(`round-trips ${JSON.stringify(s)} through sh`, () => {
      expect(throughSh(shellQuote(s))).toBe(s);
    });
  }

  it("leaves plainly safe words readable and quotes the rest", () => {
    expect(shellQuote("iptables")).toBe("iptables");
    expect(shellQuote("198.18.0.0/15")).toBe("198.18.0.0/15");
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote("a b")).toBe("'a b'");
  });

  it("refuses NUL bytes", () => {
    expect(() => shellQuote("a\0b")).toThrow(/NUL/);
  });

  it("shellJoin keeps argv boundaries through sh", () => {
    const argv = ["printf", "[%s]", "a b", "c'd", "", "$x"];
    const out = execFileSync("sh", ["-c", shellJoin(argv)], { encoding: "utf8" });
    expect(out).toBe("[a b][c'd][][$x]");
  });

  it("round-trips random strings", () => {
    const chars = `ab '"\\$\`!*?;&|<>(){}[]~#\n\t=%é`;
    for (let i = 0; i < 200; i++) {
      let s = "";
      const n = Math.floor(Math.random() * 12);
      for (let j = 0; j < n; j++) s += chars[Math.floor(Math.random() * chars.length)];
      expect(throughSh(shellQuote(s))).toBe(s);
    }
  });
});

describe("host key fingerprints", () => {
  const dir = mkdtempSync(join(tmpdir(), "pit-ssh-unit-"));
  const keys = ["ed25519", "rsa", "ecdsa"].map((t) => {
    const f = join(dir, `k_${t}`);
    execFileSync("ssh-keygen", ["-q", "-t", t, "-N", "", "-C", `c-${t}`, "-f", f]);
    const line = readFileSync(`${f}.pub`, "utf8").trim();
    const lf = execFileSync("ssh-keygen", ["-l", "-f", `${f}.pub`], { encoding: "utf8" }).split(" ")[1];
    const md5 = execFileSync("ssh-keygen", ["-l", "-E", "md5", "-f", `${f}.pub`], { encoding: "utf8" }).split(" ")[1];
    return { t, line, lf, md5 };
  });

  for (const k of keys) {
    it(`matches ssh-keygen -lf for ${k.t}`, () => {
      const blob = Buffer.from(k.line.split(" ")[1], "base64");
      expect(fingerprintOf(blob)).toBe(k.lf);
      const info = describeHostKey(blob);
      expect(info.fingerprint).toBe(k.lf);
      expect(info.algorithm).toBe(k.line.split(" ")[0]);
      expect(info.publicKey).toBe(k.line.split(" ").slice(0, 2).join(" "));
      expect(parseExpectedHostKey(k.line).fingerprint).toBe(k.lf);
      expect(hostKeyMatches(info, k.line)).toBe(true);
      expect(hostKeyMatches(info, k.lf)).toBe(true);
      expect(hostKeyMatches(info, `  ${k.lf}=  `)).toBe(true);
      expect(hostKeyMatches(info, k.md5)).toBe(true);
      expect(hostKeyMatches(info, `host.example,10.0.0.1 ${k.line}`)).toBe(true);
    });
  }

  it("refuses another key with a HostKeyError naming both fingerprints", () => {
    const [a, b] = keys;
    const seen = describeHostKey(Buffer.from(a.line.split(" ")[1], "base64"));
    expect(hostKeyMatches(seen, b.line)).toBe(false);
    let err: unknown;
    try {
      verifyHostKey(seen, b.line, "root@198.18.1.2:22");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HostKeyError);
    const he = err as HostKeyError;
    expect(he.message).toContain(a.lf);
    expect(he.message).toContain(b.lf);
    expect(he.message).toContain("root@198.18.1.2:22");
    expect(he.kind).toBe("hostkey");
    expect(() => verifyHostKey(seen, a.lf)).not.toThrow();
  });

  it("rejects a hostKey in no known format with a message saying what is expected", () => {
    expect(() => parseExpectedHostKey("not a key")).toThrow(/OpenSSH public key line .*SHA256/);
    expect(() => parseExpectedHostKey("SHA256:short")).toThrow();
    expect(() => parseExpectedHostKey("ssh-ed25519 AAAAC3NzaC1yc2EAAAA")).toThrow();
  });
});

describe("secrets", () => {
  it("redacts passwords and private key lines", () => {
    const key =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----";
    const text = `echo hunter22 && echo b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ`;
    const out = redact(text, ["hunter22", key]);
    expect(out).not.toContain("hunter22");
    expect(out).not.toContain("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ");
  });

  it("redacts a secret also as it appears quoted for sh", () => {
    const pw = "pa'ss-word";
    const out = redact(`sh -c ${shellQuote(`echo ${pw}`)}`, [pw]);
    expect(out).not.toContain("pa'\\''ss-word");
    expect(out).toContain("[secret]");
  });

  it("keeps secrets out of the pool key", () => {
    const conn: CheckedConnection = {
      host: "h",
      port: 22,
      user: "u",
      password: "hunter22",
      dialErrorLimit: 10,
      perDialTimeout: 15,
      sudo: false,
    };
    const k = sessionKey(conn);
    expect(k).not.toContain("hunter22");
    expect(k).not.toBe(sessionKey({ ...conn, password: "other" }));
    expect(k).toBe(sessionKey({ ...conn }));
    expect(sessionKey({ ...conn, proxy: { ...conn, host: "jump" } })).toContain("via u@jump:22");
  });
});
