// ssh2's configuration for one handshake (provider/ssh/dial-config.ts): pure, no network.
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import type { CheckedConnection } from "../../../provider/rules";
import { agentPath, authMethods, keyboardAnswer, newAttempt, sshConfig } from "../../../provider/ssh/dial-config";
import { describeHostKey } from "../../../provider/ssh";
import { connection } from "./fake-host";

const KEY = Buffer.from("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "base64");
const seen = describeHostKey(KEY);
const OTHER = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

const conn = (extra: Partial<CheckedConnection> = {}) => connection(2222, extra);
const terms = (pins: { fingerprint: string; source: string }[] = []) => ({
  sock: new PassThrough(),
  agent: undefined as string | undefined,
  pins: () => pins,
});

describe("authMethods", () => {
  it("offers the key, then the agent, then the password and keyboard-interactive, for what is given", () => {
    expect(authMethods(conn({ privateKey: "k" }), "/run/agent")).toEqual([
      "publickey",
      "agent",
      "password",
      "keyboard-interactive",
    ]);
    expect(authMethods(conn(), undefined)).toEqual(["password", "keyboard-interactive"]);
    expect(authMethods(conn({ password: undefined }), "/run/agent")).toEqual(["agent"]);
    expect(newAttempt(conn({ password: undefined, privateKey: "k" }), undefined)).toEqual({
      methods: ["publickey"],
      tried: [],
    });
  });
});

describe("agentPath", () => {
  it("takes the agentSocketPath given, else SSH_AUTH_SOCK, else none", () => {
    expect(agentPath(conn({ agentSocketPath: "/given" }), { SSH_AUTH_SOCK: "/env" })).toBe("/given");
    expect(agentPath(conn(), { SSH_AUTH_SOCK: "/env" })).toBe("/env");
    expect(agentPath(conn(), { SSH_AUTH_SOCK: "" })).toBeUndefined();
    expect(agentPath(conn(), {})).toBeUndefined();
  });
});

describe("sshConfig", () => {
  it("carries the user, credentials and timeout, with ssh2's own keepalive off", () => {
    const t = { ...terms(), agent: "/run/agent" };
    const c = sshConfig(
      conn({ user: "alice", privateKey: "k", privateKeyPassword: "pp", perDialTimeout: 7 }),
      t,
      newAttempt(conn(), undefined),
    );
    expect(c).toMatchObject({
      sock: t.sock,
      username: "alice",
      readyTimeout: 7000,
      keepaliveInterval: 0,
      privateKey: "k",
      passphrase: "pp",
      password: conn().password,
      agent: "/run/agent",
      tryKeyboard: true,
    });
    expect(sshConfig(conn({ password: undefined }), terms(), newAttempt(conn(), undefined)).tryKeyboard).toBe(false);
  });

  it("accepts a host key that meets every pin, records it, and refuses one that misses a pin", () => {
    const met = newAttempt(conn(), undefined);
    const verify = sshConfig(conn(), terms([{ fingerprint: seen.fingerprint, source: "given" }]), met).hostVerifier as (
      k: Buffer,
    ) => boolean;
    expect(verify(KEY)).toBe(true);
    expect(met.seen).toEqual(seen);
    expect(met.mismatch).toBeUndefined();

    const missed = newAttempt(conn(), undefined);
    const pin = { fingerprint: OTHER, source: "the key recorded in state" };
    const refuse = sshConfig(conn(), terms([pin]), missed).hostVerifier as (k: Buffer) => boolean;
    expect(refuse(KEY)).toBe(false);
    expect(missed.seen).toEqual(seen);
    expect(missed.mismatch).toEqual(pin);
  });

  it("asks the pins when the host presents its key, not when the configuration is built", () => {
    const pins: { fingerprint: string; source: string }[] = [];
    const attempt = newAttempt(conn(), undefined);
    const verify = sshConfig(conn(), { ...terms(), pins: () => pins }, attempt).hostVerifier as (k: Buffer) => boolean;
    pins.push({ fingerprint: OTHER, source: "pinned meanwhile" });
    expect(verify(KEY)).toBe(false);
  });

  it("offers each method once, in order, skipping those the server does not accept, then gives up", () => {
    const attempt = newAttempt(conn({ privateKey: "k" }), "/run/agent");
    const auth = sshConfig(conn(), terms(), attempt).authHandler as (
      left: string[] | null,
      partial: boolean | null,
      next: (m: unknown) => void,
    ) => void;
    const offered: unknown[] = [];
    const next = (m: unknown) => offered.push(m);
    auth(null, null, next);
    auth(["password", "keyboard-interactive"], false, next);
    auth(["password", "keyboard-interactive"], false, next);
    auth(["password"], false, next);
    // The agent is publickey to the server: skipped when the server stops accepting publickey.
    expect(offered).toEqual(["publickey", "password", "keyboard-interactive", false]);
    expect(attempt.tried).toEqual(["publickey", "password", "keyboard-interactive"]);
    expect(attempt.serverAllows).toEqual(["password"]);
  });
});

describe("keyboardAnswer", () => {
  const answer = (attempt: ReturnType<typeof newAttempt>, password: string | undefined, prompts: string[]) => {
    let got: string[] | undefined;
    keyboardAnswer(attempt, password)(
      "",
      "",
      "",
      prompts.map((prompt) => ({ prompt, echo: false })),
      (r) => (got = r),
    );
    return got;
  };

  it("gives the password to one password prompt, once; declines the rest with empty answers and names them", () => {
    const attempt = newAttempt(conn(), undefined);
    expect(answer(attempt, "pw", [])).toEqual([]);
    expect(answer(attempt, "pw", ["Password: "])).toEqual(["pw"]);
    expect(attempt.answered).toBe(true);
    expect(answer(attempt, "pw", ["Password: "])).toEqual([""]);
    expect(answer(attempt, "pw", ["Verification code: ", "PIN: "])).toEqual(["", ""]);
    expect(attempt.declined).toBe('"Verification code:", "PIN:"');
    expect(answer(newAttempt(conn(), undefined), undefined, ["Password:"])).toEqual([""]);
  });
});
