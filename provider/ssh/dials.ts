// How many SSH handshakes are in flight at once: at most MAX_DIALS in this process, and at most the
// connection's maxConcurrentDials involving any one sshd (to it, or through it when it is a jump host),
// so a run over hundreds of hosts never starts hundreds of handshakes at once, and no sshd sees more
// unauthenticated connections from us than it tolerates (MaxStartups 10:30:100 drops from 10 on).
// Only handshakes are limited: a slot is held from the transport's open to `ready` or failure, never
// while waiting for a retry, and established connections are not limited at all.
import { MAX_DIALS } from "../rules";

/** One sshd a handshake involves, and how many handshakes at once the caller allows there. */
export interface DialSlot {
  key: string;
  limit: number;
}

interface Waiter {
  slots: DialSlot[];
  /** A dial someone waits for goes before one made in advance (see ./early). Asked at grant time. */
  urgent: () => boolean;
  grant: (release: () => void) => void;
}

/**
 * A counting semaphore over the process and per sshd. A waiter is granted once the process and every
 * sshd it names have room; waiters are served in arrival order, urgent ones first, and a waiter whose
 * sshd is full does not hold up the others.
 */
export class DialLimiter {
  private inFlight = 0;
  private readonly perKey = new Map<string, number>();
  private readonly queue: Waiter[] = [];

  constructor(readonly total: number = MAX_DIALS) {}

  /** Handshakes in flight now (in all, and involving `key`). */
  active(key?: string): number {
    return key === undefined ? this.inFlight : (this.perKey.get(key) ?? 0);
  }

  /** Dials waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves with the slot's release (call it once the handshake has ended, however it ended). */
  acquire(slots: DialSlot[], urgent: () => boolean = () => true): Promise<() => void> {
    // One slot per sshd, at the lowest limit given for it.
    const byKey = new Map<string, DialSlot>();
    for (const s of slots) if (!byKey.has(s.key) || s.limit < byKey.get(s.key)!.limit) byKey.set(s.key, s);
    return new Promise((grant) => {
      this.queue.push({ slots: [...byKey.values()], urgent, grant });
      this.dispatch();
    });
  }

  private fits(w: Waiter): boolean {
    return this.inFlight < this.total && w.slots.every((s) => (this.perKey.get(s.key) ?? 0) < s.limit);
  }

  private dispatch(): void {
    for (;;) {
      const fitting = this.queue.filter((w) => this.fits(w));
      const next = fitting.find((w) => w.urgent()) ?? fitting[0];
      if (!next) return;
      this.queue.splice(this.queue.indexOf(next), 1);
      this.take(next.slots, +1);
      let released = false;
      next.grant(() => {
        if (released) return;
        released = true;
        this.take(next.slots, -1);
        this.dispatch();
      });
    }
  }

  private take(slots: DialSlot[], by: 1 | -1): void {
    this.inFlight += by;
    for (const { key } of slots) {
      const n = (this.perKey.get(key) ?? 0) + by;
      if (n === 0) this.perKey.delete(key);
      else this.perKey.set(key, n);
    }
  }
}

/** The process's limiter: every Session's dial takes a slot here. */
export const dials = new DialLimiter();
