// Test key pairs from ssh2's own generator. Its ed25519 keys are unreadable by its own parseKey when the
// public key starts with a zero byte (about 1 in 256: mscdex/ssh2#1513, keygen strips leading zeros), so
// such a pair is drawn again; a test that used it failed at random once in a few hundred runs.
import { utils } from "ssh2";

/** An ed25519 key pair (OpenSSH format) that ssh2 can read back. */
export function ed25519Pair(): { private: string; public: string } {
  for (;;) {
    const keys = utils.generateKeyPairSync("ed25519");
    if (!(utils.parseKey(keys.public) instanceof Error) && !(utils.parseKey(keys.private) instanceof Error))
      return keys;
  }
}
