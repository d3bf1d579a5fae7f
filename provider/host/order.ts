// The order in which a batch's requests are planned and applied (pure).
import type { ChangeRequest } from "./types";

/** Where an explicit position puts a rule: "top" is line 1; undefined for "auto" and "bottom". */
const explicitLine = (req: ChangeRequest): number | undefined =>
  req.kind !== "insert"
    ? undefined
    : req.position === "top"
      ? 1
      : typeof req.position === "number"
        ? req.position
        : undefined;

/**
 * A batch's requests in the order they are applied: inserts at an explicit position first ("top" as
 * line 1, then ascending line numbers; equal lines by tag, the later one going above), then every other
 * request in the order it arrived. So each explicit position is a line of the chain as the inserts
 * before it leave it, and none of them moves one inserted before it down (save an equal line): the
 * engine's order of creates no longer decides where they land.
 */
export function inApplyOrder(reqs: readonly ChangeRequest[]): ChangeRequest[] {
  const explicit = reqs.filter((r) => explicitLine(r) !== undefined);
  explicit.sort((a, b) => explicitLine(a)! - explicitLine(b)! || a.tag.localeCompare(b.tag));
  return [...explicit, ...reqs.filter((r) => explicitLine(r) === undefined)];
}
