// Lab hosts of other userlands: each runs its root filesystem's own sshd (or dropbear), iptables,
// sudo and shell, chrooted on a per-run overlay, so the cached root filesystem is never changed.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDRESSES_SCRIPT, parseAddresses } from "../../provider/host/addresses";
import { closeAll, getSession } from "../../provider/ssh";
import { Lab } from "./lab";
import type { LabHost, Userland } from "./lab";
import { rootfs } from "./rootfs";

const ssh = (lab: Lab, user: string, host: string, cmd: string) =>
  new Promise<{ code: number; out: string }>((res) =>
    execFile(
      "ssh",
      [
        ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"],
        ...["-o", "LogLevel=ERROR", "-i", `${lab.dir}/client_ed25519`, `${user}@${host}`, cmd],
      ],
      (err, stdout, stderr) =>
        res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    ),
  );

/** The first line an SSH server sends. */
const banner = (host: string) =>
  new Promise<string>((res, rej) => {
    const s = net.connect({ host, port: 22 });
    s.once("data", (d) => {
      s.destroy();
      res(d.toString("utf8").split("\r\n")[0]);
    });
    s.once("error", rej);
  });

// What each userland is: iptables version, and the SSH server's banner.
const EXPECT: Record<Exclude<Userland, "bookworm" | "sid">, { iptables: string; server: RegExp }> = {
  bullseye: { iptables: "1.8.7", server: /OpenSSH_8\.4/ },
  trixie: { iptables: "1.8.11", server: /OpenSSH_10\./ },
  embedded: { iptables: "1.8.9", server: /dropbear_2022\.83/ },
};

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create();
});
afterAll(async () => {
  await closeAll();
  lab?.destroy();
});

describe.each(Object.keys(EXPECT) as (keyof typeof EXPECT)[])("userland %s", (userland) => {
  let nft: LabHost;
  let legacy: LabHost;
  beforeAll(async () => {
    [nft, legacy] = await Promise.all([
      lab.addHost({ userland, listen: { tcp: [2222] } }),
      lab.addHost({
        userland,
        backend: "legacy",
        persistence: "rhel",
        rules: { v4: "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 8080 -j DROP\nCOMMIT\n" },
      }),
    ]);
  });

  it("runs its own iptables in both backends, its own SSH server, and writes only into its overlay", async () => {
    const want = EXPECT[userland];
    expect((await nft.exec(["iptables", "--version"])).stdout.trim()).toMatch(
      new RegExp(`^iptables v${want.iptables.replace(/\./g, "\\.")} \\(nf_tables\\)`),
    );
    expect((await legacy.exec(["ip6tables", "--version"])).stdout.trim()).toMatch(
      new RegExp(`^ip6tables v${want.iptables.replace(/\./g, "\\.")} \\(legacy\\)`),
    );
    expect(await banner(nft.v4)).toMatch(want.server);
    expect(await legacy.ruleset(4)).toContain("-A INPUT -p tcp -m tcp --dport 8080 -j DROP");
    expect(await nft.ruleset(4)).not.toContain("8080");
    await nft.sh("echo probe > /etc/iptables/lab-probe");
    expect(existsSync(`${nft.etcIptables}/lab-probe`)).toBe(true);
    expect(existsSync(join(rootfs(userland), "etc/iptables/lab-probe"))).toBe(false);
    expect(await lab.probe(nft, 2222)).toBe("open");
    expect(await lab.probe(nft, 2222, { family: 6 })).toBe("open");
    expect(await lab.probe(legacy, 8080, { timeoutSec: 1 })).toBe("timeout");
  });

  it("serves SSH by key as the host's own users see it", async () => {
    expect((await ssh(lab, "root", nft.v4, "id -u")).out.trim()).toBe("0");
    if (userland === "embedded") {
      // busybox ash as /bin/sh, and none of the tools a full distribution has.
      const r = await ssh(
        lab,
        "root",
        nft.v6,
        "readlink /bin/sh; for t in ss sudo flock; do command -v $t || echo no-$t; done",
      );
      expect(r.out.trim().split("\n")).toEqual(["/bin/busybox", "no-ss", "no-sudo", "no-flock"]);
      return;
    }
    expect((await ssh(lab, "pit-ops", nft.v6, "sudo -n sh -c 'id -u'")).out.trim()).toBe("0");
    const nopw = await ssh(lab, "pit-nopw", legacy.v4, "sudo -n sh -c 'id -u'");
    expect(nopw.code).not.toBe(0);
    expect(nopw.out).toMatch(/password is required/);
  });

  it("tells the provider its addresses (the listing's script, under its own sh) and the interface SSH arrives on", async () => {
    const found = parseAddresses(await nft.sh(ADDRESSES_SCRIPT));
    expect(found[4]).toContain(nft.v4);
    expect(found[6]).toContain(nft.v6);
    // The origin command runs in the login shell (busybox ash on the embedded host), its route through ip.
    const connection = {
      ...nft.connection("root", 4),
      dialErrorLimit: 10,
      perDialTimeout: 15,
      maxConcurrentDials: 8,
      sudo: false,
    };
    const origin = await getSession(connection).origin();
    expect(origin).toMatchObject({ serverAddress: nft.v4, serverPort: 22, inInterface: "eth0" });
  });

  it("switches backends as an operator would, leaving the kernel's tables as they are", async () => {
    await legacy.switchBackend("nf_tables");
    expect((await legacy.exec(["iptables", "--version"])).stdout).toMatch(/nf_tables/);
    expect(await legacy.ruleset(4)).not.toContain("8080");
    expect((await legacy.exec(["iptables-legacy-save"])).stdout).toContain("--dport 8080 -j DROP");
    await legacy.switchBackend("legacy");
    expect(await legacy.ruleset(4)).toContain("--dport 8080 -j DROP");
  });
});
