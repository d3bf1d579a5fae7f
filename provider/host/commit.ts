// Commit-confirm on the host, as remote shell text (pure). Before a transaction applies anything it
// arms a rollback: the lines that undo it, per family, in a directory under /run, and a detached
// watchdog (its own session, no inherited descriptors, POSIX sh) that after `rollbackAfter` seconds
// takes the lock and restores them unless the transaction was confirmed (its directory removed).
// A transaction's shell holds the lock until it ends, so a watchdog never acts in the middle of one;
// a pending directory found by a later transaction (which holds the lock) belongs to a transaction
// that can no longer be confirmed, and is reverted at once.
import { shellQuote } from "../ssh";
import { FAMILIES, heredoc, iptables, LOCK_IDENTITY, section, takeLock } from "./protocol";
import type { Family, Limits } from "./protocol";

/** Pending transactions: one directory each, named by its id. */
export const TX_DIR = "/run/pulumi-iptables.tx";

export const txDir = (id: string) => `${TX_DIR}/${id}`;

/** iptables-restore input of `lines` in `table`. */
export const restoreInput = (table: string, lines: string[]) => `*${table}\n${lines.join("\n")}\nCOMMIT\n`;

/** The revert script's last line: what REAP checks to tell a rollback written whole (an older
 * version's ends with the same text, without the exit). */
const REVERT_LAST = `rm -rf "$d.reverted"; mv "$d" "$d.reverted"`;

/**
 * The revert script of one transaction (run with the lock held): each family's undo lines in one
 * iptables-restore, or line by line when that is refused (a line whose rule someone else removed
 * already must not keep the others from going in); then the directory is renamed `<id>.reverted`,
 * with what the restores said in its `log`, ending "reverted <time>" only when every undo line went
 * in (and "incomplete <time>" otherwise). Exits 0 only then.
 */
function revertScript(id: string, table: string, families: Family[], limits: Limits): string {
  const d = shellQuote(txDir(id));
  const lines = [`d=${d}`, `[ -d "$d" ] || exit 0`, "ok=0"];
  for (const f of families) {
    const restore = `${iptables(f)}-restore --noflush -w ${limits.lockWait}`;
    lines.push(
      `if [ "$(tail -n 1 "$d/undo${f}" 2>/dev/null)" != COMMIT ]; then`,
      `  ok=1; echo "the IPv${f} undo lines are missing or incomplete: none of them was restored" >>"$d/log"`,
      `elif ! ${restore} <"$d/undo${f}" 2>>"$d/log" >/dev/null; then`,
      `  bad=$(sed -n '/^-/p' "$d/undo${f}" | while IFS= read -r l; do`,
      `    printf '*%s\\n%s\\nCOMMIT\\n' ${shellQuote(table)} "$l" | ${restore} 2>>"$d/log" >/dev/null || { echo "not undone: $l" >>"$d/log"; echo "$l"; }`,
      "  done)",
      `  [ -z "$bad" ] || ok=1`,
      "fi",
    );
  }
  lines.push(
    `if [ "$ok" = 0 ]; then date -u '+reverted %Y-%m-%dT%H:%M:%SZ'; else date -u '+incomplete %Y-%m-%dT%H:%M:%SZ'; fi >>"$d/log"`,
    `${REVERT_LAST}; exit $ok`,
  );
  return `${lines.join("\n")}\n`;
}

/** The watchdog: sleeps, takes the lock (the same way transactions do, waiting as long as one holds
 * it), reverts. */
function watchdogScript(id: string, limits: Limits): string {
  const d = shellQuote(txDir(id));
  return [
    `d=${d}`,
    LOCK_IDENTITY,
    `echo "$PIT_ME" >"$d/pid"`,
    // A pid link it holds goes when it exits (a stale one is removed by the next taker in any case).
    `PIT_HOLDS=; trap pit_release EXIT; trap 'exit 129' HUP; trap 'exit 143' TERM`,
    `sleep ${limits.rollbackAfter}`,
    `${takeLock()} || exit 1`,
    `[ -d "$d" ] && sh "$d/revert" 9>&-`,
    "",
  ].join("\n");
}

/** Writes `text` to `file` and checks it whole (the write succeeded and the file ends with the
 * text's last line: a full /run cuts a file short); otherwise the arm stops, its directory removed,
 * saying so on stdout (on a full /run the section's stderr file cannot be written either). */
const write = (file: string, text: string) =>
  `cat >${file} ${heredoc(text)}
[ $? = 0 ] && [ "$(tail -n 1 ${file} 2>/dev/null)" = ${shellQuote(text.trimEnd().split("\n").pop()!)} ] || { echo "could not write ${file} whole (is /run full?)"; rm -rf "$d"; exit 1; }`;

/**
 * Arms the rollback of a transaction: writes its undo lines and scripts, each checked whole (an arm
 * that could not be written fails, so nothing is applied after it), starts the watchdog detached
 * (setsid where there is one: it outlives the SSH session) and prints the time it reverts.
 */
export function armStep(id: string, table: string, undo: Partial<Record<Family, string[]>>, limits: Limits): string {
  const d = shellQuote(txDir(id));
  const parts = [`d=${d}`, `mkdir -p ${TX_DIR} && mkdir "$d" || exit 1`];
  const families = FAMILIES.filter((f) => undo[f]?.length);
  for (const f of families) parts.push(write(`"$d/undo${f}"`, restoreInput(table, undo[f]!)));
  parts.push(
    write(`"$d/revert"`, revertScript(id, table, families, limits)),
    write(`"$d/watchdog"`, watchdogScript(id, limits)),
    `if command -v setsid >/dev/null 2>&1; then s=setsid; else s=nohup; fi`,
    `$s sh "$d/watchdog" </dev/null >/dev/null 2>&1 &`,
    `date -u -d "@$(( $(date +%s) + ${limits.rollbackAfter} ))" '+%H:%M:%S UTC' 2>/dev/null || date -u '+%H:%M:%S UTC (+${limits.rollbackAfter}s)'`,
  );
  return section("arm", { script: parts.join("\n") });
}

/** Stops the watchdog of "$d" (its process group), only while its pid still names it (pid and start
 * time: a pid reused by another process is left alone). Needs LOCK_IDENTITY. */
const STOP_WATCHDOG = `p=$(cat "$d/pid" 2>/dev/null); ! pit_alive "$p" || kill -- "-\${p%%:*}" 2>/dev/null || kill "\${p%%:*}" 2>/dev/null`;

/** Confirms a transaction: its watchdog stopped, its directory removed. Prints "confirmed". */
export function confirmStep(id: string): string {
  const d = shellQuote(txDir(id));
  return section("confirm", {
    script: `${LOCK_IDENTITY}
d=${d}; [ -d "$d" ] || { echo "transaction ${id} is no longer pending (reverted?)" >&2; exit 1; }
${STOP_WATCHDOG}
rm -rf "$d" && echo confirmed`,
  });
}

/**
 * Reverts every pending transaction (run with the lock held, before listing): their shells are gone,
 * so nothing can confirm them any more. Reports each transaction reverted, now or earlier by its
 * watchdog, as "<id> reverted" when every undo line went in, otherwise "<id> NOT reverted: <why>",
 * and removes it: a report is given once. A directory whose rollback was never written whole
 * (an arm cut off) had nothing applied after it and is removed too.
 */
export const REAP = section("reap", {
  script: `[ -d ${TX_DIR} ] || exit 0
${LOCK_IDENTITY}
for d in ${TX_DIR}/*; do
  [ -d "$d" ] || continue
  id=\${d##*/}
  case "$id" in
  *.reverted)
    id=\${id%.reverted}
    case "$(tail -n 1 "$d/log" 2>/dev/null)" in "reverted "*) ok=0 ;; *) ok=1 ;; esac ;;
  *)
    case "$(tail -n 1 "$d/revert" 2>/dev/null)" in
    '${REVERT_LAST}'*) ;;
    *) echo "$id NOT reverted: its rollback was never written whole, and nothing was applied after it"; rm -rf "$d"; continue ;;
    esac
    ${STOP_WATCHDOG}
    sh "$d/revert"; ok=$?; d=$d.reverted ;;
  esac
  if [ "$ok" = 0 ]; then echo "$id reverted"
  else echo "$id NOT reverted: $(grep -v '^incomplete ' "$d/log" 2>/dev/null | tr '\\n' ' ')"; fi
  rm -rf "$d"
done; true`,
});
