// Real ufw (Debian's package, unpacked by scripts/ufw-unpack.sh) for lab hosts and rules-lab
// namespaces. It runs only inside a lab network namespace, in a mount namespace of its own: /usr is
// an overlay that adds ufw's files, /etc an overlay whose upper layer is a fresh directory under the
// namespace's private /run, so everything ufw writes (its /etc/ufw, its lock) goes to private
// mounts and vanishes with them; only the netfilter rules it loads stay, in the lab namespace.
// ufw's sysctl file is emptied and its module list left empty: it changes no kernel setting.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The unpacked ufw tree, or a reason why there is none. */
export function ufwRoot(): { root: string } | { missing: string } {
  let root: string;
  try {
    const out = execFileSync("bash", [join(__dirname, "..", "..", "scripts", "ufw-unpack.sh")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    root = out.trim().split("\n").pop() ?? "";
  } catch (e) {
    return { missing: `scripts/ufw-unpack.sh failed: ${(e as { stderr?: string }).stderr ?? e}` };
  }
  if (!existsSync(join(root, "usr", "sbin", "ufw")))
    return { missing: `no ufw under ${root}: run bash .ci/setup.sh (it unpacks Debian's ufw package)` };
  return { root };
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * A shell script that enables ufw with these commands (e.g. `ufw allow 22/tcp`) and exits; run it
 * with `unshare --mount` inside a lab namespace whose /run is private. Refuses to run in the
 * machine's own network namespace (exit 96).
 */
export function ufwScript(root: string, commands: string[]): string {
  return [
    "set -e",
    `[ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] || { echo "ufw: refusing to run in this machine's own network namespace" >&2; exit 96; }`,
    "mount --make-rprivate /",
    // the namespace's backend: a legacy host has the legacy binary bound over the nft one, which the
    // /usr overlay below would hide
    "legacy=$(iptables --version | grep -c legacy || true)",
    "t=$(mktemp -d /run/pit-ufw.XXXXXX)",
    'mkdir "$t/etc" "$t/work"',
    `mount -t overlay pit-ufw-usr -o lowerdir=${q(join(root, "usr"))}:/usr /usr`,
    'if [ "$legacy" = 1 ]; then mount --bind /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi; fi',
    'mount -t overlay pit-ufw-etc -o "lowerdir=/etc,upperdir=$t/etc,workdir=$t/work" /etc',
    // what the package's postinst does on a first install
    `cp -r ${q(join(root, "etc", "ufw"))} /etc/ufw`,
    `cp ${q(join(root, "etc", "default", "ufw"))} /etc/default/ufw`,
    "for f in before.rules before6.rules after.rules after6.rules user.rules user6.rules; do cp /usr/share/ufw/iptables/$f /etc/ufw/$f; done",
    "cp /usr/share/ufw/before.init /usr/share/ufw/after.init /usr/share/ufw/ufw.conf /etc/ufw/",
    ": > /etc/ufw/sysctl.conf",
    "sed -i 's/^IPT_MODULES=.*/IPT_MODULES=\"\"/' /etc/default/ufw",
    "ufw --force enable >/dev/null",
    ...commands.map((c) => `${c} >/dev/null`),
  ].join("\n");
}
