// When the changes the engine sends one host start as a batch, and how long a finished batch's
// conversation (its shell, the host's lock, the listing it left) waits for the next one.
// The engine keeps up to `--parallel` operations in flight and, once a batch's answers are back,
// starts the next ones one by one as it saves its state after each answer: measured with the real
// CLI at --parallel 8 (bench, 20 ms round trip), a wave's creates arrived 0-56 ms apart, and the next
// wave's first 85-125 ms after the last answer; on a loaded machine (load 7-10) a wave took up to 400 ms
// to arrive, up to 115 ms apart, and the next came up to 700 ms after the last answer. So a
// batch gathers while changes keep arriving (less than a quiet window apart, which grows with the
// gaps seen between changes of a wave), until as many wait as ever were in flight at once (the
// engine cannot send more before it hears back), and the conversation is kept across the engine's
// pause between waves.
//
// Time comes from Date.now and setTimeout, so that tests can drive it with fake timers.

export interface Windows {
  /** A batch starts once no change arrived for this long (ms): what a lone change waits. Where
   * changes of one wave came further apart, twice the longest of the latest gaps (at most `gather`). */
  quiet: number;
  /** Once a batch has run, while fewer changes wait than were in flight at once, the quiet window is at
   * least this long (ms): the engine is most likely still sending the rest of a wave. */
  wave: number;
  /** ... and at the latest this long (ms) after it began gathering. */
  gather: number;
  /** A finished batch's conversation waits this long (ms) for the next change before it closes. */
  keep: number;
}

export const WINDOWS: Windows = { quiet: 25, wave: 100, gather: 400, keep: 1000 };

/** How many of the latest gaps between changes of one wave the quiet window follows. */
const GAPS = 8;

/** The changes arriving at one agent: waits for the next, or for a batch to be complete. */
export class Arrivals {
  private waiting?: () => void;
  private last = 0;
  /** When the latest change for the next batch arrived (none yet since the last batch started). */
  private forNext?: number;
  /** The most changes that were waiting for an answer at once (queued or in a batch). */
  private peak = 0;
  /** A batch has run: the peak is the engine's, not a first wave still arriving. */
  private ran = false;
  /** The latest gaps (ms) between changes that went into one batch. */
  private gaps: number[] = [];

  constructor(readonly windows: Windows = WINDOWS) {}

  /** A change was queued; `pending` changes now wait for an answer. */
  arrived(pending: number): void {
    this.last = Date.now();
    if (this.forNext !== undefined) this.gaps = [...this.gaps, this.last - this.forNext].slice(-GAPS);
    this.forNext = this.last;
    this.peak = Math.max(this.peak, pending);
    this.waiting?.();
  }

  /** Resolves true when a change is queued within `ms`, false otherwise. Unless `hold`, the wait keeps
   * no process alive (a provider the engine is done with exits at once). */
  next(ms: number, hold = true): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        resolve(false);
      }, ms);
      if (!hold) timer.unref?.();
      this.waiting = () => {
        clearTimeout(timer);
        this.waiting = undefined;
        resolve(true);
      };
    });
  }

  /** Resolves true when a change is queued within the keep window (see Windows.keep). */
  kept(): Promise<boolean> {
    return this.next(this.windows.keep, false);
  }

  /** The quiet window now (see Windows.quiet and wave). */
  quiet(): number {
    const least = this.ran ? this.windows.wave : this.windows.quiet;
    return Math.min(Math.max(least, 2 * Math.max(0, ...this.gaps)), this.windows.gather);
  }

  /** Resolves when the `queued()` changes should start as a batch: as many as were ever in flight at
   * once wait (after a first batch), or none arrived for the quiet window (see quiet), or `gather` ms
   * have passed. */
  async gathered(queued: () => number): Promise<void> {
    const end = Date.now() + this.windows.gather;
    for (;;) {
      if (this.ran && queued() >= this.peak) break;
      const left = Math.min(this.last + this.quiet(), end) - Date.now();
      if (left <= 0 || !(await this.next(left))) break;
    }
    this.ran = true;
    this.forNext = undefined;
  }
}
