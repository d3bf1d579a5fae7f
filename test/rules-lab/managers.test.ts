/**
 * Issue 23: placement judged by the kernel on rulesets real firewall managers wrote. Each fixture of
 * test/fixtures/managers/ (captured by scripts/capture-managers.ts from Shorewall, ferm + fail2ban,
 * the CNI portmap plugin, ... run for real in lab namespaces) is loaded as captured (every table of
 * both backends and both families) into a fresh server namespace with the fixture's interfaces
 * (test/rules-lab/pair.ts: the k-th on 198.18.k.2 and fd00:18:0:k::2, as in the capture; bk0 is the
 * pair's link to its BACKEND, where the fixtures' DNAT rules send packets). For each PortRule case
 * (ports the tool opens, closes, rejects, DNATs or REDIRECTs and ports it leaves to its policy; ACCEPT,
 * DROP and REJECT; each family the fixture has) the rule is rendered, placed with placeRule (the
 * interfaces, the nat table and the other backend's tables as inputs, as the host listing gives them),
 * inserted there in the backend the namespace's `iptables` uses, and real TCP connections from the
 * client namespace on EVERY interface say what the kernel does with the first packet. As in
 * placement.test.ts: each kernel verdict is one the model allows, shadowing() agrees with the model,
 * and where placeRule says effective every port on every interface gets the rule's verdict.
 * Every disagreement is collected and printed (fixture, rule, placement, kernel and model per
 * interface) before the test fails.
 *   bash test/lab/in-lab.sh npx vitest run test/rules-lab/managers.test.ts
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Backend,
  check,
  type OtherBackend,
  parseRuleset,
  type Placement,
  placeRule,
  possibleVerdicts,
  renderRule,
  ruleText,
  shadowing,
  makeTag,
  type Ruleset,
} from "../../provider/rules";
import { insertRuleText } from "../fixtures/listing";
import { deleteAll, labUnavailable, tools } from "./netns";
import { type Outcome, Pair } from "./pair";

type Family = 4 | 6;
type Action = "ACCEPT" | "DROP" | "REJECT";
interface Case {
  /** One port, or several (one rule with -m multiport). */
  port: number | number[];
  action: Action;
  /** What the tool does with the port, for the record. */
  why: string;
}

const FIXTURES = join(__dirname, "..", "fixtures", "managers");

const CASES: Record<string, Case[]> = {
  "shorewall-one-interface": [
    { port: 8080, action: "DROP", why: "net-fw accepts it (shorewall and shorewall6)" },
    { port: 8081, action: "ACCEPT", why: "net's policy drops it (net-fw ends in DROP)" },
    { port: 8082, action: "ACCEPT", why: "net-fw rejects it (-g reject) on IPv4" },
    { port: 8085, action: "ACCEPT", why: "net-fw accepts it only when REDIRECTed from 8086 (--ctorigdstport)" },
    { port: 8086, action: "DROP", why: "nat REDIRECTs it to 8085 on eth0 (IPv4)" },
    { port: 8087, action: "REJECT", why: "net's policy drops it" },
    { port: [8080, 8081, 8086], action: "ACCEPT", why: "net-fw accepts one, drops one, REDIRECTs one" },
  ],
  // the same example on a host whose iptables is the legacy one: CASES["shorewall-one-interface"] below
  "shorewall-two-interfaces": [
    { port: 8080, action: "DROP", why: "net-fw accepts it; loc-fw rejects it" },
    { port: 8081, action: "DROP", why: "loc-fw accepts it; net-fw drops it" },
    { port: 8081, action: "ACCEPT", why: "net-fw drops it; loc-fw accepts it" },
    { port: 8082, action: "ACCEPT", why: "loc-fw drops it; net-fw drops it" },
    { port: 8083, action: "DROP", why: "net's 8083 is DNAT-ed to the loc host behind bk0 (IPv4)" },
    { port: 8083, action: "ACCEPT", why: "net's 8083 is DNAT-ed to the loc host behind bk0 (IPv4)" },
    { port: 8084, action: "REJECT", why: "left to the policies (net DROP, loc REJECT)" },
    { port: [8080, 8081, 8082], action: "DROP", why: "net-fw accepts one, loc-fw one, loc-fw drops one" },
    { port: [8081, 8083], action: "ACCEPT", why: "loc-fw accepts one, net DNATs the other" },
  ],
  "shorewall-three-interfaces": [
    { port: 8080, action: "DROP", why: "net-fw accepts it; loc and dmz reject it" },
    { port: 8081, action: "ACCEPT", why: "dmz accepts it; net drops it, loc rejects it" },
    { port: 8081, action: "DROP", why: "dmz accepts it; net drops it, loc rejects it" },
    { port: 8082, action: "REJECT", why: "left to the policies; loc's 8084 is DNAT-ed to the dmz host's 8082" },
    { port: 8083, action: "DROP", why: "net's 8083 is DNAT-ed to the dmz host (behind bk0)" },
    { port: 8084, action: "ACCEPT", why: "loc's 8084 is DNAT-ed to the dmz host's 8082" },
    { port: [8080, 8081, 8083], action: "ACCEPT", why: "one per zone" },
  ],
  "shorewall-universal": [
    { port: 8081, action: "DROP", why: "net (every interface, -i +) accepts it" },
    { port: 8080, action: "ACCEPT", why: "net's policy drops it" },
    { port: 8082, action: "REJECT", why: "net's policy drops it" },
  ],
  "ferm-fail2ban": [
    { port: 8080, action: "DROP", why: "ferm (legacy) accepts it" },
    { port: 8081, action: "ACCEPT", why: "ferm (legacy) accepts it on eth0 only, its policy drops it on eth1" },
    { port: 8082, action: "ACCEPT", why: "ferm's (legacy) policy drops it" },
    { port: 8090, action: "DROP", why: "fail2ban's jail (nf_tables) rejects only a banned address; ferm drops it" },
    { port: 8090, action: "ACCEPT", why: "ferm's (legacy) policy drops it; fail2ban bans one address" },
  ],
  "ferm-interfaces": [
    { port: 8080, action: "ACCEPT", why: "from-wan (eth0) accepts it, from-lan (eth1, eth2) rejects it" },
    { port: 8080, action: "DROP", why: "from-wan (eth0) accepts it, from-lan (eth1, eth2) rejects it" },
    { port: 8081, action: "ACCEPT", why: "from-wan (eth0) drops it, from-lan accepts it" },
    { port: 8082, action: "DROP", why: "from-lan accepts it on every eth+ (eth0 reaches from-lan after from-wan)" },
    { port: 8083, action: "ACCEPT", why: "from-lan returns it, then the policy drops it (legacy)" },
    { port: 8084, action: "ACCEPT", why: "INPUT rejects it with a reset (legacy)" },
    { port: [8080, 8081, 8082], action: "REJECT", why: "each decided differently per interface" },
  ],
  "cni-portmap": [
    { port: 8085, action: "DROP", why: "portmap DNATs hostPort 8085 to the container (bk0) 8086" },
    { port: 8085, action: "ACCEPT", why: "portmap DNATs hostPort 8085 to the container (bk0) 8086" },
    { port: 8086, action: "DROP", why: "the container's port, not published on the host" },
    { port: 8087, action: "REJECT", why: "nothing mentions it" },
    { port: [8085, 8086, 8087], action: "DROP", why: "one published by portmap, two not" },
  ],
  "firewalld-zones": [
    { port: 9090, action: "DROP", why: "public (eth0) accepts it; internal (eth1) rejects it" },
    { port: 8080, action: "ACCEPT", why: "public (eth0) rejects it; internal (eth1) accepts it" },
    { port: 8080, action: "DROP", why: "internal (eth1) accepts it; public (eth0) rejects it" },
    { port: 8081, action: "REJECT", why: "internal (eth1) accepts it; public (eth0) rejects it" },
    {
      port: 8083,
      action: "DROP",
      why: "public forward-ports it to the host behind bk0 (eth0, IPv4); internal rejects it",
    },
    {
      port: 8083,
      action: "ACCEPT",
      why: "public forward-ports it to the host behind bk0 (eth0, IPv4); internal rejects it",
    },
    { port: 8084, action: "ACCEPT", why: "every zone rejects it" },
    { port: 8092, action: "DROP", why: "internal (eth1) accepts 8090-8095; public (eth0) and block (wan0) reject it" },
    {
      port: 8092,
      action: "ACCEPT",
      why: "internal (eth1) accepts 8090-8095; public (eth0) and block (wan0) reject it",
    },
    { port: 8085, action: "ACCEPT", why: "a rich rule in public (eth0) rejects it (IPv4) or drops it (IPv6)" },
    {
      port: 8085,
      action: "DROP",
      why: "a rich rule in public drops it on eth0 (IPv6), rejects it (IPv4); internal rejects it",
    },
  ],
  "ufw-interfaces": [
    { port: 8080, action: "DROP", why: "ufw accepts it in on eth0 only; its policy drops it on eth1" },
    { port: 8080, action: "ACCEPT", why: "ufw accepts it in on eth0 only; its policy drops it on eth1" },
    { port: 8081, action: "ACCEPT", why: "ufw drops it in on eth1, accepts it on the others (eth0)" },
    { port: 8081, action: "DROP", why: "ufw accepts it on eth0; drops it in on eth1" },
    { port: 8082, action: "ACCEPT", why: "ufw rejects it in on eth1 (tcp-reset); its policy drops it on eth0" },
    { port: 9090, action: "DROP", why: "ufw accepts it in on eth1 only" },
    { port: 8084, action: "REJECT", why: "left to ufw's policy (DROP)" },
  ],
  "docker-publish": [
    {
      port: 8088,
      action: "DROP",
      why: "Docker DNATs it to the container, on eth0's address only (-p 198.18.0.2:8088:8088)",
    },
    {
      port: 8088,
      action: "ACCEPT",
      why: "Docker DNATs it on eth0's address only; eth1's address reaches INPUT (policy ACCEPT)",
    },
    { port: 8089, action: "DROP", why: "Docker DNATs it to the container on every address, both families" },
    { port: 8089, action: "REJECT", why: "Docker DNATs it to the container on every address, both families" },
    { port: 8087, action: "DROP", why: "nothing mentions it (INPUT policy ACCEPT)" },
  ],
};

/** A case's ports, in order. */
const portsOf = (c: Case) => [c.port].flat();
CASES["shorewall-one-interface-legacy"] = CASES["shorewall-one-interface"];
const POOL = [...new Set(Object.values(CASES).flatMap((cs) => cs.flatMap(portsOf)))].sort((a, b) => a - b);
const TAG = makeTag({ project: "lab", stack: "managers", name: "placed" }, "m4n4g3r5");
const KERNEL: Record<Outcome, string> = { open: "ACCEPT", refused: "REJECT", timeout: "DROP" };
const EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

interface Fixture {
  name: string;
  /** The interfaces probed and judged: the fixture's, without bk0 (the pair's own link to its backend). */
  interfaces: string[];
  /** The backend the sample's namespace ran `iptables` with (sample.sh says): where placement puts the rule. */
  backend: Backend;
  /** The other backend (its tables, where the capture holds any, are the host's other backend). */
  second: Backend;
  /** The host's own addresses by family (every interface's, bk0's too), without their prefix lengths. */
  addresses: Record<Family, string[]>;
  /** `<backend>-ipv<family>` -> iptables-save text, for those the capture holds. */
  saves: Map<string, string>;
}

function fixtures(): Fixture[] {
  return readdirSync(FIXTURES)
    .filter((name) => existsSync(join(FIXTURES, name, "interfaces.json")))
    .map((name) => {
      const dir = join(FIXTURES, name);
      const byInterface: Record<string, string[]> = JSON.parse(readFileSync(join(dir, "interfaces.json"), "utf8"));
      const all = Object.keys(byInterface);
      const own = Object.values(byInterface)
        .flat()
        .map((a) => a.split("/")[0]);
      const addresses = { 4: own.filter((a) => !a.includes(":")), 6: own.filter((a) => a.includes(":")) };
      const saves = new Map(
        readdirSync(dir)
          .filter((f) => f.endsWith(".save"))
          .map((f) => [f.replace(/\.save$/, ""), readFileSync(join(dir, f), "utf8")] as const),
      );
      const backend = /^# backend: (nf_tables|legacy)$/m.exec(
        readFileSync(join(dir, "sample.sh"), "utf8"),
      )?.[1] as Backend;
      if (!backend) throw new Error(`${dir}/sample.sh does not say the sample's backend (# backend: ...)`);
      const second: Backend = backend === "legacy" ? "nf_tables" : "legacy";
      return { name, interfaces: all.filter((i) => i !== "bk0"), backend, second, addresses, saves };
    });
}

const ALL = fixtures();
const pairs = new Map<string, Pair>();
const disagreements: string[] = [];
const stats = { cases: 0, lines: 0, probes: 0, effective: 0, seconds: 0 };

beforeAll(async () => {
  const why = labUnavailable();
  if (why) throw new Error(`the managers lab cannot run: ${why}`);
  for (const f of ALL) pairs.set(f.name, await Pair.create(POOL, f.interfaces));
}, 120_000);

afterAll(() => {
  for (const p of pairs.values()) p.close();
  deleteAll();
  console.log(`managers placement: ${JSON.stringify(stats)}`);
});

function argvOf(c: Case, family: Family): string[] {
  const { inputs, failures } = check(
    {},
    {
      connection: { host: "198.18.0.2" },
      port: c.port,
      action: c.action,
      ipVersion: family === 4 ? "ipv4" : "ipv6",
    },
  );
  if (failures.length) throw new Error(`bad case: ${JSON.stringify(failures)}`);
  return renderRule(inputs as never, family, TAG);
}

/** Loads a fixture's tables of one family into both backends of the server (an empty filter table
 * in the primary backend where the tool wrote none: the rule's insert makes one). */
async function load(pair: Pair, f: Fixture, family: Family): Promise<void> {
  const { restore } = tools(family);
  for (const backend of [f.backend, f.second]) {
    const text = f.saves.get(`${backend}-ipv${family}`);
    if (text) await pair.serverSh(backend, restore, text);
  }
  if (!/^\*filter$/m.test(f.saves.get(`${f.backend}-ipv${family}`) ?? ""))
    await pair.serverSh(f.backend, restore, EMPTY_FILTER);
}

/** The host's view the provider would list: the primary backend's tables, and the other's when it holds any. */
async function hostView(pair: Pair, f: Fixture, family: Family) {
  const { save } = tools(family);
  const primary = parseRuleset(await pair.serverSh(f.backend, save));
  const other: OtherBackend | undefined = f.saves.has(`${f.second}-ipv${family}`)
    ? { backend: f.second, ruleset: parseRuleset(await pair.serverSh(f.second, save)) }
    : undefined;
  const nat: Ruleset | undefined = primary.tables.has("nat") ? primary : undefined;
  return { backend: f.backend, primary, nat, other, interfaces: f.interfaces, addresses: f.addresses[family] };
}

/** What the kernel does with each port, through each interface: [interface][port]. */
async function probeAll(pair: Pair, family: Family, ports: number[]): Promise<string[][]> {
  const out: string[][] = [];
  for (let k = 0; k < pair.interfaces.length; k++)
    out.push((await pair.probe(family, ports, 400, k)).map((o) => KERNEL[o]));
  return out;
}

/** Where the rule is judged: where placeRule puts it, and at the end of INPUT (where a rule appended
 * by hand lands: below every zone dispatch, the place issue 23 found called effective wrongly). */
async function runCase(pair: Pair, f: Fixture, family: Family, c: Case): Promise<void> {
  const { save } = tools(family);
  const argv = argvOf(c, family);
  const host = await hostView(pair, f, family);
  const base = await pair.serverSh(f.backend, `${save} -t filter`);
  const request = {
    table: "filter",
    chain: "INPUT",
    rule: argv,
    nat: host.nat,
    other: host.other,
    addresses: host.addresses,
  };
  const placed = placeRule(host.primary, { ...request, interfaces: host.interfaces });
  const end = host.primary.tables.get("filter")!.chains.get("INPUT")!.rules.length + 1;
  stats.cases++;
  for (const line of [...new Set([placed.line, end])]) {
    const problems = await judgeAt(pair, host, family, c, base, line, line === placed.line ? placed : undefined);
    if (problems.length) {
      const where = line === placed.line ? "where placeRule puts it" : "at the end of INPUT";
      disagreements.push(
        `${f.name} ipv${family}: ${c.action} tcp ${portsOf(c).join(",")} (${c.why}), at INPUT line ${line} ${where}\n` +
          `  rule: ${ruleText("INPUT", argv)}\n  placeRule: line ${placed.line}, effective ${placed.effective}: ${placed.reason}\n` +
          `  ${problems.join("\n  ")}\n  ruleset: test/fixtures/managers/${f.name}/*-ipv${family}.save`,
      );
    }
  }
}

/** The rule inserted at `line`: what the kernel does on each interface against what the model says;
 * the disagreements, in words. `placed`: placeRule's answer, when it chose this line. */
async function judgeAt(
  pair: Pair,
  host: Awaited<ReturnType<typeof hostView>>,
  family: Family,
  c: Case,
  base: string,
  line: number,
  placed?: Placement,
): Promise<string[]> {
  const { restore } = tools(family);
  const argv = argvOf(c, family);
  const withOurs = insertRuleText(base, "filter", "INPUT", line, ruleText("INPUT", argv));
  await pair.serverSh(host.backend, restore, withOurs);
  const kernel = await probeAll(pair, family, portsOf(c));
  await pair.serverSh(host.backend, restore, base);
  const request = {
    table: "filter",
    chain: "INPUT",
    rule: argv,
    line,
    nat: host.nat,
    other: host.other,
    addresses: host.addresses,
  };
  // Packets DNAT-ed to the backend go through FORWARD to a listening port: ACCEPT, as placement.test.ts counts them.
  const model = host.interfaces.map((i) => {
    const judged = possibleVerdicts(host.primary, { ...request, interfaces: [i] }).filter((m) => m.arrival === i);
    return portsOf(c).map((p) => [
      ...new Set(
        judged.filter((m) => m.port === p).flatMap((m) => m.verdicts.map((x) => (x === "FORWARD" ? "ACCEPT" : x))),
      ),
    ]);
  });
  const shadow = shadowing(parseRuleset(withOurs), {
    table: "filter",
    chain: "INPUT",
    line,
    interfaces: host.interfaces,
    nat: host.nat,
    other: host.other,
    addresses: host.addresses,
  });
  stats.lines++;
  const problems: string[] = [];
  for (const [k, i] of host.interfaces.entries())
    for (const [j, p] of portsOf(c).entries()) {
      stats.probes++;
      if (!model[k][j].includes(kernel[k][j]))
        problems.push(
          `${p} on ${i}: the kernel says ${kernel[k][j]}, the model allows ${model[k][j].join("|") || "nothing"}`,
        );
    }
  const effective = model.every((perPort) => perPort.every((vs) => vs.length > 0 && vs.every((v) => v === c.action)));
  if ((shadow === undefined) !== effective)
    problems.push(
      `shadowing() says ${shadow ? `shadowed: ${shadow.why}` : "effective"}, the model says effective ${effective}`,
    );
  if (placed && placed.effective !== effective)
    problems.push(`placeRule says effective ${placed.effective}, the model at its line ${effective}`);
  if (placed?.effective) {
    stats.effective++;
    const wrong = host.interfaces.filter((_, k) => kernel[k].some((v) => v !== c.action));
    if (wrong.length) problems.push(`placed effective, but the kernel does not ${c.action} on ${wrong.join(", ")}`);
  }
  if (problems.length) {
    const each = (say: (k: number, j: number) => string) =>
      host.interfaces
        .map(
          (i, k) =>
            `${i} ${portsOf(c)
              .map((p, j) => `${p} ${say(k, j)}`)
              .join(", ")}`,
        )
        .join("; ");
    problems.unshift(`kernel: ${each((k, j) => kernel[k][j])}; model: ${each((k, j) => model[k][j].join("|"))}`);
  }
  return problems;
}

describe("placement on rulesets real firewall managers wrote, judged by the kernel", () => {
  it(`${ALL.map((f) => f.name).join(", ")}: every case, both families where captured`, async () => {
    const started = Date.now();
    expect(ALL.map((f) => f.name).sort()).toEqual(Object.keys(CASES).sort());
    await Promise.all(
      ALL.map(async (f) => {
        const pair = pairs.get(f.name)!;
        for (const family of [4, 6] as const) {
          if (![f.backend, f.second].some((b) => f.saves.has(`${b}-ipv${family}`))) continue;
          await load(pair, f, family);
          for (const c of CASES[f.name]) await runCase(pair, f, family, c);
        }
      }),
    );
    stats.seconds = Math.round((Date.now() - started) / 1000);
    if (disagreements.length)
      console.log(`${disagreements.length} disagreements of kernel and model:\n\n${disagreements.join("\n\n")}`);
    expect(disagreements, "kernel and model agree on every case").toEqual([]);
    expect(stats.cases).toBeGreaterThan(30);
  }, 300_000);
});
