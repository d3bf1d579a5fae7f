// Real firewall managers (Debian's packages, unpacked, never installed) inside lab network namespaces.
// One home for how they run: a shell script that, in a mount namespace of its own (`unshare --mount`),
// refuses to run in this machine's own network namespace, then puts private mounts in place:
//   - a tmpfs on /run (sockets, pid files, the fresh upper layers below);
//   - /usr: an overlay with the unpacked tree's usr as an extra lower layer (read-only);
//   - /etc and /var: overlays with fresh upper layers on that tmpfs, so whatever the tool writes
//     (its configuration, state, databases, logs) vanishes with the mount namespace;
//   - the unpacked tree's etc and var copied over /etc and /var (what the packages' install would put there);
//   - on a legacy lab namespace (the legacy binary bound over the nft one, test/rules-lab/netns.ts), the
//     same bind again over the overlaid /usr.
// Only the netfilter rules the tool loads stay, in the lab namespace; deleting it empties them.
// Trees: scripts/managers-unpack.sh (Shorewall, ferm, fail2ban, firewalld, CNI plugins) and
// scripts/ufw-unpack.sh (ufw, test/lab/ufw.ts).
//
// Usage, in a rules-lab namespace (test/rules-lab/netns.ts):
//   const found = managersRoot(); if ("missing" in found) throw new Error(found.missing);
//   ns.run(backend, managerScript(found.root, ["shorewall start"]))
// on a lab host (test/lab/lab.ts): host.exec(managerArgv(found.root, [...])).
// The body's lines run under `set -e`; a daemon it starts (`... &`) must be stopped by the body itself
// before it ends, or it runs on in the namespace with the private mounts.
import { execFileSync } from "node:child_process";
import { existsSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/** Exit status of a script run in this machine's own network namespace: it did nothing. */
export const REFUSED_OWN_NETNS = 96;

/** A tree unpacked by one of the scripts/ *-unpack.sh scripts (`probe`: a file it must hold), or why not. */
export function unpackedRoot(script: string, probe: string): { root: string } | { missing: string } {
  let root: string;
  try {
    const out = execFileSync("bash", [join(__dirname, "..", "..", "scripts", script)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    root = out.trim().split("\n").pop() ?? "";
  } catch (e) {
    return { missing: `scripts/${script} failed: ${(e as { stderr?: string }).stderr ?? e}` };
  }
  if (!existsSync(join(root, probe)))
    return { missing: `no ${probe} under ${root}: run bash .ci/setup.sh (it runs scripts/${script})` };
  return { root };
}

/** The unpacked Shorewall, ferm, fail2ban, firewalld and CNI plugins, or why there are none. */
export const managersRoot = () => unpackedRoot("managers-unpack.sh", "usr/sbin/shorewall");

/** Single quotes for the shell, for paths and words this file itself writes. */
export const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The network namespaces a manager must never run in: this process's own (this machine's, or the lab's
 * workstation under test/lab/in-lab.sh), the one in-lab.sh recorded as this machine's, and pid 1's (this
 * machine's where it is readable: some sandboxes hide it, so it cannot be the only check). */
function forbiddenNetns(): string[] {
  const own = readlinkSync("/proc/self/ns/net");
  return [own, process.env.PIT_LAB_HOME_NETNS ?? own];
}

/** A shell line that exits REFUSED_OWN_NETNS unless the script runs in another network namespace. */
function refuseOwnNetns(): string {
  const refuse = `{ echo "refusing to run a firewall manager outside a lab network namespace" >&2; exit ${REFUSED_OWN_NETNS}; }`;
  const tests = forbiddenNetns().map((ns) => `[ "$pit_ns" != ${q(ns)} ]`);
  return [
    `pit_ns=$(readlink /proc/self/ns/net) || ${refuse}`,
    `pit_init=$(readlink /proc/1/ns/net 2>/dev/null) || pit_init=`,
    `${tests.join(" && ")} && [ "$pit_ns" != "$pit_init" ] || ${refuse}`,
  ].join("\n");
}

/** The shell lines that refuse this machine's own network namespace and put the private mounts in place. */
export function privateMounts(root: string): string[] {
  return [
    refuseOwnNetns(),
    "mount --make-rprivate /",
    // the namespace's backend: a legacy namespace has the legacy binary bound over the nft one, which
    // the /usr overlay below would hide
    "pit_legacy=$(iptables --version | grep -c legacy || true)",
    "mount -t tmpfs pit-mgr-run /run",
    "mkdir -p /run/.pit-mgr/etc /run/.pit-mgr/etc-work /run/.pit-mgr/var /run/.pit-mgr/var-work /run/lock",
    `mount -t overlay pit-mgr-usr -o lowerdir=${q(join(root, "usr"))}:/usr /usr`,
    'if [ "$pit_legacy" = 1 ]; then mount --bind /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi; fi',
    "mount -t overlay pit-mgr-etc -o lowerdir=/etc,upperdir=/run/.pit-mgr/etc,workdir=/run/.pit-mgr/etc-work /etc",
    "mount -t overlay pit-mgr-var -o lowerdir=/var,upperdir=/run/.pit-mgr/var,workdir=/run/.pit-mgr/var-work /var",
    ...["etc", "var"].map((d) => `if [ -d ${q(join(root, d))} ]; then cp -a ${q(join(root, d))}/. /${d}/; fi`),
  ];
}

/** The environment a manager runs with: a root shell's on a host, not this process's (Shorewall's
 * compiler writes the environment's variables into the script it loads, npm's among them). */
const CLEAN_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8";

/** A shell script that runs `body` (shell lines, `set -e`) behind the private mounts, in a clean
 * environment; run it with `unshare --mount sh -c` inside a lab network namespace (rules-lab Netns.run
 * does). */
export function managerScript(root: string, body: string[]): string {
  return `exec env -i ${CLEAN_ENV} sh -c ${q(["set -e", ...privateMounts(root), ...body].join("\n"))}`;
}

/** argv for a lab host's exec (test/lab/lab.ts LabHost.exec): the script in a mount namespace of its own. */
export const managerArgv = (root: string, body: string[]): string[] => [
  "unshare",
  "--mount",
  "--propagation",
  "private",
  "sh",
  "-c",
  managerScript(root, body),
];
