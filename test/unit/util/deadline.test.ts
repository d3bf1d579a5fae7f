// withDeadline (provider/util/deadline.ts): the race between work and its deadline.
import { describe, expect, it } from "vitest";
import { withDeadline } from "../../../provider/util/deadline";

const never = new Promise<string>(() => {});

describe("withDeadline", () => {
  it("settles as the work does when it settles first", async () => {
    await expect(withDeadline(Promise.resolve("done"), 60_000, () => new Error("late"))).resolves.toBe("done");
    await expect(withDeadline(Promise.reject(new Error("own")), 60_000, () => new Error("late"))).rejects.toThrow(
      "own",
    );
  });

  it("rejects with the deadline's error when the work does not settle in time", async () => {
    let asked = 0;
    const expired = () => {
      asked++;
      return new Error("late");
    };
    await expect(withDeadline(never, 5, expired)).rejects.toThrow("late");
    await expect(withDeadline(never, 5, expired, { ref: false })).rejects.toThrow("late");
    expect(asked).toBe(2);
  });

  it("asks for the deadline's error only when the deadline passes", async () => {
    let asked = 0;
    await withDeadline(Promise.resolve(1), 5, () => {
      asked++;
      return new Error("late");
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(asked).toBe(0);
  });
});
