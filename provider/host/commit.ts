// Commit-confirm on the host, as remote shell text (pure). Before a transaction applies anything it
// arms a rollback: the lines that undo it, per family, in a directory under /run, and a detached
// watchdog (its own session, no inherited descriptors, POSIX sh) that after `rollbackAfter` seconds
// takes the lock and reverts unless the transaction was confirmed. A transaction's shell holds the
// lock until it ends, so a watchdog never acts in the middle of one; a pending directory found by a
// later transaction (which holds the lock) belongs to a transaction that can no longer be confirmed,
// and is reverted at once. Whoever acts on a pending transaction first claims it with one `mv` of its
// directory (to `<id>.confirmed` or `<id>.reverting`): exactly one of the confirmation, the watchdog
// and a later REAP acts, and the others see that they lost (docs/architecture.md, "Commit-confirm").
import { shellQuote } from "../ssh";
import { FAMILIES, heredoc, iptables, LOCK_IDENTITY, section, takeLock } from "./protocol";
import type { Family, Limits } from "./protocol";
import { restoreCommand, restoreInput } from "./restore";

/** Pending transactions: one directory each, named by its id. */
export const TX_DIR = "/run/pulumi-iptables.tx";

export const txDir = (id: string) => `${TX_DIR}/${id}`;

/** Separates the undo units of an arm's undo file (a comment line to iptables-restore). */
const UNIT = "# unit";

/** An arm's undo lines from the undo units of a batch, each unit after a UNIT line. */
export const unitsOf = (units: string[][]) => units.flatMap((u) => [UNIT, ...u]);

/** The revert script's last line: what REAP checks to tell a rollback written whole. */
const REVERT_LAST = `[ "$ok" = 0 ] && s=reverted || s=incomplete; rm -rf "$p.$s"; mv "$d" "$p.$s"; exit $ok`;

/** The revert's exit status when it lost the claim: the transaction was confirmed or is being
 * reverted by another (docs/architecture.md, "Commit-confirm"). */
export const CLAIM_LOST = 3;

/**
 * `pit_fit IPTABLES WAIT TABLE FAMILY`: copies iptables-restore input from stdin to stdout with each
 * `-I CHAIN N` put at the nearest line that exists (at most one past the chain's last rule, counted on
 * the host now with `iptables -S CHAIN`, and the lines before it in the same input), so an undo puts a
 * deleted rule back even when the chain has shrunk since. Every line keeps its exact rule text (and
 * counters, `-c P B`, as an adoption's swap gives them). A line put elsewhere than recorded is
 * announced by a comment line `# moved: ...` above it, which iptables-restore ignores and the revert
 * logs once the line went in. The undo is idempotent: an `-I` of a rule the chain holds already, or a
 * `-D` of a rule it does not hold (exact text, as a listing of the chain that succeeded shows it), is left out and announced
 * as `# skipped: ...`, so undoing a change that never went in (a shell killed between the arm and the
 * restore) changes nothing: a delete's undo never adds a second copy. An `-I` of a rule that a `-D`
 * before it in the same input takes out (a move's undo: out, and back in at its old line) goes in.
 */
const FIT = `pit_fit() { pit_l= pit_d=
  while IFS= read -r l; do
    c=\${l#-? }; c=\${c%% *}
    case $l in
    "-I "*)
      r=\${l#-I "$c" }; n=\${r%% *}; r=\${r#"$n" }
      case $n in ""|*[!0-9]*) printf '%s\\n' "$l"; pit_l="$pit_l+ $c
"; continue ;; esac
      t=$r; case $t in "-c "*) t=\${t#-c * * } ;; esac
      if s=$($1 -w "$2" -t "$3" -S "$c" 2>/dev/null) && printf '%s\\n' "$s" | grep -qxF -- "-A $c $t" &&
        ! printf '%s' "$pit_d" | grep -qxF -- "-A $c $t"; then
        printf '# skipped: %s\\n' "$4: -A $c $t is on the host already (the change never took it away)"; continue
      fi
      m=$(( $($1 -w "$2" -t "$3" -S "$c" 2>/dev/null | grep -c '^-A ') + $(printf '%s' "$pit_l" | grep -cxF "+ $c") - $(printf '%s' "$pit_l" | grep -cxF -- "- $c") + 1 ))
      [ "$n" -le "$m" ] || { printf '# moved: %s\\n' "$4: put back at line $m of $c, not at line $n as recorded (the chain is shorter now): -A $c $t"; n=$m; }
      printf '%s\\n' "-I $c $n $r"; pit_l="$pit_l+ $c
" ;;
    "-A "*) printf '%s\\n' "$l"; pit_l="$pit_l+ $c
" ;;
    "-D "*)
      if s=$($1 -w "$2" -t "$3" -S "$c" 2>/dev/null) && ! printf '%s\\n' "$s" | grep -qxF -- "-A \${l#-D }"; then
        printf '# skipped: %s\\n' "$4: -A \${l#-D } is not on the host (the change never put it there)"; continue
      fi
      printf '%s\\n' "$l"; pit_l="$pit_l- $c
"; pit_d="$pit_d-A \${l#-D }
" ;;
    *) printf '%s\\n' "$l" ;;
    esac
  done; }`;

/**
 * The revert script of one transaction (run with the lock held). It first claims the transaction:
 * one `mv` of its directory to `<id>.reverting`, which fails when a confirmation (or another revert)
 * claimed it first; it then exits CLAIM_LOST and does nothing. Then each family's undo lines (read
 * once, fitted to the chain as it is now: FIT) go in one iptables-restore, or unit by unit (each
 * request's undo lines: a swap back goes in whole or not at all) when that is refused (a request whose
 * rule someone else removed already must not keep the others from going in). The directory is then
 * renamed `<id>.reverted` when every undo unit went in, `<id>.incomplete` otherwise: the outcome is in
 * the name, which a full /run cannot keep from being written (it can the log). The log holds what the
 * restores said: each line put back elsewhere than recorded ("moved: ...") or skipped ("skipped:
 * ..."), and the units not undone. Exits 0 only when every unit went in.
 */
function revertScript(id: string, table: string, families: Family[], limits: Limits): string {
  const p = shellQuote(txDir(id));
  const lines = [
    `p=${p}; d=$p.reverting`,
    LOCK_IDENTITY,
    `mv "$p" "$d" 2>/dev/null || exit ${CLAIM_LOST}`,
    `echo "$PIT_ME" >"$d/reverter"`,
    FIT,
    `pit_log() { sed -n -e 's/^# moved: /moved: /p' -e 's/^# skipped: /skipped: /p' >>"$d/log"; }`,
    "ok=0",
  ];
  for (const f of families) {
    const restore = restoreCommand(f, limits).join(" ");
    const fit = `pit_fit ${iptables(f)} ${limits.lockWait} ${shellQuote(table)} IPv${f}`;
    lines.push(
      `u=$(cat "$d/undo${f}" 2>/dev/null)`,
      `if [ "$(printf '%s\\n' "$u" | tail -n 1)" != COMMIT ]; then`,
      `  ok=1; echo "the IPv${f} undo lines are missing or incomplete: none of them was restored" >>"$d/log"`,
      `elif x=$(printf '%s\\n' "$u" | ${fit}) && printf '%s\\n' "$x" | ${restore} 2>>"$d/log" >/dev/null; then`,
      `  printf '%s\\n' "$x" | pit_log`,
      "else",
      // Unit by unit (each request's undo lines, after a UNIT line): a swap back never goes in halfway.
      `  bad=$({ printf '%s\\n' "$u" | sed -n -e '/^-/p' -e '/^${UNIT}$/p'; echo '${UNIT}'; } | { g=; while IFS= read -r l; do`,
      `    if [ "$l" != '${UNIT}' ]; then g="$g$l
"; continue; fi`,
      `    [ -n "$g" ] || continue`,
      `    x=$(printf '*%s\\n%sCOMMIT\\n' ${shellQuote(table)} "$g" | ${fit})`,
      `    if printf '%s\\n' "$x" | ${restore} 2>>"$d/log" >/dev/null; then printf '%s\\n' "$x" | pit_log`,
      `    else printf 'not undone: %s' "$g" >>"$d/log"; printf '%s' "$g"; fi`,
      "    g=",
      "  done; })",
      `  [ -z "$bad" ] || ok=1`,
      "fi",
    );
  }
  lines.push(
    `if [ "$ok" = 0 ]; then date -u '+reverted %Y-%m-%dT%H:%M:%SZ'; else date -u '+incomplete %Y-%m-%dT%H:%M:%SZ'; fi >>"$d/log"`,
    REVERT_LAST,
  );
  return `${lines.join("\n")}\n`;
}

/** How long (in seconds, one try a second) the watchdog keeps trying a lock that cannot be had at all
 * (a read-only /run): the revert needs a writable /run too. Past it, the next run's REAP reverts. */
export const WATCHDOG_RETRIES = 3600;

/** The watchdog: sleeps, takes the lock (the same way transactions do, waiting as long as one holds
 * it; trying again each second while it cannot be had at all), reverts. */
function watchdogScript(id: string, limits: Limits): string {
  const d = shellQuote(txDir(id));
  return [
    `d=${d}`,
    LOCK_IDENTITY,
    `echo "$PIT_ME" >"$d/pid"`,
    // A pid link it holds goes when it exits (a stale one is removed by the next taker in any case).
    `PIT_HOLDS=; trap pit_release EXIT; trap 'exit 129' HUP; trap 'exit 143' TERM`,
    `sleep ${limits.rollbackAfter}`,
    `n=0; until ${takeLock()}; do n=$((n + 1)); [ "$n" -lt ${WATCHDOG_RETRIES} ] || exit 1; sleep 1; done`,
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
 * time: a pid reused by another process is left alone). Only the winner of the claim does this, so it
 * never stops a revert: the watchdog is then asleep, waiting for the lock, or has lost the claim.
 * Needs LOCK_IDENTITY. */
const STOP_WATCHDOG = `w=$(cat "$d/pid" 2>/dev/null); ! pit_alive "$w" || kill -- "-\${w%%:*}" 2>/dev/null || kill "\${w%%:*}" 2>/dev/null`;

/**
 * Confirms a transaction (run by the shell that holds the lock, which applied it): claims it with one
 * `mv` of its directory to `<id>.confirmed`, then stops its watchdog and removes it; prints
 * "confirmed". When a revert claimed it first, says so and exits CLAIM_LOST: the change was reverted,
 * not confirmed.
 */
export function confirmStep(id: string): string {
  const p = shellQuote(txDir(id));
  return section("confirm", {
    script: `${LOCK_IDENTITY}
p=${p}; d=$p.confirmed
if mv "$p" "$d" 2>/dev/null; then
  ${STOP_WATCHDOG}
  rm -rf "$d"; echo confirmed
elif [ -d "$p.reverting" ] || [ -d "$p.reverted" ]; then
  echo "its rollback claimed it first: the host reverted the change (or is reverting it), it was not confirmed" >&2; exit ${CLAIM_LOST}
else
  echo "transaction ${id} is no longer pending" >&2; exit 1
fi`,
  });
}

/**
 * Reverts every pending transaction (run with the lock held, before listing): their shells are gone,
 * so nothing can confirm them any more. Reports each transaction reverted, now or earlier by its
 * watchdog, as "<id> reverted" when every undo line went in where it was, "<id> reverted, not
 * exactly: <what went elsewhere>" when a line went in at another line than recorded, otherwise
 * "<id> NOT reverted: <why>", and removes it: a report is given once. A directory whose rollback was
 * never written whole (an arm cut off) had nothing applied after it and is removed too; so is one a
 * confirmation claimed and did not get to remove. A revert cut off part way (its reverter is gone)
 * is reported as such; one whose reverter still runs is left to it.
 */
export const REAP = section("reap", {
  script: `[ -d ${TX_DIR} ] || exit 0
${LOCK_IDENTITY}
for d in ${TX_DIR}/*; do
  [ -d "$d" ] || continue
  id=\${d##*/}
  case "$id" in
  *.confirmed) rm -rf "$d"; continue ;;
  *.reverting)
    ! pit_alive "$(cat "$d/reverter" 2>/dev/null)" || continue
    id=\${id%.reverting}; ok=2 ;;
  *.reverted) id=\${id%.reverted}; ok=0 ;;
  *.incomplete) id=\${id%.incomplete}; ok=1 ;;
  *)
    case "$(tail -n 1 "$d/revert" 2>/dev/null)" in
    '${REVERT_LAST}') ;;
    *) echo "$id NOT reverted: its rollback was never written whole, and nothing was applied after it"; rm -rf "$d"; continue ;;
    esac
    sh "$d/revert"; ok=$?
    [ "$ok" != ${CLAIM_LOST} ] || continue
    [ "$ok" = 0 ] && d=$d.reverted || d=$d.incomplete; ${STOP_WATCHDOG} ;;
  esac
  moved=$(grep -e '^moved: ' -e '^skipped: ' "$d/log" 2>/dev/null | tr '\\n' ' ')
  if [ "$ok" = 0 ] && [ -z "$moved" ]; then echo "$id reverted"
  elif [ "$ok" = 0 ]; then echo "$id reverted, not exactly: \${moved% }"
  elif [ "$ok" = 2 ]; then echo "$id NOT reverted: its revert was cut off part way: $(tr '\\n' ' ' <"$d/log" 2>/dev/null)"
  else why=$(grep -v '^incomplete ' "$d/log" 2>/dev/null | tr '\\n' ' '); echo "$id NOT reverted: \${why:-its log could not be written (is /run full?)}"; fi
  rm -rf "$d"
done; true`,
});
