// The one reading of an expected host key, for the schema (bad input fails `check`) and for the SSH
// layer (which compares it with the key a server presents). Pure.
import { createHash } from "node:crypto";

/** An expected host key, normalized: its SHA256 fingerprint, and the key line when one was given. */
export interface ExpectedHostKey {
  /** "SHA256:<43 base64 characters>", exactly as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  /** "<type> <base64>" without comment or host names, when a key line was given. */
  publicKey?: string;
}

/** The SHA256 fingerprint of a raw public key blob, as OpenSSH prints it. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The key type stored at the start of an SSH public key blob (a uint32 length, then the name). */
export function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return undefined;
  return blob.subarray(4, 4 + len).toString("latin1");
}

const KEY_TYPE =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/;

/** What a hostKey must be, for messages. */
export const HOST_KEY_HELP =
  'must be the host\'s OpenSSH public key line ("ssh-ed25519 AAAA...", as in /etc/ssh/ssh_host_ed25519_key.pub, ' +
  'a known_hosts line or ssh-keyscan\'s output) or its SHA256 fingerprint ("SHA256:" and 43 characters, as ' +
  "`ssh-keygen -lf` prints it)";

/**
 * Reads an expected host key: a SHA256 fingerprint, or a public key line (with host names before it, as
 * in known_hosts and ssh-keyscan's output, and a comment after it, as in a .pub file). Returns undefined
 * for anything else.
 *
 * MD5 fingerprints ("MD5:ab:cd:...") are refused on purpose: a pin is a security check, MD5 has had
 * practical collisions since 2004, OpenSSH has printed SHA256 by default since 6.8 (2015), and
 * @pulumi/command's hostKey takes no MD5 either. The operator who has only an MD5 fingerprint runs
 * `ssh-keygen -lf` on the key file to get the SHA256 one.
 * @example parseHostKey("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s").fingerprint
 * @example parseHostKey("198.18.1.2 ssh-ed25519 AAAAC3Nza...").publicKey // "ssh-ed25519 AAAAC3Nza..."
 */
export function parseHostKey(expected: string): ExpectedHostKey | undefined {
  const text = expected.trim();
  const fp = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(text);
  if (fp) return { fingerprint: `SHA256:${fp[1]}` };
  const words = text.split(/\s+/);
  for (let i = 0; i + 1 < words.length; i++) {
    if (!KEY_TYPE.test(words[i])) continue;
    if (!/^[A-Za-z0-9+/]{16,8192}={0,3}$/.test(words[i + 1])) return undefined;
    const blob = Buffer.from(words[i + 1], "base64");
    // Whole base64 (a cut-off key decodes too, to fewer bytes) that holds a key of the type named.
    if (blob.toString("base64") !== words[i + 1] || blobType(blob) !== words[i]) return undefined;
    return { fingerprint: fingerprintOf(blob), publicKey: `${words[i]} ${blob.toString("base64")}` };
  }
  return undefined;
}
