#!/usr/bin/env bash
# Builds the root filesystems of the lab's other userlands once per machine and caches them as zstd
# tarballs outside the clone: Debian suites (debootstrap --variant=minbase: iptables, OpenSSH, sudo,
# netfilter-persistent) and "embedded" (busybox ash, dropbear and this machine's iptables binaries
# and libraries, nothing else). A run never modifies a tarball: lab hosts mount an overlay on it.
#   bash scripts/rootfs.sh [--cached] SUITE...     SUITE: bullseye | bookworm | trixie | sid | embedded
# (--cached: only answer from the cache; a suite not built yet is an error saying how to build it.)
# Prints one tarball path per suite on stdout. A cached suite answers at once. Needs root; Debian
# suites also need the network (stage one downloads from the Debian mirror of this machine's apt
# sources). Stage two, where packages' maintainer scripts run, runs inside a throw-away network
# namespace and a private mount namespace, so nothing it does can reach this machine's netfilter
# or mount table, and no daemon starts (debootstrap's own policy-rc.d).
set -euo pipefail

# Bump when what goes into a root filesystem changes: the cache key, so old tarballs are rebuilt.
RECIPE=1
INCLUDE=iptables,openssh-server,iproute2,netfilter-persistent,iptables-persistent,sudo,procps
CACHE=${PIT_ROOTFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pulumi-iptables/rootfs}

log() { echo "rootfs: $*" >&2; }
die() { log "$*"; exit 1; }

CACHED_ONLY=""
[ "${1:-}" = --cached ] && { CACHED_ONLY=1; shift; }
[ $# -gt 0 ] || die "usage: scripts/rootfs.sh SUITE... (bullseye, bookworm, trixie, sid, embedded)"
[ "$(id -u)" = 0 ] || die "building root filesystems needs root (debootstrap, chroot, network namespaces)"
command -v zstd >/dev/null || die "missing zstd: run bash .ci/setup.sh"
mkdir -p "$CACHE"

tarball() { echo "$CACHE/$1-r$RECIPE.tar.zst"; }

# The Debian mirror this machine's apt sources use for its own suite (never a name written here).
mirror() {
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  apt-get indextargets --format '$(SITE) $(CODENAME) $(COMPONENT)' 2>/dev/null |
    awk -v c="$codename" '$2 == c && $3 == "main" { print $1; exit }'
}

# Packs DIR into the cache as SUITE's tarball (atomically: other runs only ever see a whole one).
pack() {
  local suite=$1 dir=$2 out tmp
  out=$(tarball "$suite")
  tmp=$(mktemp "$CACHE/.$suite.XXXXXX")
  tar --numeric-owner -C "$dir" -cf - . | zstd -q -3 -T0 -o "$tmp" -f
  chmod 0644 "$tmp"
  mv -f "$tmp" "$out"
}

debian() {
  local suite=$1 work=$2 dir=$2/root site ns
  command -v debootstrap >/dev/null || die "missing debootstrap: run bash .ci/setup.sh"
  site=$(mirror)
  [ -n "$site" ] || die "no Debian mirror found in this machine's apt sources (apt-get indextargets)"
  log "$suite: stage one (download and unpack)"
  debootstrap --foreign --variant=minbase --include="$INCLUDE" "$suite" "$dir" "$site" >"$work/stage1.log" 2>&1 ||
    die "$suite: debootstrap stage one failed: $(tail -5 "$work/stage1.log")"
  # iptables-persistent's install script must neither ask nor save: its debconf answers, in place
  # before any maintainer script runs.
  mkdir -p "$dir/var/cache/debconf"
  local q
  for q in autosave_v4 autosave_v6; do
    printf 'Name: iptables-persistent/%s\nTemplate: iptables-persistent/%s\nValue: false\nOwners: iptables-persistent\nFlags: seen\n\n' \
      "$q" "$q" >>"$dir/var/cache/debconf/config.dat"
    printf 'Name: iptables-persistent/%s\nDefault: true\nDescription: Save current rules?\nType: boolean\nOwners: iptables-persistent\n\n' \
      "$q" >>"$dir/var/cache/debconf/templates.dat"
  done
  ns=pit-rootfs-$$-$suite
  ip netns add "$ns"
  log "$suite: stage two (configure) in network namespace $ns"
  if ! ip netns exec "$ns" unshare --mount --propagation private \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    chroot "$dir" /debootstrap/debootstrap --second-stage >"$work/stage2.log" 2>&1; then
    ip netns del "$ns"
    die "$suite: debootstrap stage two failed: $(tail -5 "$work/stage2.log")"
  fi
  ip netns exec "$ns" unshare --mount --propagation private chroot "$dir" apt-get clean >/dev/null
  ip netns del "$ns"
  rm -rf "$dir/var/lib/apt/lists/"* "$dir/var/log/"*.log "$dir/root/.bash_history"
}

# Puts PATH into DIR at the same path (a symlink as a symlink, plus what it points to).
put() {
  local dir=$1 p=$2 real
  mkdir -p "$dir$(dirname "$p")"
  if [ -L "$p" ]; then
    real=$(readlink -f "$p")
    [ -e "$dir$real" ] || put "$dir" "$real"
    [ -e "$dir$p" ] || ln -s "$(readlink "$p")" "$dir$p"
  else
    [ -e "$dir$p" ] || cp -p "$p" "$dir$p"
  fi
}

# Copies each FILE, and every library ldd names for it, into DIR.
copy_with_libs() {
  local dir=$1 f lib
  shift
  for f in "$@"; do
    put "$dir" "$f"
    for lib in $(ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }'); do
      put "$dir" "$lib"
    done
  done
}

# busybox ash as /bin/sh with busybox applets only, dropbear, and this machine's iptables (both
# backends, every iptables name linked to the nf_tables multi-binary) with its extensions.
embedded() {
  local dir=$2/root applet name
  for bin in /bin/busybox /usr/sbin/dropbear /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi; do
    [ -x "$bin" ] || die "missing $bin: run bash .ci/setup.sh (busybox-static, dropbear-bin, iptables)"
  done
  mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,usr/lib,usr/lib64,etc,root/.ssh,tmp,run,proc,sys,dev,var,etc/iptables}
  # The libraries' merged-/usr layout, as on the machine they come from.
  ln -s usr/lib "$dir/lib"
  ln -s usr/lib64 "$dir/lib64"
  ln -s ../run "$dir/var/run"
  chmod 1777 "$dir/tmp"
  chmod 700 "$dir/root" "$dir/root/.ssh"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list-full); do
    [ -e "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
  done
  copy_with_libs "$dir" /usr/sbin/dropbear /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi \
    /usr/lib/x86_64-linux-gnu/xtables/*.so
  # The names Debian's iptables package installs, each a link to one of the two multi-binaries.
  for name in iptables ip6tables; do
    for s in "" -save -restore; do
      ln -sf xtables-nft-multi "$dir/usr/sbin/$name$s"
      ln -sf xtables-nft-multi "$dir/usr/sbin/$name-nft$s"
      ln -sf xtables-legacy-multi "$dir/usr/sbin/$name-legacy$s"
    done
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/etc/passwd"
  printf 'root:*:19000:0:99999:7:::\n' >"$dir/etc/shadow"
  printf 'root:x:0:\n' >"$dir/etc/group"
  printf '/bin/sh\n' >"$dir/etc/shells"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$dir/etc/hosts"
  chmod 0640 "$dir/etc/shadow"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$dir/etc/nsswitch.conf"
  printf 'NAME="pit embedded"\nID=pit-embedded\n' >"$dir/etc/os-release"
  # The protocol and ethertype names iptables looks up.
  cp /etc/protocols /etc/services "$dir/etc/"
  [ -e /etc/ethertypes ] && cp /etc/ethertypes "$dir/etc/"
  "$dir/bin/busybox" true
  unshare --net chroot "$dir" /bin/sh -c 'iptables-nft --version && iptables-legacy --version && dropbear -V' >&2 2>&1 ||
    die "embedded: the copied binaries do not run in the root filesystem"
}

build() {
  local suite=$1 work start
  start=$(date +%s)
  work=$(mktemp -d "$CACHE/.build-$suite.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  case "$suite" in
    embedded) embedded "$suite" "$work" ;;
    bullseye | bookworm | trixie | sid) debian "$suite" "$work" ;;
    *) die "unknown suite $suite (bullseye, bookworm, trixie, sid, embedded)" ;;
  esac
  pack "$suite" "$work/root"
  log "$suite: built in $(($(date +%s) - start)) s, $(du -h "$(tarball "$suite")" | cut -f1) packed"
}

# One build per suite at a time on this machine (parallel test workers, a second CI job): the lock
# of the suite's tarball; a build that finds the tarball made meanwhile stops there.
ensure() {
  local suite=$1 out
  out=$(tarball "$suite")
  [ -s "$out" ] && return 0
  exec {fd}>>"$CACHE/.$suite.lock"
  flock "$fd"
  [ -s "$out" ] || build "$suite"
  exec {fd}>&-
}

pids=()
for suite in "$@"; do
  if [ -s "$(tarball "$suite")" ]; then
    log "$suite: cached ($(tarball "$suite"))"
  elif [ -n "$CACHED_ONLY" ]; then
    die "$suite is not built on this machine: run 'bash scripts/rootfs.sh $suite' as root with network access (bash .ci/setup.sh does it)"
  else
    # Debian suites build in parallel: downloads and dpkg overlap on 2 cores.
    ensure "$suite" &
    pids+=("$!")
  fi
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
[ $rc = 0 ] || die "building failed (see above)"
for suite in "$@"; do tarball "$suite"; done
