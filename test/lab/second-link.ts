// A lab host's second interface (eth1) with a client namespace of its own on the other end, for
// hosts whose firewall treats interfaces differently (zones bound to interfaces). The client
// namespace is `<host>c1` (in-lab.sh removes it with the run's hosts if a test dies); it runs no
// process of its own: probes are one `nc` each.
import { execFile } from "node:child_process";
import type { Family, LabHost, ProbeResult } from "./lab";

function ip(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile("ip", args, { encoding: "utf8" }, (err, _out, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === "number"
          ? (err as { code: number }).code
          : -1
        : 0;
      resolve({ code, stderr });
    });
  });
}

async function must(args: string[]): Promise<void> {
  const r = await ip(args);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
}

export interface SecondLink {
  /** The interface's name inside the host. */
  readonly iface: "eth1";
  /** The host's addresses on eth1. */
  readonly v4: string;
  readonly v6: string;
  /** A TCP probe of the host's eth1 address from the client namespace: `nc -vz -w 2 addr port`. */
  probe(port: number, opts?: { family?: Family; timeoutSec?: number }): Promise<ProbeResult>;
  /** Removes the client namespace (and with it the link). */
  remove(): Promise<void>;
}

/** Links `host`'s new eth1 to a new client namespace: 198.19.<slot>.2/24 and fd00:5056:0:<slot>::2/64 on
 * the host, .1 and ::1 on the client, permanent neighbours both ways (a policy that drops neighbour
 * discovery must not decide a probe). */
export async function addSecondLink(host: LabHost): Promise<SecondLink> {
  const client = `${host.name}c1`;
  const dev = `pc${host.slot}`;
  const hex = host.slot.toString(16);
  const addr = {
    4: { host: `198.19.${host.slot}.2`, client: `198.19.${host.slot}.1`, len: 24 },
    6: { host: `fd00:5056:0:${hex}::2`, client: `fd00:5056:0:${hex}::1`, len: 64 },
  } as const;
  await must(["netns", "add", client]);
  await must(["link", "add", dev, "netns", client, "type", "veth", "peer", "name", "eth1", "netns", host.name]);
  for (const [ns, d, side] of [
    [host.name, "eth1", "host"],
    [client, dev, "client"],
  ] as const) {
    await must(["-n", ns, "addr", "add", `${addr[4][side]}/${addr[4].len}`, "dev", d]);
    await must(["-n", ns, "-6", "addr", "add", `${addr[6][side]}/${addr[6].len}`, "dev", d, "nodad"]);
    await must(["-n", ns, "link", "set", d, "up"]);
  }
  await must(["-n", client, "link", "set", "lo", "up"]);
  const mac = async (ns: string, d: string) => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile("ip", ["-n", ns, "-j", "link", "show", d], { encoding: "utf8" }, (e, o) => (e ? reject(e) : resolve(o))),
    );
    return JSON.parse(out)[0].address as string;
  };
  const hostMac = await mac(host.name, "eth1");
  const clientMac = await mac(client, dev);
  for (const f of [4, 6] as const) {
    const neigh = f === 4 ? ["neigh"] : ["-6", "neigh"];
    await must(["-n", client, ...neigh, "replace", addr[f].host, "lladdr", hostMac, "dev", dev, "nud", "permanent"]);
    await must([
      "-n",
      host.name,
      ...neigh,
      "replace",
      addr[f].client,
      "lladdr",
      clientMac,
      "dev",
      "eth1",
      "nud",
      "permanent",
    ]);
  }
  return {
    iface: "eth1",
    v4: addr[4].host,
    v6: addr[6].host,
    async probe(port, opts = {}) {
      const target = (opts.family ?? 4) === 4 ? addr[4].host : addr[6].host;
      const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(
          "ip",
          ["netns", "exec", client, "nc", "-vz", "-w", String(opts.timeoutSec ?? 2), target, String(port)],
          { encoding: "utf8" },
          (err, _o, stderr) => resolve({ code: err ? 1 : 0, stderr }),
        ),
      );
      if (r.code === 0) return "open";
      if (/refused/i.test(r.stderr)) return "refused";
      if (/timed out|in progress/i.test(r.stderr)) return "timeout";
      throw new Error(`nc ${target} ${port} from ${client}: unexpected result: ${r.stderr.trim()}`);
    },
    async remove() {
      await ip(["netns", "del", client]);
    },
  };
}
