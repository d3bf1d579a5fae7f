// The pid-link lock and the idle reaper under pid reuse and SIGPIPE (issue 21.6), with the provider's
// real remote scripts under dash and busybox ash, where flock is missing. Each case runs in a private
// pid and mount namespace (its own tmpfs /run, its own pids, so a pid is reused on purpose by writing
// ns_last_pid there) and never touches this machine's /run or processes. Needs root (npm test runs
// this inside the lab wrapper).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { framed, LOCK_LINK, limitsFor, lock, preamble } from "../../provider/host/protocol";

const limits = limitsFor(1, 30);
const PREAMBLE = preamble(limits);

// The shells a host may have, and busybox applets for every command (no flock among them).
const SHELLS = [
  ["dash", "/bin/dash"],
  ["busybox ash", "/bin/busybox sh"],
] as const;
const APPLETS = ["sh", "ln", "readlink", "rm", "sleep", "date", "mktemp", "cat", "timeout", "mkfifo", "head", "mount"];
let bin: string;
beforeAll(() => {
  bin = mkdtempSync(join(tmpdir(), "pit-lockid-"));
  for (const a of APPLETS) symlinkSync("/bin/busybox", join(bin, a));
});
afterAll(() => rmSync(bin, { recursive: true, force: true }));

/** Runs `driver` (sh) as the init of a new pid namespace with a tmpfs /run; SH is the shell under test,
 * HOLD the text a holder shell runs, TAKE a next taker's. Everything in the namespace dies with the driver. */
function inNamespace(shell: string, driver: string, hold: string, take = ""): string {
  return execFileSync(
    "/usr/bin/unshare",
    ["--pid", "--fork", "--mount-proc", "--", "/bin/dash", "-c", `mount -t tmpfs tmpfs /run || exit 1\n${driver}`],
    { encoding: "utf8", env: { PATH: bin, SH: shell, HOLD: hold, TAKE: take, LINK: LOCK_LINK }, timeout: 60_000 },
  );
}

/** Driver text: starts `$SH -c "$HOLD"` in the background as P, waits for `ready`, kills it with -9
 * (its EXIT trap never runs), then makes a `sleep 100` take P's pid (REUSED=yes when it did). */
const KILL_AND_REUSE = `mkfifo /run/f
$SH -c "$HOLD" <>/run/f >/dev/null 2>&1 & p=$!
n=0; until [ -e /run/ready ] || [ $n -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
kill -9 $p; wait $p
echo $((p - 1)) >/proc/sys/kernel/ns_last_pid; sleep 100 & q=$!
[ "$q" = "$p" ] && echo REUSED=yes || echo "REUSED=no ($p, $q)"`;

describe.each(SHELLS)("issue 21.6 under %s: a holder is its pid and start time", (_name, shell) => {
  it("issue 21.6: a lock link whose shell was killed with -9 is taken over though its pid was reused", () => {
    const take = framed(`${PREAMBLE}${lock(limits)}`);
    const out = inNamespace(
      shell,
      `${KILL_AND_REUSE}
echo "LINK=$(readlink $LINK)"
$SH -c "$TAKE" </dev/null`,
      `${take.script}\n: >/run/ready; read x`,
      take.script,
    );
    expect(out).toContain("REUSED=yes");
    // The link the killed shell left, "pid:starttime", names the reused pid (alive, another process).
    expect(out).toMatch(/LINK=\d+:\d+\n/);
    // The next taker sees that the pid's start time differs, breaks the link and takes the lock.
    const taken = take.parse(out).lock;
    expect(taken?.err).toBe("");
    expect(taken?.code).toBe(0);
  });

  it("issue 21.6: the idle reaper of a shell killed with -9 never kills the process that reused its pid", () => {
    // The shell arms its idle reaper (2 s), then is killed before the reaper fires.
    const hold = `${PREAMBLE}pit_idle 2\n: >/run/ready; read x`;
    const out = inNamespace(
      shell,
      `${KILL_AND_REUSE}
sleep 4
kill -0 $q && echo SURVIVED=yes || echo SURVIVED=no
# Every process left in the namespace but this driver and the sleep: the reaper must be gone.
for s in /proc/[0-9]*/stat; do read -r l <$s || continue; set -- $l; [ "$1" = $$ ] || [ "$1" = "$q" ] || echo "LEFT=$l"; done`,
      hold,
    );
    expect(out).toContain("REUSED=yes");
    expect(out).toContain("SURVIVED=yes");
    expect(out).not.toContain("LEFT=");
  });

  it("issue 21.6: a shell ended by SIGPIPE (its reader gone) still releases the lock link", () => {
    // It takes the lock (that output aside), then writes to its reader until that has gone.
    const hold = `{\n${PREAMBLE}${lock(limits)}\n} >/dev/null\nreadlink $LINK >/run/held; while :; do echo more; sleep 0.1; done`;
    const out = inNamespace(
      shell,
      `$SH -c "$HOLD" | head -n 1 >/dev/null
echo "HELD=$(cat /run/held)"
[ -L $LINK ] && echo "LEFT=$(readlink $LINK)" || echo RELEASED`,
      hold,
    );
    // It held the lock (the link named it), then its output's reader went away.
    expect(out).toMatch(/HELD=\d+:\d+\n/);
    expect(out).toContain("RELEASED");
  });
});
