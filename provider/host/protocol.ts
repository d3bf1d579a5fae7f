// The remote side of a host transaction, as text: shell snippets that frame each command's output,
// exit status and stderr in sections, and the parser for what comes back. Pure: no I/O here.
// `pit` (pulumi-iptables) marks every name the remote scripts define or print: PIT_ variables, pit_
// shell functions, @@pit- framing lines and here-document terminators, so none clashes with a name
// of the host's own shell or is taken for output of the commands they run.
import { randomBytes } from "node:crypto";
import { shellJoin } from "../ssh";

import type { Family, FamilyName } from "../rules";

export type { Family };
export const FAMILIES: readonly Family[] = [4, 6];
export const familyName = (f: Family): FamilyName => (f === 4 ? "ipv4" : "ipv6");
export const iptables = (f: Family) => (f === 4 ? "iptables" : "ip6tables");

/** The lock every process using this package takes from reading a chain to changing it. */
export const LOCK_FILE = "/run/pulumi-iptables.lock";

/** The time limits of a host's remote steps, all derived from the connection's perDialTimeout. */
export interface Limits {
  /** Seconds to wait for the lock (another stack or operator holding it) and for the xtables lock. */
  lockWait: number;
  /** Seconds after which the host kills one remote command (so it never holds the lock for good). */
  command: number;
  /** Seconds the provider waits for one step's answer before it closes the channel. */
  step: number;
  /** Seconds after which the host undoes a change the provider has not confirmed. */
  rollbackAfter: number;
}

/** Generous limits: the lock wait is twice perDialTimeout (30 s by default, at least 5), a command
 * may take that plus perDialTimeout, and a step one perDialTimeout more for the round trip. */
export function limitsFor(perDialTimeout: number, rollbackAfter: number): Limits {
  const lockWait = Math.ceil(Math.min(30, Math.max(5, 2 * perDialTimeout)));
  const command = Math.ceil(lockWait + perDialTimeout);
  return { lockWait, command, step: Math.ceil(command + perDialTimeout), rollbackAfter };
}

export interface Section {
  code: number;
  out: string;
  err: string;
}
export type Sections = Record<string, Section>;

const BEGIN = "@@pit-begin ";
const ERR = "@@pit-stderr ";
const END = "@@pit-end ";

/** A random mark, fresh for each script: what a host prints cannot forge the script's framing. */
const randomMark = () => randomBytes(8).toString("hex");

/** The exit status of a command the host killed at its deadline (`timeout -s KILL`). */
export const KILLED = 137;

/**
 * A shell snippet that runs argv (or a script, in its own `sh -c`) and frames its stdout, stderr and
 * exit status. The command runs under the host-side deadline ($PIT_DL, set by the preamble) and
 * without the lock's descriptor, so a hung command is killed and never keeps the lock. The framing
 * marks carry the script's own random mark ($PIT_M, see `framed`).
 */
export function section(name: string, command: string[] | { script: string }, stdin?: string): string {
  const cmd = "script" in command ? shellJoin(["sh", "-c", command.script]) : shellJoin(command);
  return frame(name, `$PIT_DL ${cmd}`, `9>&- ${stdin === undefined ? "</dev/null" : heredoc(stdin)}`);
}

/**
 * A here-document of `text` (which is never expanded) under a random terminator, checked not to occur
 * in the text: data cannot end it early and run as script.
 */
export function heredoc(text: string): string {
  const end = `@@PIT_${randomMark()}`;
  const body = text.endsWith("\n") ? text : `${text}\n`;
  if (body.includes(end)) throw new Error("here-document data holds its own terminator");
  return `<<'${end}'\n${body}${end}`;
}

function frame(name: string, cmd: string, redirections: string): string {
  return [
    `printf '${BEGIN}%s %s\\n' "$PIT_M" ${name}`,
    `{ ${cmd}\n} 2>"$PIT_ERR" ${redirections}`,
    `c=$?; printf '\\n${ERR}%s\\n' "$PIT_M"; cat "$PIT_ERR"; printf '\\n${END}%s %s %d\\n' "$PIT_M" ${name} $c`,
  ].join("\n");
}

/** A script with its framing mark, the step's end marker, and the parser of what it prints. */
export interface Framed {
  script: string;
  /** What the shell prints once the whole step is done (see shell.ts). */
  done: string;
  parse: (stdout: string) => Sections;
}

/** Gives a script (made of sections) a fresh random mark, set as $PIT_M before it runs. */
export function framed(script: string): Framed {
  const mark = randomMark();
  return {
    script: `PIT_M=${mark}\n${script}`,
    done: `@@pit-step-done ${mark}`,
    parse: (out) => parseSections(out, mark),
  };
}

/**
 * A process's identity on the host, as shell functions: `pit_id PID` prints "PID:STARTTIME" (field 22
 * of /proc/PID/stat, the start time in clock ticks since boot), so a pid reused by another process is
 * never taken for the one it named; `pit_alive ID` says whether ID (or a bare pid, as older versions
 * wrote) is still that process; $PIT_ME is this shell's; `pit_release` removes the lock link
 * ($PIT_HOLDS) only while it still names this shell. The preamble and the watchdog define them before
 * they take the lock.
 */
export const LOCK_IDENTITY = [
  `pit_id() { pit_s=; { read -r pit_s <"/proc/$1/stat"; } 2>/dev/null; pit_s=\${pit_s##*) }; set -- "$1" $pit_s; [ $# -ge 21 ] && echo "$1:\${21}"; }`,
  `pit_alive() { case \${1%%:*} in ""|*[!0-9]*) return 1 ;; esac; case $1 in *:*) [ "$(pit_id "\${1%%:*}")" = "$1" ] ;; *) [ -d "/proc/$1" ] ;; esac; }`,
  "PIT_ME=$(pit_id $$) || PIT_ME=$$",
  `pit_release() { [ -z "$PIT_HOLDS" ] || [ "$(readlink "$PIT_HOLDS" 2>/dev/null)" != "$PIT_ME" ] || rm -f "$PIT_HOLDS"; }`,
].join("\n");

/**
 * The preamble of every remote script: a temp file for stderr, removed on exit together with the
 * lock link if this shell holds it (a hang-up, TERM or SIGPIPE exits through the same cleanup);
 * $PIT_DL, the host-side deadline of each command (coreutils' and busybox's `timeout`; none where
 * there is none); and `pit_idle N`, which ends this shell if no next step arrives within N seconds
 * (0: no limit), so a provider that went silent (a dead link, a killed process) never leaves the lock
 * held. The idle reaper is a subshell that checks every second that its shell (pid and start time)
 * still lives: it ends within a second of its shell and never kills a process that reused the pid.
 * Its kill -9 skips the EXIT trap: the link it leaves names a dead identity, which the next taker
 * breaks (takeLock).
 */
export function preamble(limits: Limits): string {
  const n = limits.command;
  return [
    "PIT_ERR=$(mktemp) || exit 70",
    "PIT_HOLDS=",
    LOCK_IDENTITY,
    `trap 'rm -f "$PIT_ERR"; [ -z "$PIT_REAPER" ] || kill "$PIT_REAPER" 2>/dev/null; pit_release' EXIT`,
    "trap 'exit 129' HUP",
    "trap 'exit 141' PIPE",
    "trap 'exit 143' TERM",
    `if timeout -s KILL ${n} true 2>/dev/null; then PIT_DL="timeout -s KILL ${n}"`,
    `elif timeout -s KILL -t ${n} true 2>/dev/null; then PIT_DL="timeout -s KILL -t ${n}"`,
    "else PIT_DL=; fi",
    `pit_reap() { trap - EXIT HUP PIPE TERM; pit_n=$1`,
    `  while [ "$(pit_id $$)" = "$PIT_ME" ]; do`,
    `    [ "$pit_n" -gt 0 ] || { kill -9 $$; rm -f "$PIT_ERR"; exit 0; }`,
    "    sleep 1; pit_n=$((pit_n - 1))",
    "  done; }",
    `pit_idle() { [ -z "$PIT_REAPER" ] || kill "$PIT_REAPER" 2>/dev/null; PIT_REAPER=`,
    `  [ "$1" = 0 ] || { pit_reap "$1" </dev/null >/dev/null 2>&1 9>&- & PIT_REAPER=$!; }; }`,
    "",
  ].join("\n");
}

/** What a conversation's shell runs around each step: no idle limit while the step runs, then the
 * limit until the next step (see preamble). */
export const idleGuard = (idleSec: number) => ({
  before: "command -v pit_idle >/dev/null && pit_idle 0",
  after: `command -v pit_idle >/dev/null && pit_idle ${idleSec}`,
});

/** Where flock(1) is missing (busybox built without the applet, as Debian's is): the lock is this
 * symlink, whose target is the holder's identity ("pid:starttime", see LOCK_IDENTITY). Creating a
 * symlink is atomic and fails when it exists; a link whose holder is gone (killed before its cleanup
 * ran) is removed by the next taker. */
export const LOCK_LINK = `${LOCK_FILE}-pid`;

/** Held while a stale LOCK_LINK is broken (see takeLock). */
const BREAK_LINK = `${LOCK_FILE}-break`;

/** The lock section's exit status when the lock cannot be had at all (not: another holder has it). */
export const LOCK_UNAVAILABLE = 3;
/** How the lock step says that the shell is not root (followed by the user and uid). */
export const NOT_ROOT = "not root: logged in as";

/**
 * Shell text that takes the host's lock for the shell running it, which holds it until it exits:
 * flock on fd 9 of LOCK_FILE where flock exists, otherwise the link LOCK_LINK (released by the
 * shell's EXIT trap through $PIT_HOLDS; LOCK_IDENTITY must be defined). Waits at most `wait` seconds,
 * or as long as it takes. The one way to take the lock: transactions and the rollback watchdog both
 * use it.
 *
 * A lock file that cannot be opened (not root, a read-only /run) ends with LOCK_UNAVAILABLE; `command
 * exec` keeps the failed redirection from ending the shell. Every pass of the link loop either makes
 * progress (a stale link broken: try again at once) or sleeps and checks the deadline; a link that
 * cannot be made or broken three passes in a row (a read-only or full /run) ends with
 * LOCK_UNAVAILABLE, a live holder at the deadline with 1.
 */
export function takeLock(wait?: number): string {
  const flock = wait === undefined ? "flock 9" : `flock -w ${wait} 9`;
  const end = wait === undefined ? "" : `pit_end=$(( $(date +%s) + ${wait} )); `;
  const timedOut =
    wait === undefined
      ? ""
      : `\n    if [ "$(date +%s)" -ge "$pit_end" ]; then echo "${LOCK_LINK} (the lock on a host without flock) is held by process \${pit_holder%%:*}" >&2; break; fi`;
  return `if command -v flock >/dev/null 2>&1; then
  if command exec 9>>${LOCK_FILE}; then ${flock}
  elif [ "$(id -u)" != 0 ]; then echo "${NOT_ROOT} $(id -un) (uid $(id -u))" >&2; (exit ${LOCK_UNAVAILABLE})
  else echo "the lock file ${LOCK_FILE} cannot be opened for writing: it needs root (log in as root or set connection.sudo) and a writable /run" >&2; (exit ${LOCK_UNAVAILABLE}); fi
else
  ${end}pit_fails=0; pit_rc=1
  while :; do
    if pit_why=$(ln -s "$PIT_ME" ${LOCK_LINK} 2>&1); then PIT_HOLDS=${LOCK_LINK}; break; fi
    pit_holder=$(readlink ${LOCK_LINK} 2>/dev/null)
    if [ -z "$pit_holder" ]; then
      # No link to wait for: it was just released (try again), or it cannot be made at all.
      pit_fails=$((pit_fails + 1))
    elif pit_alive "$pit_holder"; then
      pit_fails=0
    elif pit_why=$(ln -s "$PIT_ME" ${BREAK_LINK} 2>&1); then
      # A stale link is broken under ${BREAK_LINK}, and only while it still names the dead holder: two
      # takers that saw the same dead holder must not both break it (the second would remove the
      # first's fresh link, and both would hold the lock).
      [ "$(readlink ${LOCK_LINK} 2>/dev/null)" != "$pit_holder" ] || pit_why=$(rm -f ${LOCK_LINK} 2>&1)
      rm -f ${BREAK_LINK}
      [ "$(readlink ${LOCK_LINK} 2>/dev/null)" = "$pit_holder" ] || continue
      pit_fails=$((pit_fails + 1))
    else
      # Another taker is breaking it; one that died doing so leaves ${BREAK_LINK}, removed here.
      pit_breaker=$(readlink ${BREAK_LINK} 2>/dev/null)
      if [ -z "$pit_breaker" ]; then pit_fails=$((pit_fails + 1))
      elif ! pit_alive "$pit_breaker"; then pit_why=$(rm -f ${BREAK_LINK} 2>&1) || pit_fails=$((pit_fails + 1)); fi
    fi
    if [ "$pit_fails" -ge 3 ]; then
      if [ "$(id -u)" != 0 ]; then echo "${NOT_ROOT} $(id -un) (uid $(id -u))" >&2
      else echo "this host has no flock, and the lock link ${LOCK_LINK} cannot be made: $pit_why" >&2; fi
      pit_rc=${LOCK_UNAVAILABLE}; break
    fi${timedOut}
    sleep 0.1 2>/dev/null || sleep 1
  done
  [ -n "$PIT_HOLDS" ] || (exit $pit_rc)
fi`;
}

/** Takes the lock, waiting at most `lockWait` seconds. It runs in the shell itself, which holds the
 * lock until it exits; no command it starts inherits the descriptor (section closes fd 9). */
export const lock = (limits: Limits) => frame("lock", takeLock(limits.lockWait), "</dev/null");

/**
 * Parses the sections of a remote script's stdout, framed with `mark`. Text outside sections is
 * ignored; a framing line out of place (which only the script itself can print) is refused.
 */
export function parseSections(stdout: string, mark: string): Sections {
  const [begin, err, end] = [`${BEGIN}${mark} `, `${ERR}${mark}`, `${END}${mark} `];
  const forged = (line: string) =>
    new Error(`the host's output holds a framing line out of place: ${JSON.stringify(line)}`);
  const out: Sections = {};
  let name: string | undefined;
  let buf: string[] = [];
  let errAt = -1;
  for (const line of stdout.split("\n")) {
    if (name === undefined) {
      if (line.startsWith(begin)) {
        name = line.slice(begin.length);
        buf = [];
        errAt = -1;
      } else if (line.includes(mark)) throw forged(line);
      continue;
    }
    if (line === err && errAt < 0) {
      errAt = buf.length;
      continue;
    }
    if (line.startsWith(`${end}${name} `)) {
      const code = Number(line.slice(end.length + name.length + 1));
      const o = buf.slice(0, errAt < 0 ? buf.length : errAt);
      const e = errAt < 0 ? [] : buf.slice(errAt);
      // Each framed part gets one extra newline from the printf before the marker.
      out[name] = { code, out: trimOne(o).join("\n"), err: trimOne(e).join("\n").trim() };
      name = undefined;
      continue;
    }
    if (line.includes(mark)) throw forged(line);
    buf.push(line);
  }
  return out;
}

function trimOne(lines: string[]): string[] {
  return lines.length && lines[lines.length - 1] === "" ? lines.slice(0, -1) : lines;
}
