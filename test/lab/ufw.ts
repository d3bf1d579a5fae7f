// Real ufw (Debian's package, unpacked by scripts/ufw-unpack.sh) for lab hosts and rules-lab
// namespaces. It runs only inside a lab network namespace, behind the private mounts every firewall
// manager of the lab gets (test/lab/managers.ts: /usr with ufw's files, fresh /etc, /var and /run), so
// everything ufw writes (its /etc/ufw, its lock) vanishes with them; only the netfilter rules it
// loads stay, in the lab namespace. ufw's sysctl file is emptied and its module list left empty: it
// changes no kernel setting.
import { managerScript, unpackedRoot } from "./managers";

/** The unpacked ufw tree, or a reason why there is none. */
export const ufwRoot = () => unpackedRoot("ufw-unpack.sh", "usr/sbin/ufw");

/**
 * A shell script that enables ufw with these commands (e.g. `ufw allow 22/tcp`) and exits; run it
 * with `unshare --mount` inside a lab namespace. Refuses to run in the machine's own network
 * namespace (exit 96).
 */
export function ufwScript(root: string, commands: string[]): string {
  return managerScript(root, ufwEnable(commands));
}

/** Shell lines (a managerScript body, in a tree that holds ufw) that enable ufw with these commands. */
export function ufwEnable(commands: string[]): string[] {
  return [
    // what the package's postinst does on a first install (the package's /etc is in place already)
    "for f in before.rules before6.rules after.rules after6.rules user.rules user6.rules; do cp /usr/share/ufw/iptables/$f /etc/ufw/$f; done",
    "cp /usr/share/ufw/before.init /usr/share/ufw/after.init /usr/share/ufw/ufw.conf /etc/ufw/",
    ": > /etc/ufw/sysctl.conf",
    "sed -i 's/^IPT_MODULES=.*/IPT_MODULES=\"\"/' /etc/default/ufw",
    "ufw --force enable >/dev/null",
    ...commands.map((c) => `${c} >/dev/null`),
  ];
}
