// SSH keepalive while something is in flight on a connection (none when idle, so that an idle
// connection never keeps the process alive).
import type { Client } from "ssh2";

/** ssh2's own keepalive timer is never unref'd; ours uses its protocol's ping and reply queue. */
type KeepaliveInternals = { _protocol?: { ping(): void }; _callbacks?: (() => void)[] };

/** Keepalives unanswered in a row that mean the link went silent. */
const UNANSWERED = 3;

/**
 * Sends a keepalive request every `everyMs`; once UNANSWERED in a row go unanswered the link went
 * silent, and the connection is torn down (its channels fail at once) after `onSilent`. Stops by itself
 * once `current()` says the client is no longer the connection's. Returns the timer (unref'd), or
 * undefined for a client that cannot ping.
 */
export function startKeepalive(
  client: Client,
  everyMs: number,
  current: () => boolean,
  onSilent: () => void,
): NodeJS.Timeout | undefined {
  const pinging = client as Client & KeepaliveInternals;
  if (!pinging._protocol) return undefined;
  let unanswered = 0;
  const timer = setInterval(() => {
    if (!current()) return clearInterval(timer);
    if (++unanswered > UNANSWERED) {
      clearInterval(timer);
      onSilent();
      client.destroy();
      return;
    }
    pinging._callbacks?.push(() => {
      unanswered = 0;
    });
    pinging._protocol?.ping();
  }, everyMs);
  timer.unref();
  return timer;
}
