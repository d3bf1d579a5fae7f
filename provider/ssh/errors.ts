import type { HostKeyInfo } from "./types";

/** What stands for a secret in every text the provider shows. */
export const REDACTED = "[secret]";
/** Secrets at least this long are replaced wherever they occur. */
const ANYWHERE = 8;
/** A letter, digit or underscore: what a short secret must not touch to count as one token. */
const WORD = /[\p{L}\p{N}_]/u;

/** What a connection or a jump host logs in with. */
interface Credentials {
  password?: string;
  privateKey?: string;
  privateKeyPassword?: string;
}

/** The secrets one connection or jump host logs in with, in a fixed order. */
export const credentialsOf = (c?: Credentials) => [c?.password, c?.privateKey, c?.privateKeyPassword];

/** Every secret of a connection and of its jump host: what `redact` replaces in what the provider shows. */
export const secretsOf = (conn: Credentials & { proxy?: Credentials }) => [conn, conn.proxy].flatMap(credentialsOf);

/**
 * Replaces every secret (password, private key, passphrase) that occurs in a text.
 *
 * A secret of 8 characters or more is replaced wherever it occurs (also as a `'…'`-quoted shell word,
 * and a private key also line by line). A shorter one is replaced wherever it stands as a token of its
 * own (no letter, digit or `_` right before or after it): a 2-character password "ab" is redacted in
 * `password "ab" rejected` and in `ab`, but the "ab" inside "table" is left alone, so messages stay
 * readable whatever the secret. (The provider never puts a secret into a command or message itself;
 * redaction is the second line, for what a server or library echoes back.)
 */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) {
    if (!s) continue;
    for (const form of formsOf(s)) out = form.length >= ANYWHERE ? out.split(form).join(REDACTED) : asToken(out, form);
  }
  return out;
}

/** The ways a secret can appear in a text: as is, quoted for sh, and a private key's lines. */
function formsOf(s: string): string[] {
  const forms = [s];
  if (s.includes("'")) forms.push(s.replace(/'/g, `'\\''`));
  if (s.includes("\n")) for (const line of s.split("\n")) if (line.trim().length >= 16) forms.push(line.trim());
  return forms;
}

/** Replaces the occurrences of a short secret that no letter, digit or `_` touches. */
function asToken(text: string, secret: string): string {
  let out = "";
  let from = 0;
  for (let at = text.indexOf(secret); at >= 0; at = text.indexOf(secret, at + 1)) {
    if (at < from) continue;
    const before = text[at - 1];
    const after = text[at + secret.length];
    if ((before && WORD.test(before)) || (after && WORD.test(after))) continue;
    out += text.slice(from, at) + REDACTED;
    from = at + secret.length;
  }
  return out + text.slice(from);
}

/** A copy of an error fit to be kept as `cause`: its message redacted, code/level kept, nothing else. */
export function scrubError(err: unknown, secrets: readonly (string | undefined)[]): Error {
  const src = err instanceof Error ? err : new Error(String(err));
  const copy = new Error(redact(src.message, secrets)) as Error & { code?: unknown; level?: unknown };
  copy.name = src.name;
  copy.stack = redact(src.stack ?? "", secrets);
  const e = src as Error & { code?: unknown; level?: unknown };
  if (e.code !== undefined) copy.code = e.code;
  if (e.level !== undefined) copy.level = e.level;
  return copy;
}

/**
 * Redacts an error in place, with its whole cause chain: message, stack and every string field
 * (a RemoteError's command, stdout, stderr). For the lifecycle's last word before the engine sees it.
 */
export function redactError<T>(err: T, secrets: readonly (string | undefined)[]): T {
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const fields = e as unknown as Record<string, unknown>;
    for (const key of [...Object.getOwnPropertyNames(e), "message", "stack"]) {
      const v = fields[key];
      if (typeof v === "string") {
        const r = redact(v, secrets);
        if (r !== v) Object.defineProperty(e, key, { value: r, writable: true, configurable: true });
      }
    }
  }
  return err;
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

/**
 * The host presented a key other than the expected one. Raised inside the handshake, before any
 * credential was sent: nothing of ours reached that host.
 */
export class HostKeyError extends ConnectionError {
  override name = "HostKeyError";
  constructor(
    target: string,
    readonly seen: HostKeyInfo,
    /** The fingerprint of the key expected ("SHA256:..."). */
    readonly expectedFingerprint: string,
    /** Where the expected key comes from: "the hostKey given", "the key recorded in state at create", ... */
    readonly source: string,
  ) {
    super(
      `host key verification failed for ${target}: it presented ${seen.algorithm} key ${seen.fingerprint}, ` +
        `but ${source} is ${expectedFingerprint}. The connection was closed during the handshake, before any ` +
        `password or key was sent: this may not be the host you mean. If its key changed on purpose (a reinstall), ` +
        `check the new key on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and set ` +
        `hostKey to it (connection.hostKey, or connection.proxy.hostKey for a jump host), then run pulumi up.`,
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
    /** The script run, or for a conversation (Session.openChannel) the command line that started its
     * shell (secrets redacted). */
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
