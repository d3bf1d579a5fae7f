// The dial limiter (provider/ssh/dials.ts) on its own: pure, no network.
import { describe, expect, it } from "vitest";
import { DialLimiter } from "../../../provider/ssh";

const tick = () => new Promise<void>((r) => setImmediate(r));

/** Starts a dial for each request; records the order in which they were granted. */
function harness(limiter: DialLimiter) {
  const granted: string[] = [];
  const releases = new Map<string, () => void>();
  const dial = (name: string, keys: [string, number][], urgent: () => boolean = () => true) => {
    void limiter
      .acquire(
        keys.map(([key, limit]) => ({ key, limit })),
        urgent,
      )
      .then((release) => {
        granted.push(name);
        releases.set(name, release);
      });
  };
  const end = async (name: string) => {
    releases.get(name)!();
    await tick();
  };
  return { granted, dial, end };
}

describe("DialLimiter", () => {
  it("holds the process to its total, grants in arrival order, and frees a slot once per release", async () => {
    const l = new DialLimiter(3);
    const { granted, dial, end } = harness(l);
    for (let i = 0; i < 6; i++) dial(`d${i}`, [[`host${i}`, 8]]);
    await tick();
    expect(granted).toEqual(["d0", "d1", "d2"]);
    expect(l.active()).toBe(3);
    expect(l.waiting).toBe(3);
    await end("d1");
    expect(granted).toEqual(["d0", "d1", "d2", "d3"]);
    // A second call of the same release frees nothing more.
    await end("d1");
    expect(granted).toHaveLength(4);
    expect(l.active()).toBe(3);
    for (const d of ["d0", "d2", "d3"]) await end(d);
    expect(granted).toEqual(["d0", "d1", "d2", "d3", "d4", "d5"]);
    for (const d of ["d4", "d5"]) await end(d);
    expect(l.active()).toBe(0);
    expect(l.waiting).toBe(0);
  });

  it("holds each sshd to its limit, and a dial waiting for a full sshd does not hold up the others", async () => {
    const l = new DialLimiter(10);
    const { granted, dial, end } = harness(l);
    for (let i = 0; i < 4; i++)
      dial(`bastion${i}`, [
        [`target${i}`, 8],
        ["bastion", 2],
      ]);
    dial("direct", [["other", 8]]);
    await tick();
    expect(granted).toEqual(["bastion0", "bastion1", "direct"]);
    expect(l.active("bastion")).toBe(2);
    expect(l.active()).toBe(3);
    await end("bastion0");
    expect(granted.at(-1)).toBe("bastion2");
    expect(l.active("bastion")).toBe(2);
  });

  it("counts an sshd named twice once, at the lower limit", async () => {
    const l = new DialLimiter(10);
    const { granted, dial } = harness(l);
    dial("a", [
      ["h", 1],
      ["h", 5],
    ]);
    dial("b", [["h", 5]]);
    await tick();
    expect(granted).toEqual(["a", "b"]);
    expect(l.active("h")).toBe(2);
    dial("c", [
      ["h", 5],
      ["h", 2],
    ]);
    await tick();
    expect(granted).toEqual(["a", "b"]);
  });

  it("serves dials someone waits for before dials made in advance, and promotes one asked for meanwhile", async () => {
    const l = new DialLimiter(1);
    const { granted, dial, end } = harness(l);
    dial("first", [["h0", 8]]);
    let e2urgent = false;
    dial("early1", [["h1", 8]], () => false);
    dial("early2", [["h2", 8]], () => e2urgent);
    dial("urgent", [["h3", 8]]);
    await tick();
    expect(granted).toEqual(["first"]);
    await end("first");
    expect(granted).toEqual(["first", "urgent"]);
    e2urgent = true; // someone now waits for early2's connection
    await end("urgent");
    expect(granted).toEqual(["first", "urgent", "early2"]);
    await end("early2");
    expect(granted).toEqual(["first", "urgent", "early2", "early1"]);
  });

  it("grants at once when there is room, whatever the priority", async () => {
    const l = new DialLimiter(2);
    const { granted, dial } = harness(l);
    dial("early", [["h", 8]], () => false);
    await tick();
    expect(granted).toEqual(["early"]);
  });
});
