// The real firewalld (Debian's firewalld 1.3.3 and python3-firewall, unpacked by
// scripts/managers-unpack.sh, never installed) with FirewallBackend=iptables, for lab hosts and
// capture namespaces. It runs behind the private mounts every firewall manager of the lab gets
// (test/lab/managers.ts: /usr with the unpacked files, fresh /etc, /var and /run), with a private
// system D-Bus (dbus-daemon --system, its socket on the private /run) that firewalld and firewall-cmd
// talk over. That bus starts this machine's polkitd when firewalld first asks it, as on a Debian
// host; polkitd finds firewalld's actions through the link the package's postinst would make (made
// here in a private overlay of the actions directory). Everything they write goes to the private
// mounts; only the netfilter rules firewalld loads stay, in the lab namespace. Every process they
// start stays in the script's mount namespace, which is how firewalldKilledOnExit finds them.
import { q } from "./managers";

/** A zone bound to an interface, and what it changes (firewall-cmd's words). */
export interface FirewalldZone {
  zone: string;
  /** The interface bound to it (none: a zone of sources only). */
  iface?: string;
  /** Services to add (e.g. "http") and to remove from the zone's defaults (e.g. "ssh"). */
  services?: string[];
  removeServices?: string[];
  /** Ports to open ("8080/tcp"). */
  ports?: string[];
  /** Forwarded ports ("port=8443:proto=tcp:toport=443:toaddr=198.19.250.2"). */
  forwardPorts?: string[];
  /** Rich rules ("rule family=ipv4 port port=8085 protocol=tcp reject"). */
  richRules?: string[];
  /** Sources bound to the zone ("198.18.0.99/32"): packets from them go to this zone on any interface. */
  sources?: string[];
}

/** The firewall-cmd commands that bind these zones and change them (runtime configuration). */
export function zoneCommands(zones: FirewalldZone[]): string[] {
  return zones.flatMap((z) => {
    const cmd = (arg: string) => `firewall-cmd --zone=${q(z.zone)} ${arg}`;
    return [
      ...(z.iface ? [cmd(`--change-interface=${q(z.iface)}`)] : []),
      ...(z.services ?? []).map((s) => cmd(`--add-service=${q(s)}`)),
      ...(z.removeServices ?? []).map((s) => cmd(`--remove-service=${q(s)}`)),
      ...(z.ports ?? []).map((p) => cmd(`--add-port=${q(p)}`)),
      ...(z.forwardPorts ?? []).map((f) => cmd(`--add-forward-port=${q(f)}`)),
      ...(z.richRules ?? []).map((r) => cmd(`--add-rich-rule=${q(r)}`)),
      ...(z.sources ?? []).map((a) => cmd(`--add-source=${q(a)}`)),
    ];
  });
}

/**
 * Shell lines (a managerScript body) that start the private system D-Bus and firewalld with the
 * iptables backend, wait until it runs and run `commands` (firewall-cmd ...). The daemons stay in the
 * script's mount namespace: begin a capture body with firewalldKilledOnExit, or let the lab host's end
 * take them.
 */
export function firewalldStart(commands: string[]): string[] {
  return [
    "mkdir -p /run/.pit-fwd/actions /run/.pit-fwd/actions-work",
    `mount -t overlay pit-fwd-polkit -o lowerdir=${ACTIONS},upperdir=/run/.pit-fwd/actions,workdir=/run/.pit-fwd/actions-work ${ACTIONS}`,
    `ln -s org.fedoraproject.FirewallD1.server.policy.choice ${ACTIONS}/org.fedoraproject.FirewallD1.policy`,
    "sed -i 's/^FirewallBackend=.*/FirewallBackend=iptables/' /etc/firewalld/firewalld.conf",
    "mkdir -p /run/dbus /var/log",
    "dbus-daemon --system --fork",
    "/usr/sbin/firewalld",
    "i=0; until firewall-cmd --state >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 300 ] || { echo 'firewalld did not start:' >&2; cat /var/log/firewalld >&2; firewall-cmd --state >&2; exit 1; }; sleep 0.1; done",
    ...commands.map((c) => `${c} >/dev/null`),
  ];
}

const ACTIONS = "/usr/share/polkit-1/actions";

/** Kills with SIGKILL every process of the script's mount namespace but the script itself: all
 * started by it (a lab namespace's capture script runs in a mount namespace of its own). */
export const KILL_OWN_MOUNT_NAMESPACE =
  'pit_mnt=$(readlink /proc/self/ns/mnt); for p in /proc/[0-9]*; do pid=${p#/proc/}; [ "$pid" != $$ ] && [ "$(readlink $p/ns/mnt 2>/dev/null)" = "$pit_mnt" ] && kill -9 "$pid" 2>/dev/null; done; true';

/** A shell line, first in a capture body, that ends firewalld with SIGKILL when the script ends, however
 * it ends, so its rules stay (a stopping firewalld removes them: CleanupOnExit=yes), and with it the
 * private D-Bus and what that started (polkitd). */
export const firewalldKilledOnExit = `trap '${KILL_OWN_MOUNT_NAMESPACE}' EXIT`;
