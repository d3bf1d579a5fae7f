import type { HostKeyInfo } from "./types";

/** Replaces every secret (password, private key, passphrase) that occurs in a text. */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) {
    if (!s || s.length < 3) continue;
    out = out.split(s).join("[secret]");
    // As it appears inside a '…'-quoted shell word.
    if (s.includes("'")) out = out.split(s.replace(/'/g, `'\\''`)).join("[secret]");
    // A private key may also appear line by line (e.g. quoted into a script).
    if (s.includes("\n"))
      for (const line of s.split("\n")) if (line.trim().length >= 16) out = out.split(line).join("[secret]");
  }
  return out;
}

/** A copy of an error fit to be kept as `cause`: its message redacted, code/level kept, nothing else. */
export function scrubError(err: unknown, secrets: readonly (string | undefined)[]): Error {
  const src = err instanceof Error ? err : new Error(String(err));
  const copy = new Error(redact(src.message, secrets)) as Error & { code?: unknown; level?: unknown };
  copy.name = src.name;
  const e = src as Error & { code?: unknown; level?: unknown };
  if (e.code !== undefined) copy.code = e.code;
  if (e.level !== undefined) copy.level = e.level;
  return copy;
}

export type ConnectionFailure = "auth" | "hostkey" | "dial" | "config" | "closed";

/** The host could not be reached, refused us, or is not the host we expect. */
export class ConnectionError extends Error {
  override name = "ConnectionError";
  constructor(
    message: string,
    /** What went wrong: retries only help for 'dial'. */
    readonly kind: ConnectionFailure,
    /** "user@host:port" */
    readonly target: string,
    options?: { cause?: Error },
  ) {
    super(message, options);
  }
}

/** The host presented a key other than the expected one: the connection was refused. */
export class HostKeyError extends ConnectionError {
  override name = "HostKeyError";
  constructor(
    target: string,
    readonly seen: HostKeyInfo,
    /** The hostKey given (a key line or a fingerprint). */
    readonly expected: string,
    /** The fingerprint of the key expected, as OpenSSH prints it. */
    readonly expectedFingerprint: string,
  ) {
    super(
      `host key verification failed for ${target}: the host presented ${seen.algorithm} key ${seen.fingerprint}, ` +
        `but ${expectedFingerprint} was expected. The connection was refused. If the host's key changed on ` +
        `purpose (reinstall), update hostKey; otherwise this may not be the host you mean.`,
      "hostkey",
      target,
    );
  }
}

/** A remote command failed to run, or (when a caller chooses to throw) ran and exited non-zero. */
export class RemoteError extends Error {
  override name = "RemoteError";
  constructor(
    message: string,
    /** The command as sent (secrets redacted). */
    readonly command: string,
    /** The exit status, or null when the command never finished (transport failure). */
    readonly code: number | null,
    readonly stdout: string,
    readonly stderr: string,
    options?: { cause?: Error },
  ) {
    super(message, options);
  }
}

/** sudo refused to run the command without a password, or the user may not use sudo at all. */
export class SudoError extends RemoteError {
  override name = "SudoError";
}
