/**
 * A server and a client namespace joined by a veth pair, for tests that ask the kernel what it does
 * with real connections. The server listens on a fixed pool of TCP ports (both families, one node
 * process); the client runs one node prober that opens connections and says, per port, whether the
 * connection was made ("open"), answered with an error at once ("refused": a TCP reset or an ICMP
 * unreachable, what REJECT sends) or never answered ("timeout": DROP). Addresses are the lab's:
 * server 198.18.0.2 / fd00:18::2, client .1 / ::1, on an interface named vlab0 that no rule names;
 * a pair made with more interfaces (zone firewalls: eth0, eth1, ...) links them all, the k-th (from 0)
 * on 198.18.k.0/24 and fd00:18:0:k::/64, so the client reaches the server through each of them.
 * Behind the server, a backend namespace (BACKEND, on the server's bk0) listens on the same ports:
 * what the server's nat PREROUTING DNATs there is forwarded to it (FORWARD accepts).
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { type Backend, Netns } from "./netns";

export type Outcome = "open" | "refused" | "timeout";

export const ADDRESSES = {
  4: { server: "198.18.0.2", client: "198.18.0.1", prefix: 24 },
  6: { server: "fd00:18::2", client: "fd00:18::1", prefix: 64 },
} as const;

/** The address of a side on the k-th interface of a pair (0: ADDRESSES). */
export function addressOn(family: 4 | 6, side: "server" | "client", k: number): string {
  const last = side === "server" ? 2 : 1;
  return family === 4 ? `198.18.${k}.${last}` : k ? `fd00:18:0:${k}::${last}` : ADDRESSES[6][side];
}

const LISTENER = `
const net = require("node:net");
const ports = process.argv.slice(1).map(Number);
let left = ports.length;
for (const port of ports) {
  // connections stay open until the client resets them: the prober reads ESTABLISHED, not a close
  const server = net.createServer((s) => { s.on("error", () => s.destroy()); s.on("end", () => s.destroy()); });
  server.listen({ port, host: "::", ipv6Only: false }, () => { if (--left === 0) console.log("ready"); });
}
`;

// The prober (python3, for raw ICMP sockets): connections to every port at once, non-blocking. What
// counts is the first packet's fate, as in the model: a port is "open" when the SYN was answered with
// a SYN-ACK (the socket is ESTABLISHED, whatever later packets meet), "refused" when it was answered
// with a reset or an ICMP error about it
// arrives (Linux reports an ICMPv6 unreachable to a connecting socket only as a soft error, so the
// error itself is read from a raw socket), "timeout" when nothing came within the wait. Pending
// events are read once more after the deadline, so a busy machine does not turn answers into timeouts.
// Connections are then reset (SO_LINGER 0), so no packet of this round reaches the next ruleset.
const PROBER = `
import errno, json, select, socket, struct, sys, time
raw = {4: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
       6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)}
def icmp_ports(family, data):
    if family == 4:
        ihl = (data[0] & 15) * 4
        icmp = data[ihl:]
        if icmp[0] not in (3, 11, 12): return None
        inner = icmp[8:]
        off = (inner[0] & 15) * 4
        return struct.unpack("!HH", inner[off:off + 4])
    if data[0] not in (1, 2, 3, 4): return None
    return struct.unpack("!HH", data[48:52])
def established(s):
    # the SYN was answered with a SYN-ACK (whatever later packets met, a reset included): the options it
    # negotiated (timestamps, SACK, window scaling: Linux's defaults) are in tcpi_options
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0] in (1, 8) or info[5] != 0
def probe(family, host, ports, wait):
    socks, result = {}, {}
    for port in ports:
        s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        socks[s] = port
    local = {s.getsockname()[1]: s for s in socks}
    deadline = time.monotonic() + wait / 1000
    last = False
    while len(result) < len(ports):
        left = deadline - time.monotonic()
        if left <= 0:
            if last: break
            last, left = True, 0
        pending = [s for s in socks if socks[s] not in result]
        _, w, _ = select.select([raw[family]], pending, [], 0) if last else select.select([raw[family]], pending, [], left)
        r = select.select([raw[family]], [], [], 0)[0]
        for s in w:
            result[socks[s]] = "open" if established(s) else "refused"
        while r:
            data = raw[family].recv(4096)
            ports_ = icmp_ports(family, data)
            if ports_ and ports_[0] in local and socks[local[ports_[0]]] not in result:
                s = local[ports_[0]]
                result[socks[s]] = "open" if established(s) else "refused"
            r = select.select([raw[family]], [], [], 0)[0]
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.03)  # the resets of this round are through before the next ruleset counts packets
    return [result.get(p, "timeout") for p in ports]
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps({"id": req["id"], "results": probe(req["family"], req["host"], req["ports"], req["wait"])}), flush=True)
`;

function must(ns: string, args: string[]) {
  const r = spawnSync("ip", ["netns", "exec", ns, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${args.join(" ")} in ${ns} failed (exit ${r.status}): ${r.stderr}`);
}

/** A veth pair named `dev` on both sides between `a` and `b`, with an address of each family on each
 * side (prefixes /24 and /64) and permanent neighbours (a DROP policy also drops IPv6 neighbour
 * discovery, which must not decide whether a SYN is sent at all). */
function veth(a: Netns, b: Netns, dev: string, addresses: (side: "server" | "client", f: 4 | 6) => string): void {
  must(a.name, ["ip", "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", b.name]);
  const sides = [
    [a, b, "server", "client"],
    [b, a, "client", "server"],
  ] as const;
  for (const [ns, , side] of sides) {
    must(ns.name, ["ip", "addr", "add", `${addresses(side, 4)}/${ADDRESSES[4].prefix}`, "dev", dev]);
    must(ns.name, ["ip", "addr", "add", `${addresses(side, 6)}/${ADDRESSES[6].prefix}`, "dev", dev, "nodad"]);
    must(ns.name, ["ip", "link", "set", dev, "up"]);
  }
  const mac = (ns: Netns) =>
    JSON.parse(
      spawnSync("ip", ["netns", "exec", ns.name, "ip", "-j", "link", "show", dev], { encoding: "utf8" }).stdout,
    )[0].address as string;
  for (const [ns, peer, , other] of sides)
    for (const f of [4, 6] as const)
      must(ns.name, [
        "ip",
        "neigh",
        "replace",
        addresses(other, f),
        "lladdr",
        mac(peer),
        "dev",
        dev,
        "nud",
        "permanent",
      ]);
}

/** The backend a DNAT sends packets to (through the server's FORWARD): its address, and the server's on its link. */
export const BACKEND = {
  4: { server: "198.19.250.1", backend: "198.19.250.2" },
  6: { server: "fd00:19:250::1", backend: "fd00:19:250::2" },
} as const;

export class Pair {
  private pending = new Map<number, (r: Outcome[]) => void>();
  private nextId = 0;

  private constructor(
    readonly server: Netns,
    readonly client: Netns,
    /** The server's interfaces, in order (the k-th on addressOn(f, side, k)). */
    readonly interfaces: readonly string[],
    /** The namespace behind the server that its DNAT rules send packets to, listening on the same ports. */
    readonly backend: Netns,
    private readonly listeners: ChildProcessWithoutNullStreams[],
    private readonly prober: ChildProcessWithoutNullStreams,
  ) {
    createInterface({ input: prober.stdout }).on("line", (line) => {
      if (!line.trim()) return;
      const msg = JSON.parse(line) as { id?: number; results?: Outcome[] };
      if (msg.id === undefined) return;
      this.pending.get(msg.id)?.(msg.results!);
      this.pending.delete(msg.id);
    });
  }

  /** Makes both namespaces, links them by one veth pair per interface name (same name on both sides),
   * links the server to a backend namespace (bk0) it forwards to, starts the listeners on `ports`
   * (server and backend) and the prober. */
  static async create(ports: readonly number[], interfaces: readonly string[] = ["vlab0"]): Promise<Pair> {
    const server = Netns.create("pit-pl");
    const client = Netns.create("pit-pl");
    const backend = Netns.create("pit-pl");
    for (const ns of [server, client, backend]) {
      must(ns.name, ["ip", "link", "set", "lo", "up"]);
      // REJECT's ICMP errors are rate-limited per peer (this namespace's own settings): a probe must
      // never see a REJECT as a DROP because the lab asked often
      must(ns.name, ["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"]);
    }
    for (const [k, dev] of interfaces.entries()) veth(server, client, dev, (side, f) => addressOn(f, side, k));
    veth(server, backend, "bk0", (side, f) => BACKEND[f][side === "server" ? "server" : "backend"]);
    must(server.name, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    must(backend.name, ["ip", "route", "add", "default", "via", BACKEND[4].server]);
    must(backend.name, ["ip", "-6", "route", "add", "default", "via", BACKEND[6].server]);
    const listen = (ns: Netns) =>
      spawn("ip", ["netns", "exec", ns.name, process.execPath, "-e", LISTENER, ...ports.map(String)]);
    const listeners = [listen(server), listen(backend)];
    const prober = spawn("ip", ["netns", "exec", client.name, "python3", "-c", PROBER]);
    await Promise.all(
      [...listeners, prober].map(
        (p, i) =>
          new Promise<void>((resolve, reject) => {
            let err = "";
            p.stderr.on("data", (d) => {
              err += d;
            });
            p.once("exit", (code) => reject(new Error(`${i === 2 ? "prober" : "listener"} exited ${code}: ${err}`)));
            p.stdout.once("data", () => resolve());
          }),
      ),
    );
    prober.stdin.on("error", () => undefined); // a prober gone is reported by probe()
    return new Pair(server, client, interfaces, backend, listeners, prober);
  }

  /** Connections from the client to each port of the server (through its k-th interface), all at once. */
  probe(family: 4 | 6, ports: number[], wait = 400, k = 0): Promise<Outcome[]> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.prober.exitCode !== null) return reject(new Error(`the prober in ${this.client.name} has exited`));
      this.pending.set(id, resolve);
      this.prober.stdin.write(`${JSON.stringify({ id, family, host: addressOn(family, "server", k), ports, wait })}\n`);
    });
  }

  /** Runs a script in the server namespace with that backend; a non-zero exit is an error. */
  async serverSh(backend: Backend, script: string, input?: string): Promise<string> {
    const r = await this.server.runAsync(backend, script, input);
    if (r.code !== 0) throw new Error(`${script} failed in ${this.server.name} (exit ${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  close(): void {
    for (const p of [...this.listeners, this.prober]) if (p.pid) p.kill();
    for (const ns of [this.server, this.client, this.backend]) ns.delete();
  }
}
