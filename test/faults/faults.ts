// What the fault matrix needs beyond the lab: host-side wrappers that fire at the worst moment (right
// after our iptables-restore applied the change), process kills, and the check that the host holds
// exactly the rules state holds, no more, and that the boot files hold exactly the persisted ones.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Family, LabHost } from "../lab/lab";
import type { PulumiProject } from "../pulumi";
import { fromStored } from "../../provider/state";

/** A file the wrappers create (in the host's lab directory, seen from the workstation too). */
export const firedFile = (h: LabHost) => join(h.dir, "fault.fired");

/**
 * An iptables-restore (or ip6tables-restore) that runs the real one, then, the first time it has
 * inserted something (our transaction's apply), marks the moment and holds the answer `hold`
 * seconds, so the test can inject its fault between the restore and the confirming listing.
 */
export const triggerRestore = (h: LabHost, name: string, hold: number) => `#!/bin/sh
in=$(cat)
printf '%s\\n' "$in" | /usr/sbin/${name} "$@"; rc=$?
case "$in" in *"-I "*)
  if [ ! -e /run/pit-fired ]; then : > /run/pit-fired; : > ${firedFile(h)}; sleep ${hold}; fi ;;
esac
exit $rc
`;

/** An (ip6)tables-restore that refuses every insert, as a restore that runs out of memory would. */
export const refuseInserts = (name: string) => `#!/bin/sh
in=$(cat)
case "$in" in *"-I "*) echo "${name}: line 2 failed (lab fault)" >&2; exit 1 ;; esac
printf '%s\\n' "$in" | exec /usr/sbin/${name} "$@"
`;

/** An iptables-save that hangs once the trigger fired. */
export const hangAfterTrigger = (name: string) => `#!/bin/sh
[ -e /run/pit-fired ] && exec sleep 600
exec /usr/sbin/${name} "$@"
`;

/** `name` hangs once the trigger fired when it lists with counters (-v: the chains that confirm a batch);
 * other uses (an undo's fitting, `iptables -S` without -v) run as they are. */
export const hangListingAfterTrigger = (name: string) => `#!/bin/sh
if [ -e /run/pit-fired ]; then for a; do [ "$a" = -v ] && exec sleep 600; done; fi
exec /usr/sbin/${name} "$@"
`;

/** Puts wrappers first on root's PATH inside the host (/usr/local/sbin, from a private /run dir). */
export async function wrap(h: LabHost, scripts: Record<string, string>): Promise<void> {
  await h.sh("mkdir -p /run/pit-wrap && (mountpoint -q /usr/local/sbin || mount --bind /run/pit-wrap /usr/local/sbin)");
  for (const [name, body] of Object.entries(scripts))
    await h.sh(`cat > /run/pit-wrap/${name} && chmod 755 /run/pit-wrap/${name}`, body);
}

export async function unwrap(h: LabHost): Promise<void> {
  await h.sh("! mountpoint -q /usr/local/sbin || umount /usr/local/sbin; rm -rf /run/pit-wrap /run/pit-fired");
  rmSync(firedFile(h), { force: true });
}

/** Waits until a wrapper fired (the change is applied, not yet confirmed). */
export async function fired(h: LabHost, ms = 120_000): Promise<void> {
  await h.waitFor(async () => existsSync(firedFile(h)), "the fault's trigger (our restore)", ms);
}

const ppid = (pid: string) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[1];
  } catch {
    return "";
  }
};
const pids = () => readdirSync("/proc").filter((d) => /^\d+$/.test(d));

/** Kills the host's sshd session processes (every connection's), not its listener. */
export function killSshSessions(h: LabHost): number {
  const victims = pids().filter((p) => ppid(p) === String(h.pid));
  for (const p of victims) process.kill(Number(p), "SIGKILL");
  return victims.length;
}

/** SIGKILLs the project's dynamic-provider process (found by its PULUMI_HOME). */
export function killProvider(p: PulumiProject): number {
  const home = `PULUMI_HOME=${p.dir}/.pulumi-home`;
  const victims = pids().filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      return (
        cmd.includes("dynamic-provider") && readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(home)
      );
    } catch {
      return false;
    }
  });
  for (const pid of victims) process.kill(Number(pid), "SIGKILL");
  return victims.length;
}

/** Holds the host's xtables lock (as another iptables would) until the returned function is called. */
export async function holdXtablesLock(h: LabHost): Promise<() => void> {
  const child = spawn(
    "nsenter",
    ["-t", String(h.pid), "-n", "-m", "--", "flock", "/run/xtables.lock", "sleep", "300"],
    {
      stdio: "ignore",
      detached: true,
    },
  );
  child.unref();
  await h.waitFor(
    async () => (await h.exec(["flock", "-n", "/run/xtables.lock", "true"])).code !== 0,
    "xtables lock held",
  );
  return () => {
    // flock and its sleep: the group nsenter started.
    for (const p of pids().filter((x) => ppid(x) === String(child.pid) || x === String(child.pid)))
      for (const q of [...pids().filter((x) => ppid(x) === p), p]) {
        try {
          process.kill(Number(q), "SIGKILL");
        } catch {
          /* gone */
        }
      }
  };
}

/** Seconds until the host's lock is free (polls up to `ms`); undefined if it stayed held. */
export async function lockFreeAfter(h: LabHost, ms: number): Promise<number | undefined> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if ((await h.exec(["flock", "-n", "/run/pulumi-iptables.lock", "true"])).code === 0)
      return (Date.now() - start) / 1000;
    await new Promise((r) => setTimeout(r, 250));
  }
  return undefined;
}

/** Our rules on the host (lines of `iptables -S` carrying this project's tag prefix), per family. */
export async function ourRules(h: LabHost, project: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of [4, 6] as Family[]) {
    const r = await h.iptables(f, ["-S"]);
    for (const line of r.stdout.split("\n"))
      if (line.includes(`pulumi-iptables:${project}/`)) out.push(`ipv${f} ${line}`);
  }
  return out.sort();
}

const tagsIn = (text: string, project: string) =>
  [...text.matchAll(new RegExp(`pulumi-iptables:${project}/[^" ]+`, "g"))].map((m) => m[0]);

/** host == state: the same rules, none twice, the boot files hold exactly the persisted ones, and no
 * change pending on the host. Returns what differs (empty: equal). */
export async function differences(
  h: LabHost,
  p: PulumiProject,
  project: string,
  files: [string, string],
): Promise<string[]> {
  // State records what the user did not write under __ keys (provider/state.ts): read it as the provider does.
  const state = (await p.resources()).map((r) => ({ outputs: fromStored<Record<string, any>>(r.outputs ?? {}) }));
  const want = state.flatMap((r) =>
    Object.entries((r.outputs.rules ?? {}) as Record<string, string>).map(([fam, text]) => `${fam} ${text}`),
  );
  const have = await ourRules(h, project);
  const diffs: string[] = [];
  for (const x of have.filter((l) => !want.includes(l))) diffs.push(`on the host, not in state: ${x}`);
  for (const x of want.filter((l) => !have.includes(l))) diffs.push(`in state, not on the host: ${x}`);
  for (const x of have.filter((l, i) => have.indexOf(l) !== i)) diffs.push(`twice on the host: ${x}`);
  for (const [i, file] of files.entries()) {
    const fam = i === 0 ? "ipv4" : "ipv6";
    const path = join(h.dir, "etc", file.replace(/^\/etc\//, ""));
    const saved = new Set(existsSync(path) ? tagsIn(readFileSync(path, "utf8"), project) : []);
    const persisted = new Set(
      state.filter((r) => r.outputs.persisted && r.outputs.rules?.[fam]).map((r) => String(r.outputs.tag)),
    );
    for (const t of saved) if (!persisted.has(t)) diffs.push(`in ${file}, not persisted in state: ${t}`);
    for (const t of persisted) if (!saved.has(t)) diffs.push(`persisted in state, not in ${file}: ${t}`);
  }
  const pending = (await h.sh("ls /run/pulumi-iptables.tx 2>/dev/null || true"))
    .split("\n")
    .filter((l) => l && !l.endsWith(".reverted"));
  for (const t of pending) diffs.push(`a change still pending on the host: ${t}`);
  return diffs;
}
