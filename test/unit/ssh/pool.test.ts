// The pool (provider/ssh/pool.ts): its keys, addresses, and one session per key. No network: nothing
// here connects.
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { CheckedConnection } from "../../../provider/rules";
import { addressOf, closeAll, getSession, secretsOf, sessionKey } from "../../../provider/ssh";
import { hostPort } from "../../../provider/ssh/pool";

afterEach(closeAll);

/** A checked connection to `host` as user u with a password. */
const connection = (host: string): CheckedConnection => ({
  host,
  port: 22,
  user: "u",
  password: "x",
  dialErrorLimit: 10,
  perDialTimeout: 15,
  maxConcurrentDials: 8,
  sudo: false,
});

describe("the pool", () => {
  it("keeps secrets out of the pool key, even a one-character password", () => {
    const conn = connection("h");
    const k = sessionKey(conn);
    expect(k).not.toBe(sessionKey({ ...conn, password: "y" }));
    expect(k).toBe(sessionKey({ ...conn }));
    // Keyed with a secret of this process: the hash of a short password cannot be looked up.
    const plain = createHash("sha256")
      .update(JSON.stringify(["x", null, null, null]))
      .digest("hex")
      .slice(0, 16);
    expect(k).not.toContain(plain);
    expect(sessionKey({ ...conn, proxy: { ...conn, host: "jump" } })).toContain("via u@jump:22");
  });

  it("keys the expected host key, sudo and the jump host's credentials, and brackets an IPv6 address", () => {
    const conn = connection("fd00::2");
    expect(sessionKey(conn)).toMatch(/^u@\[fd00::2\]:22 creds=[0-9a-f]{16}$/);
    expect(sessionKey({ ...conn, sudo: true })).toMatch(/ sudo$/);
    expect(sessionKey({ ...conn, hostKey: " SHA256:abc " })).toMatch(/ hostkey=SHA256:abc$/);
    const jump = { ...conn, host: "198.18.9.2", user: "j" };
    expect(sessionKey({ ...conn, proxy: jump })).not.toBe(sessionKey({ ...conn, proxy: { ...jump, password: "y" } }));
    expect(sessionKey({ ...conn, agentSocketPath: "/a" })).not.toBe(sessionKey(conn));
    expect(hostPort("198.18.1.2", 2222)).toBe("198.18.1.2:2222");
    expect(addressOf({ host: "fd00::2", port: 22 })).toBe("[fd00::2]:22");
  });

  it("gives one session per key, takes the latest caller's logger, and empties on closeAll", async () => {
    const conn: CheckedConnection = {
      host: "198.18.1.2",
      port: 22,
      user: "u",
      password: "pw-of-the-pool",
      dialErrorLimit: 1,
      perDialTimeout: 5,
      maxConcurrentDials: 8,
      sudo: false,
      proxy: {
        host: "198.18.9.2",
        port: 22,
        user: "j",
        password: "pw-of-the-jump",
        dialErrorLimit: 1,
        perDialTimeout: 5,
        maxConcurrentDials: 8,
      },
    };
    const lines: string[] = [];
    const a = getSession(conn);
    const b = getSession({ ...conn }, { debug: (m) => lines.push(m) });
    expect(b).toBe(a);
    expect(a.proxy).toBe(getSession({ ...conn.proxy!, sudo: false }));
    a.log.debug?.("sent pw-of-the-pool via pw-of-the-jump");
    expect(lines).toEqual(["sent [secret] via [secret]"]);
    expect(getSession({ ...conn, user: "v" })).not.toBe(a);
    await closeAll();
    expect(getSession(conn)).not.toBe(a);
  });

  it("knows a connection's secrets and its jump host's, and nothing else", () => {
    expect(secretsOf({ password: "p", privateKey: "k", privateKeyPassword: "kp", proxy: { password: "jp" } })).toEqual([
      "p",
      "k",
      "kp",
      "jp",
      undefined,
      undefined,
    ]);
  });
});
