// When a batch of changes starts (gather.ts), on a fake clock: a lone change waits the quiet window
// only; changes that keep arriving keep the batch gathering, up to its bound; the quiet window follows
// the gaps between changes of a wave; once a batch has run, a batch starts as soon as as many changes
// wait as were ever in flight at once, and fewer wait the wave window for the rest; a kept
// conversation hears of the next change, or gives up after its keep window.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Arrivals } from "../../../provider/host/gather";

const W = { quiet: 25, wave: 60, gather: 150, keep: 300 };

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Whether `p` has settled once the microtasks queued so far have run. */
async function done(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(() => (settled = true));
  await vi.advanceTimersByTimeAsync(0);
  return settled;
}

/** A queue of changes arriving at `a`: each queued change is pending until the test says otherwise. */
function queueOn(a: Arrivals) {
  let queued = 0;
  return {
    add(n = 1) {
      for (let i = 0; i < n; i++) a.arrived(++queued);
    },
    take() {
      queued = 0;
    },
    get length() {
      return queued;
    },
  };
}

describe("a batch", () => {
  it("of one lone change starts once the quiet window has passed, not before", async () => {
    const a = new Arrivals(W);
    const q = queueOn(a);
    q.add();
    const p = a.gathered(() => q.length);
    await vi.advanceTimersByTimeAsync(W.quiet - 1);
    expect(await done(p)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await done(p)).toBe(true);
  });

  it("keeps gathering while changes arrive less than the quiet window apart", async () => {
    const a = new Arrivals(W);
    const q = queueOn(a);
    q.add();
    const p = a.gathered(() => q.length);
    for (let i = 0; i < 4; i++) {
      await vi.advanceTimersByTimeAsync(8);
      expect(await done(p)).toBe(false);
      q.add();
    }
    // Gaps of 8 ms leave the quiet window as it was (16 < 25); it starts a quiet window after the last.
    expect(a.quiet()).toBe(W.quiet);
    await vi.advanceTimersByTimeAsync(W.quiet - 1);
    expect(await done(p)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await done(p)).toBe(true);
    expect(q.length).toBe(5);
  });

  it("waits twice the longest of the latest gaps between changes of a wave where they came further apart, at most the bound", async () => {
    const a = new Arrivals(W);
    a.arrived(1);
    for (const gap of [5, 35, 10]) {
      await vi.advanceTimersByTimeAsync(gap);
      a.arrived(1);
    }
    expect(a.quiet()).toBe(70);
    // A batch starts: the gap to the next change is between waves, not within one, and not counted.
    const batch = a.gathered(() => 4);
    await vi.advanceTimersByTimeAsync(70);
    await batch;
    await vi.advanceTimersByTimeAsync(W.gather - 1);
    a.arrived(1);
    expect(a.quiet()).toBe(70);
    await vi.advanceTimersByTimeAsync(100);
    a.arrived(1);
    expect(a.quiet()).toBe(W.gather);
    // Only the latest gaps count: eight short ones later, the window is back to its least (after a
    // first batch, the wave window).
    for (let i = 0; i < 8; i++) {
      await vi.advanceTimersByTimeAsync(5);
      a.arrived(1);
    }
    expect(a.quiet()).toBe(W.wave);
  });

  it("starts at its bound when changes never stop arriving", async () => {
    const a = new Arrivals(W);
    const q = queueOn(a);
    q.add();
    const p = a.gathered(() => q.length);
    let waited = 0;
    while (!(await done(p)) && waited < 10 * W.gather) {
      await vi.advanceTimersByTimeAsync(10);
      waited += 10;
      q.add();
    }
    expect(waited).toBe(W.gather);
  });

  it("after a first batch, starts as soon as as many changes wait as were ever in flight at once", async () => {
    const a = new Arrivals(W);
    const q = queueOn(a);
    q.add(3);
    await vi.advanceTimersByTimeAsync(W.quiet);
    await a.gathered(() => q.length); // the first batch: 3 in flight at once
    q.take();
    q.add(2);
    const p = a.gathered(() => q.length);
    expect(await done(p)).toBe(false);
    await vi.advanceTimersByTimeAsync(10);
    q.add();
    expect(await done(p)).toBe(true);
    // Fewer than that, and none arriving: the rest of the wave is awaited for the wave window.
    q.take();
    q.add();
    const rest = a.gathered(() => q.length);
    await vi.advanceTimersByTimeAsync(W.wave - 1);
    expect(await done(rest)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await done(rest)).toBe(true);
  });
});

describe("a kept conversation", () => {
  it("hears of the next change within the keep window, and gives up after it", async () => {
    const a = new Arrivals(W);
    const heard = a.kept();
    await vi.advanceTimersByTimeAsync(W.keep - 1);
    a.arrived(1);
    expect(await heard).toBe(true);
    const silence = a.kept();
    await vi.advanceTimersByTimeAsync(W.keep - 1);
    expect(await done(silence)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await silence).toBe(false);
  });
});
