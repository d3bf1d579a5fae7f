// The restore lines that act on a listed rule by its exact text (pure).
import type { Counters } from "../rules";

/** The one rewrite of a listed rule's text into restore lines: `-A CHAIN spec` → `-I CHAIN line spec`
 * (with counters `c`: `-I CHAIN line -c P B spec`) / `-D CHAIN spec`. */
export const asInsert = (text: string, line: number, c?: Counters) =>
  text.replace(/^-A (\S+) /, `-I $1 ${line} ${c ? `-c ${c.packets} ${c.bytes} ` : ""}`);
export const asDelete = (text: string) => text.replace(/^-A /, "-D ");

/**
 * The restore lines that put rule `to` where the exact rule `from` is listed (at `line`), with the
 * counters `c`, and take `from` out by its text: `-I CHAIN line -c p b to`, `-D CHAIN from`. In one
 * restore: if `from` is gone the restore fails as a whole and nothing changes, and whatever a writer
 * that ignores the lock moved meanwhile, no other rule is overwritten (a line alone is never acted on).
 * The undo is the mirror image, swapLines(to, from, line, c). Inserted first, so that a chain that
 * shrank above `from` still takes `to` at `line`.
 */
export const swapLines = (from: string, to: string, line: number, c: Counters) => [
  asInsert(to, line, c),
  asDelete(from),
];
