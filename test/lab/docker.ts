// The real dockerd (Debian's docker.io 20.10 with containerd, runc and tini, unpacked by
// scripts/managers-unpack.sh with PIT_MANAGERS_EXTRA="docker.io containerd runc tini", never installed)
// inside a lab namespace, to capture the rules it writes when a container publishes a port. It runs
// behind the private mounts every firewall manager of the lab gets (test/lab/managers.ts), with:
//   - cgroups: `ip netns exec` mounts a fresh /sys, so the cgroup v1 hierarchies are mounted again in
//     the script's mount namespace; dockerd uses the cgroupfs driver under a parent cgroup of its own
//     (pit-docker-<pid>), emptied and removed when the script ends;
//   - its data, exec root, socket and pid file on the private /run (vfs storage: no overlay on overlay);
//   - its bridge bk0 (made here, 198.19.250.1/24 and fd00:19:250::1/64: a rules-lab pair's BACKEND
//     link, so the kernel test's server forwards what Docker's DNAT sends to the container's address
//     to the backend namespace there);
//   - an image imported from this machine's static busybox (no registry), run with the MAC address
//     00:00:00:00:00:02, so its IPv6 address (Docker 20.10 derives it from the MAC) is fd00:19:250::2;
//   - /usr/bin/docker and /usr/sbin/dockerd named in full (a client in /usr/local/bin would shadow them).
// Only dockerd's netfilter rules stay, in the lab namespace.

import { KILL_OWN_MOUNT_NAMESPACE } from "./firewalld";

/** dockerd's socket on the private /run. */
const SOCK = "unix:///run/pit-docker.sock";
const docker = `/usr/bin/docker -H ${SOCK}`;
const HIERARCHIES = "cpu cpuacct cpuset memory devices freezer blkio pids";

/**
 * Shell lines (a managerScript body) that start dockerd and run a container (busybox sleeping) with
 * `publish` (docker run -p words, e.g. "198.18.0.2:8088:8088"), and wait until its DNAT is in nat.
 * When the script ends, however it ends, dockerd, containerd and the container are killed with
 * SIGKILL (so the rules stay: a stopping dockerd or container removes them): every process of the
 * script's mount namespace but the script, and every process in dockerd's parent cgroup, which is
 * then removed.
 */
export function dockerStart(publish: string[]): string[] {
  return [
    `[ -x /usr/sbin/dockerd ] || { echo 'no dockerd in the managers tree: unpack it with PIT_MANAGERS_EXTRA="docker.io containerd runc tini"' >&2; exit 1; }`,
    "pit_cg=pit-docker-$$",
    "pit_docker_end() {",
    `  ${KILL_OWN_MOUNT_NAMESPACE}`,
    '  for f in $(find /sys/fs/cgroup/pids/$pit_cg -name cgroup.procs 2>/dev/null); do for pid in $(cat "$f"); do kill -9 "$pid" 2>/dev/null; done; done; true',
    "  sleep 0.5",
    `  for c in ${HIERARCHIES} systemd; do [ -d /sys/fs/cgroup/$c/$pit_cg ] && find /sys/fs/cgroup/$c/$pit_cg -depth -type d -exec rmdir {} + 2>/dev/null; done; true`,
    "}",
    "trap pit_docker_end EXIT",
    "mount -t tmpfs pit-cgroup /sys/fs/cgroup",
    `for c in ${HIERARCHIES}; do mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c pit-cgroup /sys/fs/cgroup/$c; done`,
    "mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd pit-cgroup /sys/fs/cgroup/systemd",
    "ip link add bk0 type bridge && ip addr add 198.19.250.1/24 dev bk0 && ip -6 addr add fd00:19:250::1/64 dev bk0 nodad && ip link set bk0 up",
    "mkdir -p /run/pit-docker-data /run/pit-docker-exec /run/pit-img",
    [
      "/usr/sbin/dockerd",
      `-H ${SOCK}`,
      "--pidfile /run/pit-docker.pid",
      "--data-root /run/pit-docker-data",
      "--exec-root /run/pit-docker-exec",
      "--storage-driver vfs",
      "--exec-opt native.cgroupdriver=cgroupfs",
      '--cgroup-parent "/$pit_cg"',
      "--bridge bk0",
      "--ipv6 --fixed-cidr-v6 fd00:19:250::/64 --ip6tables --experimental",
      "--default-address-pool base=198.19.240.0/20,size=24",
      ">/run/pit-dockerd.log 2>&1 &",
    ].join(" "),
    `i=0; until ${docker} info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 300 ] || { echo 'dockerd did not start:' >&2; tail -20 /run/pit-dockerd.log >&2; exit 1; }; sleep 0.1; done`,
    "cp /usr/bin/busybox /run/pit-img/busybox",
    `tar -C /run/pit-img -c . | ${docker} import - pit/busybox >/dev/null`,
    `${docker} run -d --name pit --mac-address 00:00:00:00:00:02 ${publish.map((p) => `-p ${p}`).join(" ")} pit/busybox /busybox sleep 100000 >/dev/null`,
    "i=0; until iptables -t nat -S DOCKER 2>/dev/null | grep -q DNAT; do i=$((i+1)); [ $i -lt 100 ] || { echo 'no DNAT from docker' >&2; exit 1; }; sleep 0.1; done",
  ];
}
