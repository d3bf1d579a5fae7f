// Host keys as the SSH layer sees them, and the pins a handshake must meet.
import { blobType, fingerprintOf, HOST_KEY_HELP, parseHostKey } from "../rules";
import type { ExpectedHostKey } from "../rules";
import type { HostKeyInfo } from "./types";

export { fingerprintOf };

/** Describes a raw key blob as sent by the server during key exchange. */
export function describeHostKey(blob: Buffer): HostKeyInfo {
  const algorithm = blobType(blob) ?? "unknown";
  return { algorithm, fingerprint: fingerprintOf(blob), publicKey: `${algorithm} ${blob.toString("base64")}` };
}

/**
 * Parses an expected host key: "SHA256:..." (as `ssh-keygen -lf` prints it), or an OpenSSH public key
 * line ("ssh-ed25519 AAAA... comment"; a known_hosts line with host names first also works). Throws a
 * plain Error saying what is expected for anything else (MD5 included: see `parseHostKey`).
 */
export function parseExpectedHostKey(expected: string): ExpectedHostKey {
  const parsed = parseHostKey(expected);
  if (!parsed) throw new Error(`hostKey ${HOST_KEY_HELP}`);
  return parsed;
}

/** Whether the key seen matches an expected key or fingerprint (see `parseExpectedHostKey`). */
export function hostKeyMatches(seen: HostKeyInfo, expected: string): boolean {
  return seen.fingerprint === parseExpectedHostKey(expected).fingerprint;
}

/** A key a host must present, and where that requirement comes from (for the error message). */
export interface Pin {
  fingerprint: string;
  source: string;
}

/**
 * Host keys recorded for an address ("host:port", and the jump host chain it is reached through) in
 * this process: from the resources' state (recorded at create), and the key first seen by a
 * connection that had no pin. Every handshake to that address must present a key that meets all of
 * them; a hostKey given in the connection replaces them for that connection.
 */
// Process-wide: Diff and the verbs pin the keys in state; every later handshake of the run must meet them.
const pins = new Map<string, Map<string, Pin>>();

/** Requires `fingerprint` from every later handshake to this address (an address, see ./pool's addressOf). */
export function pinHostKey(address: string, fingerprint: string, source: string): void {
  const fp = parseExpectedHostKey(fingerprint).fingerprint;
  const set = pins.get(address) ?? pins.set(address, new Map()).get(address)!;
  if (!set.has(fp)) set.set(fp, { fingerprint: fp, source });
}

/** The pins of an address. */
export function pinsOf(address: string): Pin[] {
  return [...(pins.get(address)?.values() ?? [])];
}

/** The first pin a key does not meet, or undefined when it meets all of them. */
export function unmetPin(seen: HostKeyInfo, required: readonly Pin[]): Pin | undefined {
  return required.find((p) => p.fingerprint !== seen.fingerprint);
}

/** Forgets every pin (tests). */
export function forgetPins(): void {
  pins.clear();
}
