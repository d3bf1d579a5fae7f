/**
 * The one shell-quoting boundary of the package: every string that reaches a remote shell goes
 * through `shellQuote` / `shellJoin`. Nothing else builds shell text by hand.
 */

// Words made only of these characters mean the same to sh quoted or not (as Python's shlex.quote).
const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One word for sh: left as is when it is plainly safe, otherwise in '…' with ' written as '\''. */
export function shellQuote(word: string): string {
  if (typeof word !== "string") throw new TypeError(`shellQuote: expected a string, got ${typeof word}`);
  if (word.includes("\0")) throw new Error("shellQuote: a NUL byte cannot be passed to a shell command");
  if (SAFE.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** An argument vector as one sh command line: each word quoted, joined by spaces. */
export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
