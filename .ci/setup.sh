#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) for the demo and the tests: the Debian packages the
# lab needs, the npm dependencies, the real Pulumi CLI and Toxiproxy (built from Go modules, cached) and the root
# filesystems of the lab's other userlands (scripts/rootfs.sh, cached).
# Safe to run again: what is there already is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="iproute2 iptables nftables openssh-server openssh-client netcat-openbsd socat sudo openssl iptables-persistent netfilter-persistent debootstrap busybox-static dropbear-bin zstd zsh fish libpam-oath"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: run as root to install:$missing" >&2; exit 1; }
  echo "setup: installing$missing" >&2
  # Nothing may be started, saved or restored on this machine: no service starts during the
  # install (policy-rc.d 101), and iptables-persistent must not save this machine's ruleset.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap '[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  printf '%s\n' \
    "iptables-persistent iptables-persistent/autosave_v4 boolean false" \
    "iptables-persistent iptables-persistent/autosave_v6 boolean false" | debconf-set-selections
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi

command -v node >/dev/null || { echo "setup: Node.js 20 or newer is needed" >&2; exit 1; }
npm ci --no-audit --no-fund >&2
# The lab's other userlands (Debian 11 and 13 root filesystems, the busybox + dropbear host), cached
# under ~/.cache like the CLI: built while the CLI compiles (downloads and dpkg against Go on 2 cores).
bash scripts/rootfs.sh bullseye trixie embedded >/dev/null &
rootfs=$!
bash scripts/pulumi-cli.sh >/dev/null
bash scripts/toxiproxy.sh >/dev/null
# ufw for the lab's ufw hosts: Debian's package, unpacked (not installed: it Breaks iptables-persistent).
bash scripts/ufw-unpack.sh >/dev/null
# Shorewall, ferm, fail2ban, firewalld and the CNI plugins for the lab's fixtures of real firewall
# managers: Debian's packages, unpacked (never installed; they run only inside lab namespaces).
bash scripts/managers-unpack.sh >/dev/null
wait $rootfs || { echo "setup: building the lab's root filesystems failed" >&2; exit 1; }
echo "setup: ready" >&2
