import { createHash } from "node:crypto";
import { HostKeyError } from "./errors";
import type { HostKeyInfo } from "./types";

/** The SHA256 fingerprint of a raw public key blob, as OpenSSH prints it. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

function md5Of(blob: Buffer): string {
  return `MD5:${(createHash("md5").update(blob).digest("hex").match(/../g) ?? []).join(":")}`;
}

/** The key type stored at the start of an SSH public key blob (a uint32 length, then the name). */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return undefined;
  return blob.subarray(4, 4 + len).toString("latin1");
}

/** Describes a raw key blob as sent by the server during key exchange. */
export function describeHostKey(blob: Buffer): HostKeyInfo {
  const algorithm = blobType(blob) ?? "unknown";
  return { algorithm, fingerprint: fingerprintOf(blob), publicKey: `${algorithm} ${blob.toString("base64")}` };
}

const KEY_TYPE =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(-cert-v01@openssh\.com)?$/;

/**
 * Parses an expected host key: "SHA256:..." or "MD5:..." (as `ssh-keygen -l [-E md5]` prints it), or an
 * OpenSSH public key line ("ssh-ed25519 AAAA... comment"; a known_hosts line with host names first also
 * works). Throws a plain Error saying what was expected for anything else.
 */
export function parseExpectedHostKey(expected: string): { fingerprint: string; md5?: string; publicKey?: string } {
  const text = expected.trim();
  const fp = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(text);
  if (fp) return { fingerprint: `SHA256:${fp[1]}` };
  if (/^MD5:([0-9a-f]{2}:){15}[0-9a-f]{2}$/i.test(text))
    return { fingerprint: "", md5: `MD5:${text.slice(4).toLowerCase()}` };
  const words = text.split(/\s+/);
  for (let i = 0; i + 1 < words.length; i++) {
    if (!KEY_TYPE.test(words[i])) continue;
    const blob = Buffer.from(words[i + 1], "base64");
    if (blobType(blob) !== words[i]) break;
    return { fingerprint: fingerprintOf(blob), publicKey: `${words[i]} ${blob.toString("base64")}` };
  }
  throw new Error(
    'hostKey must be an OpenSSH public key line ("ssh-ed25519 AAAA...", as in the host\'s ' +
      '/etc/ssh/ssh_host_*_key.pub) or its fingerprint ("SHA256:...", as `ssh-keygen -lf` prints it)',
  );
}

/** Whether the key seen matches an expected key or fingerprint (see `parseExpectedHostKey`). */
export function hostKeyMatches(seen: HostKeyInfo, expected: string): boolean {
  const want = parseExpectedHostKey(expected);
  if (want.md5) return md5Of(Buffer.from(seen.publicKey.split(" ")[1] ?? "", "base64")) === want.md5;
  return seen.fingerprint === want.fingerprint;
}

/**
 * Refuses a host key other than the one expected: for callers that recorded a fingerprint earlier
 * (e.g. in a resource's state) and must not talk to a different machine later.
 */
export function verifyHostKey(seen: HostKeyInfo, expected: string, target = "the host"): void {
  if (hostKeyMatches(seen, expected)) return;
  const want = parseExpectedHostKey(expected);
  throw new HostKeyError(target, seen, expected, want.md5 ?? want.fingerprint);
}
