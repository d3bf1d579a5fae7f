import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  HostKeyError,
  REDACTED,
  addressOf,
  describeHostKey,
  forgetPins,
  pinHostKey,
  pinsOf,
  fingerprintOf,
  hostKeyMatches,
  parseExpectedHostKey,
  redact,
  redactError,
  RemoteError,
  shellJoin,
  shellQuote,
} from "../../../provider/ssh";
import { unmetPin } from "../../../provider/ssh/hostkey";

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
      // MD5 is refused, by the schema and the SSH layer alike (see parseHostKey).
      expect(() => hostKeyMatches(info, k.md5)).toThrow(/SHA256/);
      expect(hostKeyMatches(info, `host.example,10.0.0.1 ${k.line}`)).toBe(true);
    });
  }

  it("a key that misses a pin is a HostKeyError naming both fingerprints, the source and how to accept a new key", () => {
    const [a, b] = keys;
    const seen = describeHostKey(Buffer.from(a.line.split(" ")[1], "base64"));
    expect(hostKeyMatches(seen, b.line)).toBe(false);
    forgetPins();
    const address = addressOf({ host: "198.18.1.2", port: 22, proxy: { host: "198.18.9.2", port: 2222 } });
    expect(address).toBe("198.18.1.2:22 via 198.18.9.2:2222");
    pinHostKey(address, b.line, "the key recorded in state when this rule was created");
    pinHostKey(address, b.lf, "again"); // the same key twice is one pin
    expect(pinsOf(address)).toHaveLength(1);
    const unmet = unmetPin(seen, pinsOf(address))!;
    expect(unmet.fingerprint).toBe(b.lf);
    const he = new HostKeyError("root@198.18.1.2:22", seen, unmet.fingerprint, unmet.source);
    expect(he.message).toContain(a.lf);
    expect(he.message).toContain(b.lf);
    expect(he.message).toContain("root@198.18.1.2:22");
    expect(he.message).toContain("recorded in state");
    expect(he.message).toMatch(/before any password or key was sent/);
    expect(he.message).toMatch(/set hostKey to it \(connection\.hostKey, or connection\.proxy\.hostKey/);
    expect(he.kind).toBe("hostkey");
    expect(unmetPin(describeHostKey(Buffer.from(b.line.split(" ")[1], "base64")), pinsOf(address))).toBeUndefined();
    expect(pinsOf("198.18.1.2:22")).toEqual([]); // the same host through no jump host is another address
    forgetPins();
  });

  it("rejects a hostKey in no known format with a message saying what is expected", () => {
    expect(() => parseExpectedHostKey("not a key")).toThrow(/OpenSSH public key line .*SHA256/);
    expect(() => parseExpectedHostKey(`MD5:${"ab:".repeat(15)}ab`)).toThrow(/SHA256 fingerprint/);
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

  it("redacts short secrets where they stand as a token, without mangling the words around them", () => {
    expect(redact('password "ab" rejected', ["ab"])).toBe(`password "${REDACTED}" rejected`);
    expect(redact("ab", ["ab"])).toBe(REDACTED);
    expect(redact("table: ab, abc, cab, x=ab;", ["ab"])).toBe(`table: ${REDACTED}, abc, cab, x=${REDACTED};`);
    expect(redact("got 7 of 17 (7)", ["7"])).toBe(`got ${REDACTED} of 17 (${REDACTED})`);
    expect(redact("ab ab ab", ["ab"])).toBe(`${REDACTED} ${REDACTED} ${REDACTED}`);
    expect(redact("é-pw-é", ["pw"])).toBe("é-[secret]-é");
    // 8 characters or more: everywhere, even inside a word.
    expect(redact("xhunter22x", ["hunter22"])).toBe(`x${REDACTED}x`);
    expect(redact("nothing here", [undefined, ""])).toBe("nothing here");
  });

  it("redactError redacts an error in place with its whole cause chain and string fields", () => {
    const inner = new Error("server said: bad password pw");
    const mid = new RemoteError("command failed for pw", "echo pw", 1, "pw\n", "no pw here", { cause: inner });
    const outer = new Error("update failed: pw", { cause: mid });
    const back = redactError(outer, ["pw"]);
    expect(back).toBe(outer);
    const all = [outer, mid, inner].flatMap((e) => [e.message, e.stack ?? "", JSON.stringify(e)]).join("\n");
    expect(all).not.toMatch(/\bpw\b/);
    expect(mid.command).toBe(`echo ${REDACTED}`);
    expect(mid).toBeInstanceOf(RemoteError);
  });
});
