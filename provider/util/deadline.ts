// A deadline race, for every layer: this module imports nothing from the provider's folders.
import { setTimeout as delay } from "node:timers/promises";

export interface DeadlineOptions {
  /** Whether the deadline's timer keeps the process alive while it runs (it does unless false). */
  ref?: boolean;
}

/**
 * Settles as `work` does, or rejects with `expired()` once `ms` milliseconds have passed, whichever
 * comes first. The timer stops as soon as either happens; `work` itself is left to run (a caller that
 * must undo late work does so on the rejection).
 */
export async function withDeadline<T>(
  work: Promise<T>,
  ms: number,
  expired: () => Error,
  opts: DeadlineOptions = {},
): Promise<T> {
  const stop = new AbortController();
  const deadline = delay(ms, undefined, { signal: stop.signal, ref: opts.ref ?? true }).then(
    () => Promise.reject(expired()),
    // Stopped because `work` settled first: the race is decided already.
    () => new Promise<never>(() => {}),
  );
  try {
    return await Promise.race([work, deadline]);
  } finally {
    stop.abort();
  }
}
