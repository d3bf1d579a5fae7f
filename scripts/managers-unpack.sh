#!/usr/bin/env bash
# Unpacks Debian's packages of real firewall managers for the lab (Shorewall, ferm, fail2ban,
# firewalld, the CNI plugins) into one tree cached outside the clone, keyed by the packages' versions.
# Nothing is installed on this machine and no maintainer script runs: lab namespaces run these tools
# behind private overlays of /usr, /etc and /var (test/lab/managers.ts), never in this machine's own
# network namespace. Prints the root of the unpacked tree on the last line of stdout. A cached tree is
# reused. PIT_MANAGERS_EXTRA adds packages (e.g. docker.io) to the set.
set -euo pipefail

CACHE=${PIT_MANAGERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pulumi-iptables/managers}
log() { echo "managers-unpack: $*" >&2; }

# bc: Shorewall's compiler needs it (a fresh machine may lack it); python3-nftables: firewalld imports it;
# ufw: the fixture of rules bound to interfaces (test/lab/ufw.ts ufwEnable).
PACKAGES="shorewall shorewall-core shorewall6 ferm fail2ban firewalld python3-firewall python3-nftables containernetworking-plugins bc ufw ${PIT_MANAGERS_EXTRA:-}"

pinned=""
for p in $PACKAGES; do
  v=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$v" ] && [ "$v" != "(none)" ] || { log "apt knows no $p package (run apt-get update)"; exit 1; }
  pinned="$pinned $p=$v"
done
key=$(echo "$pinned" | sha256sum | cut -c1-16)
ROOT=$CACHE/$key
if [ -f "$ROOT/.complete" ]; then
  log "cached: $ROOT"
  echo "$ROOT"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086 # one argument per package
(cd "$tmp" && apt-get download $pinned >&2) || { log "apt-get download failed:$pinned"; exit 1; }
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
# This machine's /lib, /sbin and /bin are /usr's: the lab overlays /usr only, so they go under usr/.
for d in lib sbin bin; do
  if [ -L "/$d" ] && [ -d "$tmp/root/$d" ]; then
    mkdir -p "$tmp/root/usr/$d"
    cp -a "$tmp/root/$d/." "$tmp/root/usr/$d/"
    rm -rf "${tmp:?}/root/$d"
  fi
done
echo "$pinned" > "$tmp/root/.complete"
mkdir -p "$CACHE"
rm -rf "$ROOT"
mv "$tmp/root" "$ROOT"
log "unpacked$pinned: $ROOT"
echo "$ROOT"
