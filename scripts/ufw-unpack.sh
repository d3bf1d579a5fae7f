#!/usr/bin/env bash
# Unpacks Debian's ufw package for the lab and caches it outside the clone. ufw cannot be installed
# on this machine: its package Breaks iptables-persistent and netfilter-persistent, which the lab
# hosts use, and it must never run in this machine's own network namespace anyway. Lab hosts run
# the unpacked ufw behind private overlays of /usr and /etc (test/lab/ufw.ts). Prints the root of
# the unpacked tree on the last line of stdout. A cached tree is reused.
set -euo pipefail

CACHE=${PIT_UFW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pulumi-iptables/ufw}
log() { echo "ufw-unpack: $*" >&2; }

version=$(apt-cache policy ufw 2>/dev/null | awk '/Candidate:/ {print $2}')
[ -n "$version" ] && [ "$version" != "(none)" ] || { log "apt knows no ufw package (run apt-get update)"; exit 1; }
ROOT=$CACHE/$version
if [ -x "$ROOT/usr/sbin/ufw" ]; then
  log "cached: $ROOT"
  echo "$ROOT"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download "ufw=$version" >&2 2>/dev/null) || { log "apt-get download ufw=$version failed"; exit 1; }
dpkg-deb -x "$tmp"/ufw_*.deb "$tmp/root"
# This machine's /lib is /usr/lib: the lab overlays /usr only, so ufw's /lib/ufw goes under usr/lib.
if [ -L /lib ] && [ -d "$tmp/root/lib" ]; then
  mkdir -p "$tmp/root/usr/lib"
  cp -a "$tmp/root/lib/." "$tmp/root/usr/lib/"
  rm -rf "$tmp/root/lib"
fi
mkdir -p "$CACHE"
rm -rf "$ROOT"
mv "$tmp/root" "$ROOT"
log "unpacked ufw $version: $ROOT"
echo "$ROOT"
