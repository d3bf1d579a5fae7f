// The lab: real Linux hosts on this machine, each a network namespace with its own OpenSSH sshd
// (stock limits) and iptables, hanging off the workstation namespace that test/lab/in-lab.sh made
// and that this process runs in. Tests, the benchmark and the demo use it; nothing here touches
// this machine's own network namespace or its files (each host's sshd runs in a private mount
// namespace with private /etc/iptables, /etc/sysconfig, /run, users and sudoers).
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync, chmodSync, readlinkSync, rmSync, existsSync } from "node:fs";
import * as net from "node:net";
import { dirname, join } from "node:path";
import { rootfs } from "./rootfs";
import type { Userland } from "./rootfs";

export type { Userland } from "./rootfs";

import type { Backend, Family } from "../../provider/rules";

export type { Backend, Family };

export interface HostOptions {
  /** iptables backend inside the host (legacy = the -legacy binaries bind-mounted over the nft ones). */
  backend?: Backend;
  /** Rulesets loaded with iptables-restore / ip6tables-restore when the host starts. */
  rules?: { v4?: string; v6?: string };
  /** Ports something listens on inside the host (both families). */
  listen?: { tcp?: number[]; udp?: number[] };
  /** Persistence layout: "debian" (netfilter-persistent usable), "rhel" (/etc/sysconfig files, no
   * netfilter-persistent), "alpine" (an Alpine /etc/os-release: /etc/iptables/rules-save and
   * rules6-save, no netfilter-persistent), "plain" (none of these). */
  persistence?: "debian" | "rhel" | "alpine" | "plain";
  /** Whose sshd, iptables, sudo and shell the host runs: this machine's own (default), or those of a
   * root filesystem that scripts/rootfs.sh built (a Debian suite, or "embedded": busybox ash,
   * dropbear and iptables only, no ss, sudo or flock), chrooted in the host's private mount
   * namespace on an overlay, so every host starts pristine. */
  userland?: Userland;
  /** How SSH reaches the host: over its eth0 (default), or as if from a console: through a
   * relay that enters the host on its loopback (so a default-DROP INPUT chain whose only
   * exceptions are lo and ESTABLISHED,RELATED, as in the allow guide, does not cut the provider off).
   * The connection then goes to 127.0.0.1:<22000 + slot> in the workstation. */
  ssh?: "eth0" | "lo";
  /** sshd_config settings that replace the lab's (e.g. { MaxStartups: "4", LogLevel: "VERBOSE" });
   * OpenSSH hosts only. */
  sshd?: Record<string, string>;
  /** Login shells (absolute paths inside the host, e.g. "/usr/bin/fish"): each gets a lab user of its own,
   * `pit-<shell's file name>` (pit-fish), with pit-ops' rights (passwordless sudo for sh). OpenSSH hosts only. */
  loginShells?: string[];
  /** Files of the host's own /etc, by path under it (e.g. { "pam.d/sshd": "..." }): written into its
   * private /etc before it starts, so they exist only inside the host. */
  etc?: Record<string, string>;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type LabUser = "root" | "sudo" | "nopasswd";
export const LAB_USERS: Record<LabUser, string> = { root: "root", sudo: "pit-ops", nopasswd: "pit-nopw" };
/** The lab user whose login shell is `shell` (HostOptions.loginShells). */
export const shellUser = (shell: string) => `pit-${shell.split("/").pop()}`;
export const LAB_PASSWORD = "lab-password-1";

export class LabError extends Error {}

function run(cmd: string, args: string[], input?: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { maxBuffer: 64 << 20, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === "number"
          ? (err as { code: number }).code
          : -1
        : 0;
      if (err && code === -1) return reject(new LabError(`${cmd} ${args.join(" ")}: ${err.message}`));
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input);
  if (r.code !== 0)
    throw new LabError(`${cmd} ${args.join(" ")} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

const nsInode = (pid: number | "self") => readlinkSync(`/proc/${pid}/ns/net`);
/** This machine's own network namespace, recorded by in-lab.sh before it entered the lab's. */
const homeNetns = () => process.env.PIT_LAB_HOME_NETNS;

/** Fails unless this process runs in the lab's workstation namespace (made by in-lab.sh). */
function requireWorkstation(): { run: string; ws: string; dir: string } {
  const run = process.env.PIT_LAB_RUN,
    ws = process.env.PIT_LAB_WS,
    dir = process.env.PIT_LAB_DIR;
  if (!run || !ws || !dir || !homeNetns()) {
    throw new LabError(
      "the lab runs inside its own workstation network namespace: start this through `npm test` " +
        "(or `bash test/lab/in-lab.sh <command>`), as root on a machine set up by .ci/setup.sh",
    );
  }
  if (process.getuid?.() !== 0) throw new LabError("the lab needs root");
  if (nsInode("self") === homeNetns()) {
    throw new LabError("refusing to run: this process is in the machine's own network namespace, not the lab's");
  }
  return { run, ws, dir };
}

/** Allocates a slot number unique within this run (across vitest workers): mkdir is atomic. */
function allocateSlot(dir: string): number {
  mkdirSync(join(dir, "slots"), { recursive: true });
  for (let n = 1; n < 250; n++) {
    try {
      mkdirSync(join(dir, "slots", String(n)));
      return n;
    } catch {
      /* taken */
    }
  }
  throw new LabError("no free lab slot (249 hosts in one run)");
}

let clientKey: { privateKey: string; publicKey: string } | undefined;
async function labClientKey(dir: string): Promise<{ privateKey: string; publicKey: string }> {
  if (clientKey) return clientKey;
  const path = join(dir, "client_ed25519");
  if (!existsSync(path)) {
    // Several workers may race here: each writes its own file then renames; any winner is fine.
    const tmp = `${path}.${process.pid}`;
    await must("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pit-lab-client", "-f", tmp]);
    await must("sh", ["-c", `mv -n "$1" "$2"; mv -n "$1.pub" "$2.pub"; rm -f "$1" "$1.pub"`, "_", tmp, path]);
  }
  clientKey = { privateKey: readFileSync(path, "utf8"), publicKey: readFileSync(`${path}.pub`, "utf8").trim() };
  return clientKey;
}

function sha256Fingerprint(publicKeyLine: string): string {
  const blob = Buffer.from(publicKeyLine.split(/\s+/)[1], "base64");
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

export interface LabConnection {
  host: string;
  port: number;
  user: string;
  privateKey: string;
}

export class LabHost {
  /** Process id of this host's sshd: its network and mount namespaces are the host. */
  private sshdPid = 0;
  /** The workstation side of the console relay (ssh: "lo"). */
  private relayPid?: number;

  constructor(
    readonly lab: Lab,
    readonly name: string,
    readonly slot: number,
    readonly dir: string,
    readonly options: Required<Pick<HostOptions, "backend" | "persistence">> & HostOptions,
    /** Its public key line; a rebuild gives the host a new one. */
    public hostKey: string,
  ) {}

  get backend(): Backend {
    return this.options.backend;
  }
  /** The host's addresses, as the workstation reaches them. */
  get v4(): string {
    return `198.18.${this.slot}.2`;
  }
  get v6(): string {
    return `fd00:5055:0:${this.slot.toString(16)}::2`;
  }
  /** The workstation's addresses on this host's link: where the provider's SSH comes from. */
  get clientV4(): string {
    return `198.18.${this.slot}.1`;
  }
  get clientV6(): string {
    return `fd00:5055:0:${this.slot.toString(16)}::1`;
  }
  /** The host's sshd: its network and mount namespaces are the host's. */
  get pid(): number {
    return this.sshdPid;
  }
  get hostKeyFingerprint(): string {
    return sha256Fingerprint(this.hostKey);
  }
  /** The host's /etc/iptables and /etc/sysconfig as seen from the workstation (the upper layer
   * of the host's /etc). */
  get etcIptables(): string {
    return join(this.etcUpper, "iptables");
  }
  get etcSysconfig(): string {
    return join(this.etcUpper, "sysconfig");
  }
  private get etcUpper(): string {
    return this.options.userland ? join(this.dir, "root", "etc") : join(this.dir, "etc");
  }

  /** Connection arguments for PortRule / the SSH layer: as a lab user, or as the user of a login
   * shell (`{ loginShell }`, one of HostOptions.loginShells). */
  connection(user: LabUser | { loginShell: string } = "root", family: Family = 4): LabConnection {
    if (user !== "root" && this.options.userland === "embedded")
      throw new LabError(`${this.name}: the embedded host has no sudo, only root logs in`);
    if (typeof user === "object" && !this.options.loginShells?.includes(user.loginShell))
      throw new LabError(`${this.name}: no lab user has the login shell ${user.loginShell} (HostOptions.loginShells)`);
    const via =
      this.options.ssh === "lo"
        ? { host: "127.0.0.1", port: 22000 + this.slot }
        : { host: family === 4 ? this.v4 : this.v6, port: 22 };
    const name = typeof user === "object" ? shellUser(user.loginShell) : LAB_USERS[user];
    return { ...via, user: name, privateKey: this.lab.privateKey };
  }

  /** Runs argv inside the host: its network namespace and its private mount namespace. */
  async exec(argv: string[], input?: string): Promise<ExecResult> {
    this.assertInside();
    // A userland host's sshd runs chrooted: -r -w give the command the same root (its own tools).
    const root = this.options.userland ? ["-r", "-w"] : [];
    return run("nsenter", ["-t", String(this.sshdPid), "-n", "-m", ...root, "--", ...argv], input);
  }

  /** Runs one of this machine's tools (nc, ss) in the host's network namespace only. */
  private netExec(argv: string[]): Promise<ExecResult> {
    this.assertInside();
    return run("nsenter", ["-t", String(this.sshdPid), "-n", "--", ...argv]);
  }

  /** Like exec, but a non-zero exit is an error. */
  async sh(script: string, input?: string): Promise<string> {
    const r = await this.exec(["sh", "-c", script], input);
    if (r.code !== 0) throw new LabError(`${this.name}: ${script} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  iptables(family: Family, args: string[]): Promise<ExecResult> {
    return this.exec([family === 4 ? "iptables" : "ip6tables", "-w", "5", ...args]);
  }

  /** iptables-save of one family (optionally with counters and for one table). */
  async save(family: Family, opts: { counters?: boolean; table?: string } = {}): Promise<string> {
    const args = [...(opts.counters ? ["-c"] : []), ...(opts.table ? ["-t", opts.table] : [])];
    return this.sh([family === 4 ? "iptables-save" : "ip6tables-save", ...args].join(" "));
  }

  /** The ruleset without the comment/date lines, chain counters zeroed (SSH traffic moves the
   * policy counters), for byte-level comparison. */
  async ruleset(family: Family): Promise<string> {
    return (await this.save(family))
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .join("\n")
      .replace(/\[\d+:\d+\]/g, "[0:0]");
  }

  async restore(family: Family, text: string): Promise<void> {
    const r = await this.exec([family === 4 ? "iptables-restore" : "ip6tables-restore", "-w", "5"], text);
    if (r.code !== 0) throw new LabError(`${this.name}: restore failed: ${r.stderr.trim()}`);
  }

  /** Starts a listener on port/protocol for both families (nc -k keeps accepting). */
  async listen(port: number, protocol: "tcp" | "udp" = "tcp"): Promise<void> {
    for (const fam of ["-4", "-6"]) {
      const args = ["nc", fam, ...(protocol === "udp" ? ["-u"] : []), "-lk", "-p", String(port)];
      const child = spawn("nsenter", ["-t", String(this.sshdPid), "-n", "--", ...args], {
        stdio: "ignore",
        detached: true,
      });
      child.unref();
    }
    await this.waitFor(
      async () =>
        (await this.netExec(["ss", "-H", "-l", protocol === "udp" ? "-u" : "-t", "-n", `sport = :${port}`])).stdout
          .split("\n")
          .filter(Boolean).length >= 2,
      `listener on ${protocol}/${port}`,
    );
  }

  /**
   * A reboot, as far as the firewall goes: the tables are flushed, /run is emptied, and the
   * boot-time restore of the host's persistence layout runs (netfilter-persistent's own start on
   * "debian"; what iptables.service / the rules files would load on "rhel" / "plain").
   */
  async reboot(): Promise<void> {
    const empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    await this.restore(4, empty);
    await this.restore(6, empty);
    await this.sh("rm -rf /run/pulumi-iptables*");
    const boot = {
      debian: "netfilter-persistent start",
      rhel: "iptables-restore < /etc/sysconfig/iptables && ip6tables-restore < /etc/sysconfig/ip6tables",
      // What Alpine's iptables and ip6tables services load at boot.
      alpine: "iptables-restore < /etc/iptables/rules-save && ip6tables-restore < /etc/iptables/rules6-save",
      plain: "iptables-restore < /etc/iptables/rules.v4 && ip6tables-restore < /etc/iptables/rules.v6",
    }[this.options.persistence];
    await this.sh(boot);
  }

  /** Switches the host's iptables to the other backend as an operator would (Debian's
   * update-alternatives; the embedded host's links), leaving the kernel's tables as they are. */
  async switchBackend(to: Backend): Promise<void> {
    if (!this.options.userland) throw new LabError(`${this.name}: switchBackend needs a userland host`);
    await this.sh(switchScript(this.options.userland, to));
    this.options.backend = to;
  }

  /** Stops and starts the host's sshd (the host stays), e.g. to make it unreachable. */
  async stopSsh(): Promise<void> {
    await run("kill", [String(this.sshdPid)]);
  }

  /**
   * A rebuild (a reinstall from the same image): the same name and addresses, and a new host behind them:
   * a new host key, the tables it starts with (`rules`, by default the options' rules), pristine /etc
   * (rules files included) and /run. This machine's own userland only.
   */
  async rebuild(rules: HostOptions["rules"] = this.options.rules): Promise<void> {
    if (this.options.userland) throw new LabError(`${this.name}: rebuild needs a host of this machine's userland`);
    await this.destroy();
    // The old host's namespaces go once its processes are gone; its link with them.
    await this.waitFor(
      async () => (await run("ip", ["link", "show", `pv${this.slot}`])).code !== 0,
      "the old link gone",
    );
    this.options.rules = rules;
    this.hostKey = await writeHostFiles(this.dir, this.options, this.lab.publicKey);
    await this.start();
  }

  /** Creates the namespaces and starts sshd. */
  async start(): Promise<void> {
    const { name, slot } = this;
    const hex = slot.toString(16);
    await must("ip", ["netns", "add", name]);
    const veth = `pv${slot}`;
    await must("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name]);
    await must("ip", ["addr", "add", `198.18.${slot}.1/24`, "dev", veth]);
    await must("ip", ["-6", "addr", "add", `fd00:5055:0:${hex}::1/64`, "dev", veth, "nodad"]);
    await must("ip", ["link", "set", veth, "up"]);
    await must("ip", ["-n", name, "addr", "add", `198.18.${slot}.2/24`, "dev", "eth0"]);
    await must("ip", ["-n", name, "-6", "addr", "add", `fd00:5055:0:${hex}::2/64`, "dev", "eth0", "nodad"]);
    await must("ip", ["-n", name, "link", "set", "eth0", "up"]);
    await must("ip", ["-n", name, "link", "set", "lo", "up"]);
    // Static IPv6 neighbours: a default-DROP INPUT chain must not break neighbour discovery.
    const hostMac = JSON.parse(await must("ip", ["-n", name, "-j", "link", "show", "eth0"]))[0].address as string;
    const vethMac = JSON.parse(await must("ip", ["-j", "link", "show", veth]))[0].address as string;
    await must("ip", [
      "-6",
      "neigh",
      "replace",
      `fd00:5055:0:${hex}::2`,
      "lladdr",
      hostMac,
      "dev",
      veth,
      "nud",
      "permanent",
    ]);
    await must("ip", [
      "-n",
      name,
      "-6",
      "neigh",
      "replace",
      `fd00:5055:0:${hex}::1`,
      "lladdr",
      vethMac,
      "dev",
      "eth0",
      "nud",
      "permanent",
    ]);

    const log = join(this.dir, "sshd.log");
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        name,
        "unshare",
        "--mount",
        ...(this.options.userland ? ["--uts"] : []),
        "--propagation",
        "private",
        "--",
        "sh",
        join(this.dir, "boot.sh"),
      ],
      {
        stdio: ["ignore", "ignore", "ignore"],
        detached: true,
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    );
    child.unref();
    if (!child.pid) throw new LabError(`${name}: could not start sshd`);
    // boot.sh execs sshd, and ip netns exec / unshare exec too: the pid is sshd's. The record lets
    // in-lab.sh find this host's processes even if this process dies without destroy().
    this.sshdPid = child.pid;
    const start = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ")[19];
    mkdirSync(join(this.lab.dir, "hosts"), { recursive: true });
    writeFileSync(join(this.lab.dir, "hosts", this.name), `${child.pid} ${start}\n`);
    await this.waitFor(() => canConnect(this.v4, 22), `sshd on ${this.v4}:22 (log: ${log})`);
    await this.waitFor(() => canConnect(this.v6, 22), `sshd on [${this.v6}]:22`);
    if (this.options.ssh === "lo") {
      // Host side: a unix socket relayed to sshd on the host's loopback; workstation side: a TCP
      // port relayed to that socket. Both relays are killed with their namespaces.
      const sock = join(this.dir, "console.sock");
      spawn(
        "nsenter",
        [
          "-t",
          String(this.sshdPid),
          "-n",
          "-m",
          "--",
          "socat",
          `UNIX-LISTEN:${sock},fork,mode=600`,
          "TCP:127.0.0.1:22",
        ],
        { stdio: "ignore", detached: true },
      ).unref();
      await this.waitFor(async () => existsSync(sock), `relay socket ${sock}`);
      const port = 22000 + this.slot;
      const relay = spawn("socat", [`TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${sock}`], {
        stdio: "ignore",
        detached: true,
      });
      relay.unref();
      this.relayPid = relay.pid;
      await this.waitFor(() => canConnect("127.0.0.1", port), `console relay on 127.0.0.1:${port}`);
    }
    if (this.options.rules?.v4) await this.restore(4, this.options.rules.v4);
    if (this.options.rules?.v6) await this.restore(6, this.options.rules.v6);
    for (const p of this.options.listen?.tcp ?? []) await this.listen(p, "tcp");
    for (const p of this.options.listen?.udp ?? []) await this.listen(p, "udp");
  }

  /** Kills every process in the host's network namespace (all started by the lab) and removes it. */
  async destroy(): Promise<void> {
    const pids = (await run("ip", ["netns", "pids", this.name])).stdout.split(/\s+/).filter(Boolean);
    if (this.relayPid) pids.push(String(this.relayPid));
    if (pids.length) await run("kill", ["-9", ...pids]);
    await run("ip", ["netns", "del", this.name]);
  }

  /**
   * A second sshd, with a host key of its own, takes this host's IPv4 address: it runs in a namespace of
   * its own, and the workstation's route to the address now leads there (as when another machine takes
   * over an IP). It would accept the lab's client key and logs at LogLevel VERBOSE, so its log shows any
   * authentication attempt. `leave()` gives the address back.
   */
  async impersonate(): Promise<Impostor> {
    const name = `${this.name}i`;
    const dir = join(this.dir, "impostor");
    mkdirSync(dir, { recursive: true });
    const hostKey = await sshHostKey(join(dir, "host_ed25519"), "pit-impostor");
    writeFileSync(join(dir, "authorized_keys"), `${this.lab.publicKey}\n`, { mode: 0o644 });
    const log = join(dir, "sshd.log");
    writeFileSync(
      join(dir, "sshd_config"),
      [
        "Port 22",
        `ListenAddress ${this.v4}`,
        `HostKey ${dir}/host_ed25519`,
        `PidFile ${dir}/sshd.pid`,
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        "PermitRootLogin yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication yes",
        "UsePAM no",
        "StrictModes no",
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
    );
    const veth = `pi${this.slot}`;
    await must("ip", ["netns", "add", name]);
    await must("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name]);
    await must("ip", ["-n", name, "addr", "add", `${this.v4}/24`, "dev", "eth0"]);
    await must("ip", ["-n", name, "link", "set", "eth0", "up"]);
    await must("ip", ["-n", name, "link", "set", "lo", "up"]);
    await must("ip", ["link", "set", veth, "up"]);
    const boot = `mount -t tmpfs -o mode=755 lab-run /run && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f ${dir}/sshd_config >>${log} 2>&1`;
    const child = spawn(
      "ip",
      ["netns", "exec", name, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", boot],
      {
        stdio: "ignore",
        detached: true,
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    );
    child.unref();
    if (!child.pid) throw new LabError(`${name}: could not start the impostor sshd`);
    const start = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ")[19];
    writeFileSync(join(this.lab.dir, "hosts", name), `${child.pid} ${start}\n`);
    await this.waitFor(
      async () => readFileSync(log, "utf8").includes("Server listening"),
      `impostor sshd (log: ${log})`,
    );
    // From the workstation's address on this host's link, as the real host sees it.
    await must("ip", ["route", "replace", `${this.v4}/32`, "dev", veth, "src", this.clientV4]);
    await must("ip", ["-n", name, "route", "add", "default", "via", this.clientV4]);
    return {
      hostKey,
      fingerprint: sha256Fingerprint(hostKey),
      log: () => readFileSync(log, "utf8"),
      leave: async () => {
        await run("ip", ["route", "del", `${this.v4}/32`, "dev", veth]);
        const pids = (await run("ip", ["netns", "pids", name])).stdout.split(/\s+/).filter(Boolean);
        if (pids.length) await run("kill", ["-9", ...pids]);
        await run("ip", ["netns", "del", name]);
      },
    };
  }

  private assertInside(): void {
    if (!this.sshdPid) throw new LabError(`${this.name} is not running`);
    const inode = nsInode(this.sshdPid);
    if (inode === homeNetns() || inode === nsInode("self")) {
      throw new LabError(`refusing to run a command for ${this.name}: its process is not in a lab namespace`);
    }
  }

  async waitFor(ok: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await ok().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new LabError(`${this.name}: timed out waiting for ${what}`);
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 500 });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

export type ProbeResult = "open" | "refused" | "timeout";

/** A second sshd that took a lab host's address (LabHost.impersonate). */
export interface Impostor {
  /** Its host key ("ssh-ed25519 AAAA...") and SHA256 fingerprint. */
  hostKey: string;
  fingerprint: string;
  /** Its sshd's log (LogLevel VERBOSE). */
  log(): string;
  /** Gives the address back to the real host and removes the impostor. */
  leave(): Promise<void>;
}

/** What an sshd log at LogLevel VERBOSE shows of an authentication attempt (none, password, key, keyboard). */
export const AUTH_ATTEMPT = /Failed|Accepted|Postponed|Invalid user|userauth|publickey|password|keyboard|authenticat/i;

export class Lab {
  readonly hosts: LabHost[] = [];
  private constructor(
    readonly run: string,
    readonly dir: string,
    readonly privateKey: string,
    readonly publicKey: string,
  ) {}

  static async create(): Promise<Lab> {
    const { run, dir } = requireWorkstation();
    const key = await labClientKey(dir);
    return new Lab(run, dir, key.privateKey, key.publicKey);
  }

  async addHost(options: HostOptions = {}): Promise<LabHost> {
    const slot = allocateSlot(this.dir);
    const name = `${this.run}-h${slot}`;
    const dir = join(this.dir, `h${slot}`);
    const opts = {
      backend: "nf_tables" as Backend,
      persistence: (options.userland === "embedded" ? "plain" : "debian") as NonNullable<HostOptions["persistence"]>,
      ...options,
    };
    const hostKey = opts.userland
      ? await writeUserlandFiles(dir, name, opts.userland, opts, this.publicKey)
      : await writeHostFiles(dir, opts, this.publicKey);
    const host = new LabHost(this, name, slot, dir, opts, hostKey);
    this.hosts.push(host);
    await host.start();
    return host;
  }

  /** A TCP or UDP probe from the workstation, as the guides do it: `nc -vz -w 2 host port`. */
  async probe(
    host: LabHost,
    port: number,
    opts: { family?: Family; protocol?: "tcp" | "udp"; timeoutSec?: number } = {},
  ): Promise<ProbeResult> {
    const addr = (opts.family ?? 4) === 4 ? host.v4 : host.v6;
    const r = await run("nc", [
      "-vz",
      "-w",
      String(opts.timeoutSec ?? 2),
      ...(opts.protocol === "udp" ? ["-u"] : []),
      addr,
      String(port),
    ]);
    if (r.code === 0) return "open";
    if (/refused/i.test(r.stderr)) return "refused";
    if (/timed out|in progress/i.test(r.stderr)) return "timeout";
    throw new LabError(`nc ${addr} ${port}: unexpected result (${r.code}): ${r.stderr.trim()}`);
  }

  async destroy(): Promise<void> {
    await Promise.all(this.hosts.splice(0).map((h) => h.destroy().catch(() => undefined)));
  }
}

/** Writes the host's private files: sshd config and host key, and the upper layer of the host's
 * /etc (an overlay on this machine's /etc: users, sudoers, /etc/iptables, /etc/sysconfig), so the
 * host writes only into the lab's directory. */
async function writeHostFiles(
  dir: string,
  opts: Required<Pick<HostOptions, "backend" | "persistence">> & Pick<HostOptions, "sshd" | "loginShells" | "etc">,
  clientPublicKey: string,
): Promise<string> {
  rmSync(dir, { recursive: true, force: true });
  for (const d of ["ssh", "etc/iptables", "etc/sudoers.d", "sbin", "work/etc", "work/sbin", "home/root"]) {
    mkdirSync(join(dir, d), { recursive: true });
  }
  const hostKey = await sshHostKey(join(dir, "ssh", "host_ed25519"));
  writeFileSync(join(dir, "ssh", "authorized_keys"), `${clientPublicKey}\n`, { mode: 0o644 });
  const etc = join(dir, "etc");
  // The machine's user database plus the lab's two non-root users.
  // root gets /bin/sh and a clean home: the machine's root login scripts would slow every command.
  await writeLabUsers(
    etc,
    {
      passwd: readFileSync("/etc/passwd", "utf8").replace(/^root:.*$/m, `root:x:0:0:root:${dir}/home/root:/bin/sh`),
      group: readFileSync("/etc/group", "utf8"),
      shadow: readFileSync("/etc/shadow", "utf8"),
    },
    { host: `${dir}/home`, here: join(dir, "home") },
    opts.loginShells,
  );
  writeLayoutFiles(etc, opts.persistence);
  writeEtcFiles(etc, opts.etc);
  writeFileSync(
    join(dir, "ssh", "sshd_config"),
    sshdConfig({ hostKey: `${dir}/ssh/host_ed25519`, authorizedKeys: `${dir}/ssh/authorized_keys` }, opts.sshd),
  );
  const lines = [
    "set -e",
    // /run private to the host: sshd's privilege separation dir, the provider's lock file.
    "mount -t tmpfs -o mode=755 lab-run /run",
    "mkdir -p /run/sshd /run/lock",
    `mount -t overlay lab-etc -o lowerdir=/etc,upperdir=${dir}/etc,workdir=${dir}/work/etc /etc`,
  ];
  if (opts.persistence !== "debian") {
    // A whiteout in the upper layer hides netfilter-persistent: a host without it.
    lines.push(`mknod ${dir}/sbin/netfilter-persistent c 0 0`);
    lines.push(
      `mount -t overlay lab-sbin -o lowerdir=/usr/sbin,upperdir=${dir}/sbin,workdir=${dir}/work/sbin /usr/sbin`,
    );
  }
  if (opts.backend === "legacy") {
    lines.push("mount --bind /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi");
  }
  lines.push(`exec /usr/sbin/sshd -D -e -f ${dir}/ssh/sshd_config >>${dir}/sshd.log 2>&1`);
  writeFileSync(join(dir, "boot.sh"), `${lines.join("\n")}\n`);
  chmodSync(join(dir, "boot.sh"), 0o755);
  return hostKey;
}

const ALPINE_OS_RELEASE = 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n';

/** Makes an ed25519 host key at `file` (and `file`.pub); returns the public key ("ssh-ed25519 AAAA..."). */
async function sshHostKey(file: string, comment = "pit-lab-host"): Promise<string> {
  await must("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
  return publicKey(readFileSync(`${file}.pub`, "utf8"));
}

/** A public key line without its comment. */
const publicKey = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(" ");

/**
 * Writes a host's passwd, group and shadow (`base`: the host's own, root's entries as the host needs
 * them) with the lab's users added, and their sudoers: pit-ops, whose sudo runs sh without a
 * password (the provider runs one sh script per round trip as root: that is what sudo must allow),
 * pit-nopw, whose sudo asks for its password, and one user per login shell in `shells` (shellUser),
 * with pit-ops' rights; all log in with LAB_PASSWORD. Their homes are under `homes.host` as the host
 * sees it, `homes.here` as this machine does.
 */
async function writeLabUsers(
  etc: string,
  base: { passwd: string; group: string; shadow: string },
  homes: { host: string; here: string },
  shells: string[] = [],
): Promise<void> {
  const hash = (await must("openssl", ["passwd", "-6", "-salt", "pitlab", LAB_PASSWORD])).trim();
  const users = [
    {
      name: LAB_USERS.sudo,
      id: 4101,
      gecos: "lab sudo user",
      shell: "/bin/sh",
      sudo: "NOPASSWD: /bin/sh, /usr/bin/sh",
    },
    {
      name: LAB_USERS.nopasswd,
      id: 4102,
      gecos: "lab user whose sudo needs a password",
      shell: "/bin/sh",
      sudo: "ALL",
    },
    ...shells.map((shell, i) => ({
      name: shellUser(shell),
      id: 4110 + i,
      gecos: `lab user whose login shell is ${shell}`,
      shell,
      sudo: "NOPASSWD: /bin/sh, /usr/bin/sh",
    })),
  ];
  const added = (line: (u: (typeof users)[number]) => string) => users.map(line).join("");
  writeFileSync(
    join(etc, "passwd"),
    `${base.passwd.trimEnd()}\n${added((u) => `${u.name}:x:${u.id}:${u.id}:${u.gecos}:${homes.host}/${u.name}:${u.shell}\n`)}`,
    { mode: 0o644 },
  );
  writeFileSync(join(etc, "group"), `${base.group.trimEnd()}\n${added((u) => `${u.name}:x:${u.id}:\n`)}`, {
    mode: 0o644,
  });
  writeFileSync(
    join(etc, "shadow"),
    `${base.shadow.trimEnd()}\n${added((u) => `${u.name}:${hash}:19000:0:99999:7:::\n`)}`,
    { mode: 0o640 },
  );
  writeFileSync(
    join(etc, "sudoers.d", "pit-lab"),
    added((u) => `${u.name} ALL=(root) ${u.sudo}\n`),
    { mode: 0o440 },
  );
  for (const u of users) {
    mkdirSync(join(homes.here, u.name), { recursive: true });
    await must("chown", ["-R", `${u.id}:${u.id}`, join(homes.here, u.name)]);
  }
}

/** What a persistence layout's host has in /etc besides its rules files. */
function writeLayoutFiles(etc: string, persistence: NonNullable<HostOptions["persistence"]>): void {
  if (persistence === "rhel") {
    // What the iptables-services package installs (the service reads /etc/sysconfig/iptables at boot).
    mkdirSync(join(etc, "sysconfig"), { recursive: true });
    writeFileSync(
      join(etc, "sysconfig", "iptables-config"),
      "# lab: iptables-services layout\nIPTABLES_SAVE_ON_STOP=no\n",
    );
  }
  if (persistence === "alpine") writeFileSync(join(etc, "os-release"), ALPINE_OS_RELEASE);
}

/** Writes HostOptions.etc's files under `etc` (the host's private /etc). */
function writeEtcFiles(etc: string, files: Record<string, string> = {}): void {
  for (const [path, text] of Object.entries(files)) {
    const file = join(etc, path);
    if (!file.startsWith(`${etc}/`)) throw new LabError(`HostOptions.etc: ${path} is not a path under /etc`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
}

/** The lab's sshd_config: keys and passwords, no PAM, quiet; the settings given (HostOptions.sshd) replace
 * or add to its own. */
function sshdConfig(
  paths: { hostKey: string; authorizedKeys: string },
  overrides: Record<string, string> = {},
): string {
  const lines = [
    "Port 22",
    "AddressFamily any",
    `HostKey ${paths.hostKey}`,
    "PidFile /run/sshd.pid",
    `AuthorizedKeysFile ${paths.authorizedKeys}`,
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication yes",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "StrictModes no",
    "PrintMotd no",
    "LogLevel ERROR",
  ].filter((l) => !(l.split(" ")[0] in overrides));
  return [...lines, ...Object.entries(overrides).map(([k, v]) => `${k} ${v}`), ""].join("\n");
}

/** The commands that switch a userland's iptables names to a backend. */
function switchScript(userland: Userland, to: Backend): string {
  const short = to === "legacy" ? "legacy" : "nft";
  if (userland === "embedded")
    return `for n in iptables ip6tables; do for s in "" -save -restore; do ln -sf xtables-${short}-multi /usr/sbin/$n$s; done; done`;
  return ["iptables", "ip6tables"]
    .map((n) => `update-alternatives --quiet --set ${n} /usr/sbin/${n}-${short}`)
    .join(" && ");
}

/**
 * The files of a host that runs a root filesystem's own sshd (or dropbear): the per-run upper layer
 * of an overlay on the unpacked root filesystem (users, keys, sudoers, layout files), and boot.sh,
 * which mounts it with proc, /sys, /dev and a tmpfs /run, and execs the server chrooted there.
 */
async function writeUserlandFiles(
  dir: string,
  name: string,
  userland: Userland,
  opts: Required<Pick<HostOptions, "backend" | "persistence">> & Pick<HostOptions, "sshd" | "loginShells" | "etc">,
  clientPublicKey: string,
): Promise<string> {
  const lower = rootfs(userland);
  rmSync(dir, { recursive: true, force: true });
  const up = join(dir, "root");
  for (const d of ["root/etc/ssh", "root/etc/sudoers.d", "root/usr/sbin", "work/root", "merged"])
    mkdirSync(join(dir, d), { recursive: true });
  const etc = join(up, "etc");
  writeFileSync(
    join(etc, "hosts"),
    `${readFileSync(join(lower, "etc/hosts"), "utf8").trimEnd()}\n127.0.1.1 ${name}\n`.replace(/^\n/, ""),
  );
  writeLayoutFiles(etc, opts.persistence);
  writeEtcFiles(etc, opts.etc);
  const hidePersistent = opts.persistence !== "debian" && existsSync(join(lower, "usr/sbin/netfilter-persistent"));
  if (hidePersistent) await must("mknod", [join(up, "usr/sbin/netfilter-persistent"), "c", "0", "0"]);

  let hostKey: string;
  let server: string;
  if (userland === "embedded") {
    mkdirSync(join(up, "root/.ssh"), { recursive: true, mode: 0o700 });
    chmodSync(join(up, "root"), 0o700);
    chmodSync(join(up, "root/.ssh"), 0o700);
    writeFileSync(join(up, "root/.ssh/authorized_keys"), `${clientPublicKey}\n`, { mode: 0o600 });
    mkdirSync(join(etc, "dropbear"), { recursive: true });
    await must("dropbearkey", ["-t", "ed25519", "-f", join(etc, "dropbear/lab_host_key")]);
    const pub = await must("dropbearkey", ["-y", "-f", join(etc, "dropbear/lab_host_key")]);
    hostKey = pub.split("\n").find((l) => l.startsWith("ssh-ed25519 "))!;
    server = "/usr/sbin/dropbear -F -E -s -p 22 -r /etc/dropbear/lab_host_key -P /run/dropbear.pid";
  } else {
    hostKey = await sshHostKey(join(etc, "ssh/lab_host_ed25519"));
    writeFileSync(join(etc, "ssh/lab_authorized_keys"), `${clientPublicKey}\n`, { mode: 0o644 });
    const base = (f: string) => readFileSync(join(lower, "etc", f), "utf8");
    // root's shell /bin/sh: bash would read root's .bashrc on every SSH command.
    // sshd with UsePAM no refuses accounts whose password field is "!": "*" locks the password only.
    await writeLabUsers(
      etc,
      {
        passwd: base("passwd").replace(/^root:.*$/m, "root:x:0:0:root:/root:/bin/sh"),
        group: base("group"),
        shadow: base("shadow").replace(/^root:[^:]*:/m, "root:*:"),
      },
      { host: "/home", here: join(up, "home") },
      opts.loginShells,
    );
    writeFileSync(
      join(etc, "ssh", "lab_sshd_config"),
      sshdConfig({ hostKey: "/etc/ssh/lab_host_ed25519", authorizedKeys: "/etc/ssh/lab_authorized_keys" }, opts.sshd),
    );
    server = "/usr/sbin/sshd -D -e -f /etc/ssh/lab_sshd_config";
  }
  const m = join(dir, "merged");
  const lines = [
    "set -e",
    `mount -t overlay lab-root -o lowerdir=${lower},upperdir=${up},workdir=${dir}/work/root ${m}`,
    `mount -t proc proc ${m}/proc`,
    `mount --bind /sys ${m}/sys`,
    `mount --bind /dev ${m}/dev`,
    `mount -t tmpfs -o mode=755 lab-run ${m}/run`,
    `mkdir -p ${m}/run/sshd ${m}/run/lock`,
    `mount -t tmpfs -o mode=1777 lab-tmp ${m}/tmp`,
    `hostname ${name}`,
  ];
  if (opts.backend === "legacy") lines.push(`chroot ${m} /bin/sh -c '${switchScript(userland, "legacy")}'`);
  lines.push(`exec chroot ${m} ${server} >>${dir}/sshd.log 2>&1`);
  writeFileSync(join(dir, "boot.sh"), `${lines.join("\n")}\n`);
  chmodSync(join(dir, "boot.sh"), 0o755);
  return publicKey(hostKey);
}

/** Creates a lab, runs fn, and always tears the lab down. */
export async function withLab<T>(fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await Lab.create();
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}
