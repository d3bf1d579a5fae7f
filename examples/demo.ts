// `npm run demo`: the main job on an embedded default. Brings up a lab host (a default-deny
// firewall that lets SSH and the app ports 8000-8100 in), then runs the example program
// (examples/index.ts) through the real pulumi CLI: preview, up, traffic probes, refresh with
// counters, destroy; and prints what happens at each step.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { Lab } from "../test/lab/lab";
import type { LabHost } from "../test/lab/lab";
import { PulumiProject, ROOT } from "../test/pulumi";

const FIREWALL = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 8000:8100 -j ACCEPT
COMMIT
`;

const step = (title: string) => console.log(`\n=== ${title}`);
const show = (text: string) => console.log(text.replace(/^/gm, "  ").trimEnd());

async function probes(lab: Lab, host: LabHost): Promise<void> {
  for (const port of [2222, 8080]) {
    const v4 = await lab.probe(host, port, { timeoutSec: 2 });
    const v6 = await lab.probe(host, port, { family: 6, timeoutSec: 2 });
    console.log(`  nc -vz -w 2 ${host.v4} ${port}: ${v4}    nc -vz -w 2 ${host.v6} ${port}: ${v6}`);
  }
}

async function main(): Promise<void> {
  const lab = await Lab.create();
  let project: PulumiProject | undefined;
  try {
    step("lab host: a default-deny firewall (SSH and app ports 8000-8100 allowed), services on 2222 and 8080");
    const host = await lab.addHost({
      backend: "nf_tables",
      rules: { v4: FIREWALL, v6: FIREWALL },
      listen: { tcp: [2222, 8080] },
    });
    show(await host.ruleset(4));
    await probes(lab, host);

    const program = ts.transpileModule(readFileSync(join(ROOT, "examples/index.ts"), "utf8"), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    const conn = host.connection();
    project = await PulumiProject.create("iptables-demo", {
      files: { "Pulumi.yaml": readFileSync(join(ROOT, "Pulumi.yaml"), "utf8"), "index.js": program },
      withPackage: true,
      config: { "iptables-demo:host": conn.host, "iptables-demo:privateKey": { value: conn.privateKey, secret: true } },
    });

    const run = async (title: string, args: string[]) => {
      step(title);
      const r = await project!.pulumi(args);
      show(r.stdout);
      if (r.code !== 0) throw new Error(`pulumi ${args[0]} failed:\n${r.stderr}`);
    };
    await run("pulumi preview: allow tcp 2222, block tcp 8080, IPv4 and IPv6", ["preview", "--diff"]);
    await run("pulumi up", ["up", "--yes", "--skip-preview"]);
    step("the host's INPUT chain now");
    show((await host.iptables(4, ["-S", "INPUT"])).stdout);
    step("traffic probes from the client namespace: 2222 now open, 8080 now dropped");
    await probes(lab, host);
    await run("pulumi refresh: counters of the rules that the probes hit", [
      "refresh",
      "--yes",
      "--skip-preview",
      "--suppress-outputs",
    ]);
    // Refresh updates the resources' state (stack outputs change only with the next `up`).
    for (const r of await project.resources()) {
      const o = r.outputs;
      console.log(
        `  ${r.urn.split("::").pop()}: packets ${JSON.stringify(o.counters)}, line ${JSON.stringify(o.line)}, effective ${o.effective}`,
      );
    }
    await run("pulumi destroy: exactly our two rules are removed", ["destroy", "--yes", "--skip-preview"]);
    show(await host.ruleset(4));
    await probes(lab, host);
    console.log("\ndemo: done");
  } finally {
    project?.remove();
    await lab.destroy();
  }
}

main().catch((err) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
});
