#!/usr/bin/env bash
# Runs a command inside a fresh "workstation" network namespace: the lab hosts of this run hang
# off it by veth pairs, so the provider, the Pulumi CLI and the traffic probes reach them while this
# machine's own network namespace is never touched. Everything the run made is removed on exit
# (also on failure or Ctrl-C); what a killed earlier run left behind is removed at the next start.
set -uo pipefail

die() { echo "lab: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "the lab needs root (it creates network namespaces); run as root"
for tool in ip unshare nsenter iptables ip6tables /usr/sbin/sshd ssh-keygen nc socat sudo; do
  command -v "$tool" >/dev/null 2>&1 || die "missing '$tool': run the README's set-up command (bash .ci/setup.sh)"
done
[ $# -gt 0 ] || die "usage: test/lab/in-lab.sh COMMAND [ARGS...]"

# Removes the workstation namespace of a run: first the processes in it (ours), then the namespace.
remove_ns() {
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [ -n "$pids" ] && kill $pids 2>/dev/null && sleep 0.2
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  ip netns del "$ns" 2>/dev/null || true
}

# Removes the lab hosts of a run. They are created from inside the workstation namespace, whose
# mount namespace holds their /run/netns mounts, so from out here they are found by the record
# each host leaves in <run dir>/hosts: its sshd's pid and start time. While that sshd lives, its
# network namespace does too; every process in that namespace was started by the lab.
remove_hosts() {
  local dir=$1 rec pid start ns p
  for rec in "$dir"/hosts/*; do
    [ -f "$rec" ] || continue
    read -r pid start < "$rec" || continue
    [ "$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || continue
    ns=$(readlink "/proc/$pid/ns/net") || continue
    [ "$ns" = "$(readlink /proc/self/ns/net)" ] && continue
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ] && kill -9 "${p#/proc/}" 2>/dev/null
    done
  done
}

# Leftovers of earlier runs whose wrapper process is gone: their hosts, their workstation.
for dir in /tmp/pit-[0-9]*; do
  [ -d "$dir" ] || continue
  owner=${dir#/tmp/pit-}
  if ! kill -0 "$owner" 2>/dev/null; then
    echo "lab: removing leftover hosts of an earlier run ($dir)" >&2
    remove_hosts "$dir"
    rm -rf "$dir"
  fi
done
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pit-[0-9]+-'); do
  owner=${ns#pit-}; owner=${owner%%-*}
  if ! kill -0 "$owner" 2>/dev/null; then
    echo "lab: removing leftover $ns of an earlier run" >&2
    remove_ns "$ns"
  fi
done

RUN=pit-$$
WS=$RUN-ws
# The machine's own network namespace, which the lab refuses to run iptables in.
export PIT_LAB_RUN=$RUN PIT_LAB_WS=$WS PIT_LAB_DIR=/tmp/$RUN PIT_LAB_HOME_NETNS=$(readlink /proc/self/ns/net)
cleanup() {
  trap - EXIT INT TERM HUP
  remove_hosts "$PIT_LAB_DIR"
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$RUN-h"); do
    ip netns del "$ns" 2>/dev/null || true
  done
  remove_ns "$WS"
  rm -rf "$PIT_LAB_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir -p "$PIT_LAB_DIR" || die "cannot create $PIT_LAB_DIR"
ip netns add "$WS" || die "cannot create network namespace $WS"
ip -n "$WS" link set lo up
ip netns exec "$WS" "$@"
