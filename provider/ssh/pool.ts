// The process's SSH connections: one Session per (user, host, port, credentials, expected host key,
// sudo, proxy chain), shared by every caller, and the keys and addresses they are known by. The
// sessions themselves are made by getSession (./session), which this module does not import.
import { createHmac, randomBytes } from "node:crypto";
import type { CheckedConnection, CheckedJumpHost } from "../rules";
import { credentialsOf } from "./errors";

/** What the pool needs of a session (./session's Session). */
interface Pooled {
  readonly key: string;
  readonly args: { proxy?: unknown };
  close(): Promise<void>;
}

const pool = new Map<string, Pooled>();

/** "host:port", with an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** A jump host is dialled like any host, never through sudo. */
export const jumpConnection = (j: CheckedJumpHost): CheckedConnection => ({ ...j, sudo: false });

/** Keys the credentials' part of the pool key: a hash no one outside this process can brute-force,
 * however short the password. */
const POOL_SALT = randomBytes(32);

/** The pool key: one connection per (user, host, port, credentials, expected host key, sudo, proxy chain). */
export function sessionKey(conn: CheckedConnection): string {
  const creds = createHmac("sha256", POOL_SALT)
    .update(JSON.stringify([...credentialsOf(conn), conn.agentSocketPath].map((c) => c ?? null)))
    .digest("hex")
    .slice(0, 16);
  const hk = conn.hostKey ? ` hostkey=${conn.hostKey.trim()}` : "";
  const via = conn.proxy ? ` via ${sessionKey(jumpConnection(conn.proxy))}` : "";
  return `${conn.user}@${hostPort(conn.host, conn.port)} creds=${creds}${conn.sudo ? " sudo" : ""}${hk}${via}`;
}

/** Where a connection goes, whoever logs in: "host:port", then " via " and the jump host's address.
 * Host keys are pinned per address (see `pinHostKey`). */
export function addressOf(conn: { host: string; port: number; proxy?: { host: string; port: number } }): string {
  return hostPort(conn.host, conn.port) + (conn.proxy ? ` via ${addressOf(conn.proxy)}` : "");
}

/** The pooled session under `key`, made by `make` if there is none. */
export function pooled<S extends Pooled>(key: string, make: () => S): S {
  const found = pool.get(key) as S | undefined;
  if (found) return found;
  const session = make();
  pool.set(key, session);
  return session;
}

/** Takes a session out of the pool (when it is the one pooled under its key). */
export function leavePool(session: Pooled): void {
  if (pool.get(session.key) === session) pool.delete(session.key);
}

/** Closes every pooled connection and empties the pool (tests, benchmarks, shutdown). */
export async function closeAll(): Promise<void> {
  const sessions = [...pool.values()];
  pool.clear();
  // Targets first, then the jump hosts they run through.
  await Promise.all(sessions.filter((s) => s.args.proxy).map((s) => s.close()));
  await Promise.all(sessions.filter((s) => !s.args.proxy).map((s) => s.close()));
}
