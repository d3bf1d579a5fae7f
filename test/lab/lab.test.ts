// The lab itself: hosts with both backends, users and sudo, listeners, probes, private files,
// the refusal to act outside a lab namespace, and teardown even when the run fails or is killed.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, type LabHost } from "./lab";

const sh = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
  new Promise<{ code: number; out: string }>((res) =>
    execFile(cmd, args, { env }, (err, stdout, stderr) =>
      res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    ),
  );
const namespaces = async () =>
  (await sh("ip", ["netns", "list"])).out
    .split("\n")
    .map((l) => l.split(" ")[0])
    .filter(Boolean);

describe("lab", () => {
  let lab: Lab;
  let nft: LabHost;
  let legacy: LabHost;
  beforeAll(async () => {
    lab = await Lab.create();
    [nft, legacy] = await Promise.all([
      lab.addHost({ backend: "nf_tables", listen: { tcp: [2222] } }),
      lab.addHost({
        backend: "legacy",
        persistence: "rhel",
        rules: { v4: "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 8080 -j DROP\nCOMMIT\n" },
      }),
    ]);
  });
  afterAll(() => lab?.destroy());

  it("gives each host its backend, its ruleset and a private /etc", async () => {
    expect((await nft.exec(["iptables", "--version"])).stdout).toMatch(/\(nf_tables\)/);
    expect((await legacy.exec(["ip6tables", "--version"])).stdout).toMatch(/\(legacy\)/);
    expect(await legacy.ruleset(4)).toContain("-A INPUT -p tcp -m tcp --dport 8080 -j DROP");
    expect(await nft.ruleset(4)).not.toContain("8080");
    await nft.sh("echo probe > /etc/iptables/lab-probe");
    expect(existsSync(`${nft.etcIptables}/lab-probe`)).toBe(true);
    expect(existsSync("/etc/iptables/lab-probe")).toBe(false);
    expect((await nft.exec(["sh", "-c", "command -v netfilter-persistent"])).code).toBe(0);
    expect((await legacy.exec(["sh", "-c", "command -v netfilter-persistent"])).code).not.toBe(0);
  });

  it("serves SSH for root by key, a NOPASSWD sudo user and one whose sudo wants a password", async () => {
    const ssh = (user: string, host: string, cmd: string) =>
      sh("ssh", [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-i",
        `${lab.dir}/client_ed25519`,
        `${user}@${host}`,
        cmd,
      ]);
    expect((await ssh("root", nft.v4, "id -u")).out.trim()).toBe("0");
    expect((await ssh("pit-ops", nft.v6, "sudo -n sh -c 'id -u'")).out.trim()).toBe("0");
    const nopw = await ssh("pit-nopw", legacy.v4, "sudo -n sh -c 'id -u'");
    expect(nopw.code).not.toBe(0);
    expect(nopw.out).toMatch(/password is required/);
  });

  it("probes like the guides: open, refused, and a timeout where a DROP rule stands", async () => {
    expect(await lab.probe(nft, 2222)).toBe("open");
    expect(await lab.probe(nft, 2222, { family: 6 })).toBe("open");
    expect(await lab.probe(nft, 2223)).toBe("refused");
    expect(await lab.probe(legacy, 8080, { timeoutSec: 1 })).toBe("timeout");
  });

  it("refuses to run anything when not inside the lab's workstation namespace", async () => {
    const env = { ...process.env, PIT_LAB_HOME_NETNS: (await sh("readlink", ["/proc/self/ns/net"])).out.trim() };
    const r = await sh(
      "npx",
      [
        "tsx",
        "-e",
        `require("${__dirname}/lab.ts").Lab.create().then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3); })`,
      ],
      env,
    );
    expect(r.code).toBe(3);
    expect(r.out).toMatch(/refusing to run/);
  });

  it("tears a run down when it fails, and removes what a killed run left behind", async () => {
    // The script prints its run and its host's sshd pid, then ends without destroying the lab.
    const script = `require("${__dirname}/lab.ts").Lab.create().then(async (lab) => { const h = await lab.addHost({ listen: { tcp: [2222] } }); console.log(process.env.PIT_LAB_RUN, "sshd", h.pid); process.exit(Number(process.env.HOW)); })`;
    // Alive: the process exists and is not a zombie waiting to be reaped.
    const running = (pid: number) =>
      existsSync(`/proc/${pid}/stat`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    const alive = async (pid: number) => {
      for (let i = 0; i < 40 && running(pid); i++) await new Promise((r) => setTimeout(r, 50));
      return running(pid);
    };
    // A run whose command fails: its wrapper removes everything at exit, processes included.
    const failed = await sh("bash", [`${__dirname}/in-lab.sh`, "npx", "tsx", "-e", script], {
      ...process.env,
      HOW: "1",
    });
    expect(failed.code).toBe(1);
    const run = failed.out.match(/pit-\d+/)![0];
    expect((await namespaces()).filter((n) => n.startsWith(`${run}-`))).toEqual([]);
    expect(await alive(Number(failed.out.match(/sshd (\d+)/)![1]))).toBe(false);
    expect((await sh("sh", ["-c", `ps -eo args= | grep -c "[s]shd .*/tmp/${run}/" || true`])).out.trim()).toBe("0");
    // A run killed with SIGKILL (no trap runs): the next run's start removes its leftovers.
    const kill = script.replace(
      "process.exit(Number(process.env.HOW))",
      "process.kill(Number(process.env.PIT_LAB_RUN.slice(4)), 'SIGKILL'); process.exit(0)",
    );
    expect(kill).not.toBe(script);
    const killed = await sh("bash", [`${__dirname}/in-lab.sh`, "npx", "tsx", "-e", kill]);
    const killedRun = killed.out.match(/pit-\d+/)?.[0];
    expect(killedRun).toBeDefined();
    const left = (await namespaces()).filter((n) => n.startsWith(`${killedRun}-`));
    expect(left.length).toBeGreaterThan(0);
    const killedSshd = Number(killed.out.match(/sshd (\d+)/)![1]);
    expect(running(killedSshd)).toBe(true);
    const next = await sh("bash", [`${__dirname}/in-lab.sh`, "true"]);
    expect(next.out).toMatch(/removing leftover/);
    expect((await namespaces()).filter((n) => n.startsWith(`${killedRun}-`))).toEqual([]);
    expect(await alive(killedSshd)).toBe(false);
  });
});
