// ssh2's configuration for one handshake, built from the connection alone: which credentials are
// offered in which order, how the host key is checked and how keyboard-interactive is answered. Pure:
// what the handshake learns goes into the Attempt it is given, for ./dial to read.
import type { ConnectConfig } from "ssh2";
import type { Duplex } from "node:stream";
import type { CheckedConnection } from "../rules";
import type { HostKeyInfo } from "./types";
import { describeHostKey, unmetPin } from "./hostkey";
import type { Pin } from "./hostkey";
import { asksPassword } from "./prompts";
import type { Prompt } from "./prompts";

/** What one handshake learns along the way, for its outcome and its error messages. */
export interface Attempt {
  /** Authentication methods not tried yet. */
  methods: string[];
  tried: string[];
  serverAllows?: string[];
  /** The host key the server presented, and the pin it failed, if any. */
  seen?: HostKeyInfo;
  mismatch?: Pin;
  /** Keyboard-interactive: the password was given to a password prompt (once), or prompts were declined. */
  answered?: boolean;
  declined?: string;
}

/** The ssh-agent to use: the one given, or else the environment's. */
export function agentPath(conn: CheckedConnection, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return conn.agentSocketPath || env.SSH_AUTH_SOCK || undefined;
}

/** The authentication methods to offer, in order, from the credentials given. */
export function authMethods(conn: CheckedConnection, agent: string | undefined): string[] {
  const methods: string[] = [];
  if (conn.privateKey) methods.push("publickey");
  if (agent) methods.push("agent");
  if (conn.password) methods.push("password", "keyboard-interactive");
  return methods;
}

/** A new handshake's record: nothing learnt yet, every method of `authMethods` still to try. */
export const newAttempt = (conn: CheckedConnection, agent: string | undefined): Attempt => ({
  methods: authMethods(conn, agent),
  tried: [],
});

/** What the handshake goes over, and what it checks the host's key against. */
export interface HandshakeTerms {
  sock: Duplex;
  agent: string | undefined;
  /** The keys the host must present, asked when it presents one. */
  pins: () => readonly Pin[];
}

/**
 * ssh2's configuration for one handshake. The host key is checked in `hostVerifier`, which ssh2 calls
 * during key exchange, before the first authentication request: a host that fails it never sees a
 * user name, password, key signature or agent request.
 */
export function sshConfig(conn: CheckedConnection, terms: HandshakeTerms, attempt: Attempt): ConnectConfig {
  return {
    sock: terms.sock as ConnectConfig["sock"],
    username: conn.user,
    readyTimeout: conn.perDialTimeout * 1000,
    keepaliveInterval: 0, // ssh2's keepalive timer would keep the process alive; TCP keepalive is on instead
    privateKey: conn.privateKey,
    passphrase: conn.privateKeyPassword,
    password: conn.password,
    agent: terms.agent,
    tryKeyboard: !!conn.password,
    hostVerifier: (key: Buffer) => {
      attempt.seen = describeHostKey(key);
      attempt.mismatch = unmetPin(attempt.seen, terms.pins());
      return !attempt.mismatch;
    },
    authHandler: (methodsLeft, _partial, next) => {
      if (methodsLeft) attempt.serverAllows = methodsLeft;
      while (attempt.methods.length) {
        const m = attempt.methods.shift() as string;
        const base = m === "agent" ? "publickey" : m;
        if (methodsLeft && !methodsLeft.includes(base as never)) continue;
        attempt.tried.push(m);
        return next(m as never);
      }
      return next(false as never);
    },
  };
}

/**
 * Keyboard-interactive: the password goes to one prompt that asks for the password (asksPassword), once.
 * Anything else (a one-time password or code, a question, several prompts, a second round) is declined
 * with empty answers, and named in the error if authentication fails.
 */
export function keyboardAnswer(attempt: Attempt, password: string | undefined) {
  return (_name: string, _instructions: string, _lang: string, prompts: Prompt[], finish: (r: string[]) => void) => {
    if (prompts.length === 0) return finish([]);
    if (asksPassword(prompts) && !attempt.answered && password) {
      attempt.answered = true;
      return finish([password]);
    }
    attempt.declined = prompts.map((p) => JSON.stringify(p.prompt.trim().slice(0, 60))).join(", ");
    finish(prompts.map(() => ""));
  };
}
