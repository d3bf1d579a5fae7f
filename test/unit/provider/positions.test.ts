// Explicit positions across batches: a create waits (bounded) for the run's rules above it on its chain.
import { describe, expect, it } from "vitest";
import { awaitAbove, createSettled, expectCreate, movedDown } from "../../../provider/positions";
import type { RuleInputs } from "../../../provider/rules";

const rule = (name: string, position: RuleInputs["position"], more: Record<string, unknown> = {}) =>
  ({
    identity: { project: "p", stack: "s", name },
    connection: { host: "198.18.0.10", port: 22 },
    table: "filter",
    chain: "INPUT",
    position,
    ...more,
  }) as unknown as RuleInputs;

/** Whether the promise has settled after the event loop turned over. */
const settled = async (p: Promise<unknown>) => {
  let done = false;
  p.then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, 20));
  return done;
};

describe("awaitAbove", () => {
  it("position 2 waits for the run's top rule to be created, then says so", async () => {
    const [top, two] = [rule("a-top", "top"), rule("b-two", 2)];
    expectCreate(top);
    expectCreate(two);
    const waiting = awaitAbove(two, 5_000);
    expect(await settled(waiting)).toBe(false);
    expect(await awaitAbove(top, 5_000)).toBeUndefined(); // nothing above line 1
    createSettled(top);
    expect(await waiting).toBe(`placed after this run's "a-top" (position top) went in`);
    createSettled(two);
  });

  it("equal positions: the one with the lower name goes first; rules of other chains or hosts never wait", async () => {
    const [x, y] = [rule("x", 3), rule("y", 3)];
    const other = rule("z", 5, { chain: "FORWARD" });
    const elsewhere = rule("w", 5, { connection: { host: "198.18.0.11", port: 22 } });
    for (const r of [x, y, other, elsewhere]) expectCreate(r);
    expect(await awaitAbove(x, 5_000)).toBeUndefined();
    expect(await awaitAbove(other, 5_000)).toBeUndefined();
    expect(await awaitAbove(elsewhere, 5_000)).toBeUndefined();
    const waiting = awaitAbove(y, 5_000);
    expect(await settled(waiting)).toBe(false);
    createSettled(x); // a failed create settles too
    expect(await waiting).toMatch(/^placed after this run's "x" \(position 3\)/);
    for (const r of [y, other, elsewhere]) createSettled(r);
  });

  it("a create that never comes: stops waiting after the bound, and says for which rule", async () => {
    const [top, two] = [rule("never", "top"), rule("waits", 2)];
    expectCreate(top);
    expectCreate(two);
    expect(await awaitAbove(two, 50)).toBe(
      `did not wait longer than 0.05s for this run's "never" (position top) to go in (a dependsOn the other way, ` +
        "or its create did not come): when it goes in later, above this rule, this rule moves down",
    );
    createSettled(two);
    createSettled(top);
  });

  it("auto and bottom rules never wait, and are never waited for", async () => {
    const [auto, bottom, two] = [rule("auto", "auto"), rule("bottom", "bottom"), rule("two", 2)];
    for (const r of [auto, bottom, two]) expectCreate(r);
    expect(await awaitAbove(auto, 5_000)).toBeUndefined();
    expect(await awaitAbove(bottom, 5_000)).toBeUndefined();
    expect(await awaitAbove(two, 5_000)).toBeUndefined();
    createSettled(two);
  });
});

describe("movedDown", () => {
  it("a top rule created after the run's position-2 rule went in says it moved that one down", async () => {
    const [two, top] = [rule("md-two", 2), rule("md-top", "top")];
    expectCreate(two);
    createSettled({ ...two, identity: { stack: "s", name: "md-two", project: "p" } } as RuleInputs, true);
    expectCreate(top);
    expect(movedDown(top)).toBe(
      `went in above this run's "md-two" (position 2), created before this rule was registered (a dependsOn held ` +
        "it back): each of them is one line lower than its position says now; give them dependsOn on this rule to " +
        "keep every position",
    );
    expect(movedDown(two)).toBeUndefined();
    createSettled(top, true);
  });

  it("a failed create is never said to be moved", async () => {
    const [two, top] = [rule("mf-two", 2, { chain: "OUTPUT" }), rule("mf-top", "top", { chain: "OUTPUT" })];
    expectCreate(two);
    createSettled(two, false);
    expect(movedDown(top)).toBeUndefined();
  });
});
