// The remote side of a host transaction, as text: shell snippets that frame each command's output,
// exit status and stderr in sections, and the parser for what comes back. Pure: no I/O here.
import { shellJoin } from "../ssh";

import type { Family, FamilyName } from "../rules";

export type { Family };
export const FAMILIES: readonly Family[] = [4, 6];
export const familyName = (f: Family): FamilyName => (f === 4 ? "ipv4" : "ipv6");
export const iptables = (f: Family) => (f === 4 ? "iptables" : "ip6tables");

/** The lock every process using this package takes from reading a chain to changing it. */
export const LOCK_FILE = "/run/pulumi-iptables.lock";
/** Seconds to wait for the lock (another stack or operator holding it) and for the xtables lock. */
export const LOCK_WAIT = 30;

export interface Section {
  code: number;
  out: string;
  err: string;
}
export type Sections = Record<string, Section>;

const BEGIN = "@@pit-begin ";
const ERR = "@@pit-stderr";
const END = "@@pit-end ";

/** A shell snippet that runs argv (or a script) and frames its stdout, stderr and exit status. */
export function section(name: string, command: string[] | { script: string }, stdin?: string): string {
  const cmd = "script" in command ? command.script : shellJoin(command);
  const input =
    stdin === undefined ? "</dev/null" : `<<'@@PIT_INPUT'\n${stdin.endsWith("\n") ? stdin : `${stdin}\n`}@@PIT_INPUT`;
  return [
    `printf '${BEGIN}%s\\n' ${name}`,
    `{ ${cmd}\n} 2>"$PIT_ERR" ${input}`,
    `c=$?; printf '\\n${ERR}\\n'; cat "$PIT_ERR"; printf '\\n${END}%s %d\\n' ${name} $c`,
  ].join("\n");
}

/** The preamble of every remote script: a temp file for stderr, removed on exit together with the
 * lock link if this shell holds it (a hang-up or TERM exits through the same cleanup). */
export const PREAMBLE = `PIT_ERR=$(mktemp) || exit 70
PIT_HOLDS=
trap 'rm -f "$PIT_ERR"; [ -z "$PIT_HOLDS" ] || rm -f "$PIT_HOLDS"' EXIT
trap 'exit 129' HUP
trap 'exit 143' TERM
`;

/** Where flock(1) is missing (busybox built without the applet, as Debian's is): the lock is this
 * symlink, whose target is the holder's pid. Creating a symlink is atomic and fails when it exists;
 * a link whose holder is gone (killed before its cleanup ran) is removed by the next taker. */
export const LOCK_LINK = `${LOCK_FILE}-pid`;

/** The lock section's exit status when the lock cannot be had at all (not: another holder has it). */
export const LOCK_UNAVAILABLE = 3;

/** Takes the lock, waiting at most LOCK_WAIT seconds (the shell holds it until it exits): flock on
 * LOCK_FILE where flock exists, otherwise the link LOCK_LINK. */
export const LOCK = section("lock", {
  script: `if command -v flock >/dev/null 2>&1; then
  exec 9>>${LOCK_FILE} && flock -w ${LOCK_WAIT} 9
else
  pit_end=$(( $(date +%s) + ${LOCK_WAIT} )); pit_fails=0; pit_rc=1
  while :; do
    if pit_why=$(ln -s $$ ${LOCK_LINK} 2>&1); then PIT_HOLDS=${LOCK_LINK}; break; fi
    pit_holder=$(readlink ${LOCK_LINK} 2>/dev/null)
    if [ -z "$pit_holder" ]; then
      # No link to wait for: it was just released (try again), or it cannot be made at all.
      pit_fails=$((pit_fails + 1))
      [ "$pit_fails" -lt 3 ] && continue
      echo "this host has no flock, and the lock link ${LOCK_LINK} cannot be made: $pit_why" >&2; pit_rc=${LOCK_UNAVAILABLE}; break
    fi
    if [ ! -d "/proc/$pit_holder" ]; then rm -f ${LOCK_LINK}; continue; fi
    if [ "$(date +%s)" -ge "$pit_end" ]; then echo "${LOCK_LINK} (the lock on a host without flock) is held by process $pit_holder" >&2; break; fi
    sleep 0.1 2>/dev/null || sleep 1
  done
  [ -n "$PIT_HOLDS" ] || (exit $pit_rc)
fi`,
});

/** Parses the sections of a remote script's stdout. Text outside sections is ignored. */
export function parseSections(stdout: string): Sections {
  const out: Sections = {};
  const lines = stdout.split("\n");
  let name: string | undefined;
  let buf: string[] = [];
  let errAt = -1;
  for (const line of lines) {
    if (name === undefined) {
      if (line.startsWith(BEGIN)) {
        name = line.slice(BEGIN.length);
        buf = [];
        errAt = -1;
      }
      continue;
    }
    if (line === ERR && errAt < 0) {
      errAt = buf.length;
      continue;
    }
    if (line.startsWith(`${END + name} `)) {
      const code = Number(line.slice(END.length + name.length + 1));
      const o = buf.slice(0, errAt < 0 ? buf.length : errAt);
      const e = errAt < 0 ? [] : buf.slice(errAt);
      // Each framed part gets one extra newline from the printf before the marker.
      out[name] = { code, out: trimOne(o).join("\n"), err: trimOne(e).join("\n").trim() };
      name = undefined;
      continue;
    }
    buf.push(line);
  }
  return out;
}

function trimOne(lines: string[]): string[] {
  return lines.length && lines[lines.length - 1] === "" ? lines.slice(0, -1) : lines;
}
