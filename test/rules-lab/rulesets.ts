/**
 * Generated filter rulesets for the kernel-differential placement test: realistic fragments
 * (ufw's own ruleset as ufw writes it, fail2ban-, firewalld-iptables- and kube-proxy-like chains)
 * plus random rules: jumps, gotos and RETURNs into acyclic user chains; conntrack, addrtype, limit
 * and LOG rules; source bans and admin allows; negations; port ranges and lists; per-source
 * matches; policies ACCEPT and DROP; rules naming the server's own addresses (`-d`, Docker publishing
 * on one of them, a DNAT to another). Nothing names the client's address (198.18.0.1 / fd00:18::1)
 * or the server's interface (vlab0): the client is an ordinary client.
 */
import fc from "fast-check";
import { check, renderRule } from "../../provider/rules";
import type { Backend } from "./netns";
import { addressOn } from "./pair";
import { readFamilyFile } from "../fixtures/captures";

export type Family = 4 | 6;
/** Ports the server listens on; the rules' ports are drawn around them. */
export const POOL = [22, 80, 443, 2222, 3306, 8000, 8080, 8100, 8443, 9000, 9090, 9100] as const;

export interface OurRule {
  chain: string;
  ports: number[];
  action: "ACCEPT" | "DROP" | "REJECT";
  rejectWith?: "tcp-reset";
  /** The client's own address or network (never narrower than the rules that name it). */
  source?: string;
  /** The interface the rule names (`eth1`, `eth+`), on hosts with several. */
  inInterface?: string;
}

export interface Case {
  family: Family;
  template: string;
  policy: "ACCEPT" | "DROP";
  /** Chains in order (INPUT first), each with its `-A` lines. */
  chains: { name: string; rules: string[] }[];
  ours: OurRule;
  /** Lines (1-based, taken modulo the chain's length + 1) where shadowing() is checked as well. */
  probes: number[];
  /** The nat table's user chains and `-A` lines (PREROUTING's DNAT to the lab's backend, REDIRECT). */
  nat: { chains: string[]; rules: string[] };
  /** The filter table loaded with the other backend (ferm on legacy beside fail2ban on nf_tables), and
   * its nat PREROUTING rules (the kernel runs both backends' nat hooks). */
  other: { policy: "ACCEPT" | "DROP"; chains: string[]; rules: string[]; nat: string[] };
}

/** The other backend's filter and nat tables as iptables-restore reads them (empty ones clear the last case's). */
export function otherText(c: Case): string {
  const { policy, chains, rules, nat } = c.other;
  const head = [`:INPUT ${policy} [0:0]`, ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"];
  const natHead = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"].map((n) => `:${n} ACCEPT [0:0]`);
  return [
    ...["*filter", ...head, ...chains.map((n) => `:${n} - [0:0]`), ...rules, "COMMIT"],
    ...["*nat", ...natHead, ...nat, "COMMIT", ""],
  ].join("\n");
}

/** The other backend's nat PREROUTING: nothing, a DNAT of one of our ports to the backend, a REDIRECT of it. */
function otherNatOf(kind: number, f: Family, port: number, other: number): string[] {
  const tcp = "-p tcp -m tcp --dport";
  if (kind === 1) return [`-A PREROUTING ${tcp} ${port} -j DNAT --to-destination ${backendAt(f)}`];
  if (kind === 2) return [`-A PREROUTING ${tcp} ${port} -j REDIRECT --to-ports ${other}`];
  return [];
}

/**
 * What the other backend holds: nothing, a ferm-like policy DROP that admits a few ports, a
 * fail2ban-like chain for two ports that bans other hosts, a DROP or REJECT of one of our ports.
 */
function otherOf(kind: number, f: Family, port: number, other: number): Omit<Case["other"], "nat"> {
  const tcp = "-p tcp -m tcp --dport";
  switch (kind) {
    case 1:
      return {
        policy: "DROP",
        chains: [],
        rules: [
          "-A INPUT -i lo -j ACCEPT",
          "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          `-A INPUT -p tcp -m multiport --dports 22,${other} -j ACCEPT`,
        ],
      };
    case 2:
      return {
        policy: "ACCEPT",
        chains: ["f2b-lab"],
        rules: [
          `-A INPUT -p tcp -m multiport --dports ${port},${other} -j f2b-lab`,
          `-A f2b-lab -s ${otherHost(f, 9)} -j REJECT --reject-with ${rejectDefault(f)}`,
          "-A f2b-lab -j RETURN",
        ],
      };
    case 3:
      return { policy: "ACCEPT", chains: [], rules: [`-A INPUT ${tcp} ${port} -j DROP`] };
    case 4:
      return { policy: "ACCEPT", chains: [], rules: [`-A INPUT ${tcp} ${other} -j REJECT --reject-with tcp-reset`] };
    default:
      return { policy: "ACCEPT", chains: [], rules: [] };
  }
}

/** The nat table as iptables-restore reads it (empty chains too: restoring it clears the last case's). */
export function natText(c: Case): string {
  const builtin = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"].map((n) => `:${n} ACCEPT [0:0]`);
  return ["*nat", ...builtin, ...c.nat.chains.map((n) => `:${n} - [0:0]`), ...c.nat.rules, "COMMIT", ""].join("\n");
}

/** The backend namespace's address (./pair, BACKEND) as DNAT's --to-destination names it, with a port or not. */
const backendAt = (f: Family, port?: number) =>
  f === 4 ? `198.19.250.2${port ? `:${port}` : ""}` : port ? `[fd00:19:250::2]:${port}` : "fd00:19:250::2";

/**
 * nat PREROUTING as the tools that DNAT write it: nothing, a DNAT of one of our ports to the backend,
 * a REDIRECT of it to another port of the server, Docker's chain (`! -i docker0`, to another port),
 * a zone's DNAT bound to eth1, a REDIRECT bound to eth+ below an ACCEPT that keeps one port as it is,
 * Docker publishing on the server's first address only (`-p ADDR:PORT:...`), a DNAT to another port of
 * the server's second address (its first on a server with one interface).
 */
function natOf(kind: number, f: Family, port: number, other: number, many: boolean): Case["nat"] {
  const tcp = "-p tcp -m tcp --dport";
  switch (kind) {
    case 1:
      return { chains: [], rules: [`-A PREROUTING ${tcp} ${port} -j DNAT --to-destination ${backendAt(f)}`] };
    case 2:
      return { chains: [], rules: [`-A PREROUTING ${tcp} ${port} -j REDIRECT --to-ports ${other}`] };
    case 3:
      return {
        chains: ["DOCKER"],
        rules: [
          "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
          "-A DOCKER -i docker0 -j RETURN",
          `-A DOCKER ! -i docker0 ${tcp} ${port} -j DNAT --to-destination ${backendAt(f, other)}`,
        ],
      };
    case 4:
      return {
        chains: ["NAT-ZONE"],
        rules: [
          "-A PREROUTING -i eth1 -j NAT-ZONE",
          `-A NAT-ZONE -p tcp -m multiport --dports ${port},${other} -j DNAT --to-destination ${backendAt(f)}`,
        ],
      };
    case 5:
      return {
        chains: [],
        rules: [
          `-A PREROUTING ${tcp} ${other} -j ACCEPT`,
          `-A PREROUTING -i eth+ ${tcp} ${port} -j REDIRECT --to-ports ${other}`,
        ],
      };
    case 6:
      return {
        chains: ["DOCKER"],
        rules: [
          "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
          `-A DOCKER -d ${serverHost(f, 0)} ! -i docker0 ${tcp} ${port} -j DNAT --to-destination ${backendAt(f, other)}`,
        ],
      };
    case 7: {
      const to = addressOn(f, "server", many ? 1 : 0);
      return {
        chains: [],
        rules: [`-A PREROUTING ${tcp} ${port} -j DNAT --to-destination ${f === 4 ? to : `[${to}]`}:${other}`],
      };
    }
    default:
      return { chains: [], rules: [] };
  }
}

const v = (f: Family, v4: string, v6: string) => (f === 4 ? v4 : v6);
const otherNet = (f: Family, i: number) => v(f, `198.19.${i}.0/24`, `fd00:19:${i}::/64`);
const otherHost = (f: Family, i: number) => v(f, `198.19.${i}.7/32`, `fd00:19:${i}::7/128`);
/** The server's own address on its k-th interface, as a host network (`-d`). */
const serverHost = (f: Family, k: number) => `${addressOn(f, "server", k)}/${v(f, "32", "128")}`;
/** Networks that hold the client's address: on a host with several interfaces it has one on each
 * (198.18.k.1), so only the network that holds them all. */
const clientNets = (f: Family, many: boolean) =>
  v(f, "198.18.0.0/16|198.18.0.0/24", "fd00:18::/48|fd00:18::/64")
    .split("|")
    .slice(0, many ? 1 : 2);
const rejectDefault = (f: Family) => v(f, "icmp-port-unreachable", "icmp6-port-unreachable");

/** The ruleset as iptables-restore reads it. */
export function rulesetText(c: Case): string {
  const builtin = new Set(["INPUT", "FORWARD", "OUTPUT"]);
  return [
    "*filter",
    `:INPUT ${c.policy} [0:0]`,
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ...c.chains.filter((ch) => !builtin.has(ch.name)).map((ch) => `:${ch.name} - [0:0]`),
    ...c.chains.flatMap((ch) => ch.rules),
    "COMMIT",
    "",
  ].join("\n");
}

// ---------------------------------------------------------------- templates

interface Template {
  name: string;
  policy?: "ACCEPT" | "DROP";
  chains(f: Family, backend: Backend): { name: string; rules: string[] }[];
}

/** ufw's filter table as ufw 0.36.2 wrote it in the lab (test/fixtures/<backend>/ipv<f>/ufw-real). */
function ufwChains(f: Family, backend: Backend) {
  const text = readFamilyFile(backend, f, "ufw-real/save.txt");
  const chains: { name: string; rules: string[] }[] = [];
  for (const line of text.split("\n")) {
    const decl = /^:(\S+) /.exec(line);
    if (decl && !["FORWARD", "OUTPUT"].includes(decl[1])) chains.push({ name: decl[1], rules: [] });
    const rule = /^-A (\S+) /.exec(line);
    if (rule) chains.find((c) => c.name === rule[1])?.rules.push(line);
  }
  // INPUT first; FORWARD/OUTPUT's own rules are left out (they never see our packets)
  return chains.sort((a, b) => Number(b.name === "INPUT") - Number(a.name === "INPUT"));
}

const TEMPLATES: Template[] = [
  { name: "plain", chains: () => [{ name: "INPUT", rules: [] }] },
  {
    // A zone firewall (Shorewall, firewalld's zones): the interface decides which chain judges a packet.
    name: "zones",
    chains: (f) => [
      {
        name: "INPUT",
        rules: [
          "-A INPUT -i lo -j ACCEPT",
          "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A INPUT -i eth0 -j zone-a",
          "-A INPUT -i eth1 -g zone-b",
          "-A INPUT -i eth+ -j zone-c",
        ],
      },
      {
        name: "zone-a",
        rules: [
          "-A zone-a -p tcp -m tcp --dport 22 -j ACCEPT",
          "-A zone-a -p tcp -m multiport --dports 80,443 -j ACCEPT",
          "-A zone-a -j DROP",
        ],
      },
      {
        name: "zone-b",
        rules: [
          "-A zone-b -p tcp -m tcp --dport 8080 -j ACCEPT",
          `-A zone-b -j REJECT --reject-with ${rejectDefault(f)}`,
        ],
      },
      { name: "zone-c", rules: ["-A zone-c -p tcp -m tcp --dport 9090 -j DROP", "-A zone-c -j RETURN"] },
    ],
  },
  { name: "ufw", policy: "DROP", chains: ufwChains },
  {
    name: "fail2ban",
    chains: (f) => [
      { name: "INPUT", rules: ["-A INPUT -p tcp -m multiport --dports 22,2222 -j f2b-sshd"] },
      {
        name: "f2b-sshd",
        rules: [
          `-A f2b-sshd -s ${otherHost(f, 9)} -j REJECT --reject-with ${rejectDefault(f)}`,
          `-A f2b-sshd -s ${otherHost(f, 10)} -j REJECT --reject-with ${rejectDefault(f)}`,
          "-A f2b-sshd -j RETURN",
        ],
      },
    ],
  },
  {
    name: "firewalld",
    policy: "ACCEPT",
    chains: (f) => [
      {
        name: "INPUT",
        rules: [
          "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A INPUT -i lo -j ACCEPT",
          "-A INPUT -j INPUT_direct",
          "-A INPUT -j INPUT_ZONES",
          "-A INPUT -m conntrack --ctstate INVALID -j DROP",
          `-A INPUT -j REJECT --reject-with ${v(f, "icmp-host-prohibited", "icmp6-adm-prohibited")}`,
        ],
      },
      { name: "INPUT_direct", rules: [] },
      { name: "INPUT_ZONES", rules: ["-A INPUT_ZONES -i eth0 -g IN_public", "-A INPUT_ZONES -g IN_public"] },
      {
        name: "IN_public",
        rules: [
          "-A IN_public -j IN_public_log",
          "-A IN_public -j IN_public_deny",
          "-A IN_public -j IN_public_allow",
          `-A IN_public ${v(f, "-p icmp", "-p ipv6-icmp")} -j ACCEPT`,
        ],
      },
      { name: "IN_public_log", rules: [] },
      { name: "IN_public_deny", rules: [] },
      {
        name: "IN_public_allow",
        rules: [
          "-A IN_public_allow -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT",
          "-A IN_public_allow -p tcp -m tcp --dport 443 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT",
        ],
      },
    ],
  },
  {
    name: "kube-proxy",
    chains: (f) => [
      {
        name: "INPUT",
        rules: [
          '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
          '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
          '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
          "-A INPUT -j KUBE-FIREWALL",
        ],
      },
      { name: "KUBE-PROXY-FIREWALL", rules: [] },
      {
        name: "KUBE-NODEPORTS",
        rules: ['-A KUBE-NODEPORTS -p tcp -m comment --comment "ns/web health" -m tcp --dport 9090 -j ACCEPT'],
      },
      {
        name: "KUBE-EXTERNAL-SERVICES",
        rules: [
          `-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "ns/api has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 8443 -j REJECT --reject-with ${rejectDefault(f)}`,
        ],
      },
      {
        name: "KUBE-FIREWALL",
        rules: [
          ...(f === 4
            ? [
                '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
              ]
            : []),
          '-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP',
        ],
      },
    ],
  },
];

// ---------------------------------------------------------------- random rules

type Proto = "" | "tcp" | "udp" | "all" | "icmp";

interface RandomRule {
  proto: Proto;
  /** Indices into the match catalogue (taken modulo its size); incompatible ones are skipped. */
  matches: number[];
  target: number;
  /** Which later chain a jump or goto goes to (modulo the number of later chains). */
  to: number;
  port: number;
}

const PORTS = [
  ...POOL.map(String),
  "8000:8100",
  "1024:65535",
  "2000:3000",
  "8080:8443",
  "1:1023",
  "9000:9100",
  "8081:8099",
];
const LISTS = ["22,80", "80,443,8080", "2222,3306", "8000:8100,9090", "443,9000:9100", "22,8443,9100"];

/** One match, given the rule's protocol; undefined where it does not fit. */
function matchOf(i: number, r: RandomRule, f: Family, ours: OurRule, index: number, many: boolean): string | undefined {
  const nets = clientNets(f, many);
  const p = r.proto === "tcp" || r.proto === "udp" ? r.proto : undefined;
  const port = PORTS[r.port % PORTS.length];
  const list = LISTS[r.port % LISTS.length];
  const catalogue: (string | undefined)[] = [
    p && `-m ${p} --dport ${port}`,
    p && `-m ${p} ! --dport ${port}`,
    p && `-m multiport --dports ${list}`,
    p && `-m multiport ! --dports ${list}`,
    p && `-m multiport --ports ${list}`,
    p && `-m ${p} --sport 67`,
    p && `-m ${p} --sport 1024:65535`,
    `-s ${otherNet(f, (r.port % 5) + 1)}`,
    `! -s ${otherNet(f, (r.port % 5) + 1)}`,
    ours.source ? `-s ${nets[r.port % nets.length]}` : `-s ${otherHost(f, 3)}`,
    ours.source ? `! -s ${nets[r.port % nets.length]}` : `! -s ${otherHost(f, 4)}`,
    `-d ${v(f, "198.19.0.251/32", "ff02::fb/128")}`,
    `-d ${serverHost(f, r.port % 2)}`,
    `! -d ${serverHost(f, r.port % 2)}`,
    `-d ${v(f, "198.18.0.0/16", "fd00:18::/48")}`,
    "-i lo",
    "-i eth0",
    "-i eth+",
    "! -i lo",
    "! -i eth0",
    "-i eth1",
    "! -i eth+",
    "-m conntrack --ctstate NEW",
    "-m conntrack --ctstate RELATED,ESTABLISHED",
    "-m conntrack --ctstate INVALID",
    "-m conntrack ! --ctstate NEW",
    "-m state --state NEW",
    "-m addrtype --dst-type LOCAL",
    `-m addrtype --dst-type ${v(f, "BROADCAST", "MULTICAST")}`,
    "-m addrtype --dst-type MULTICAST",
    "-m addrtype ! --dst-type LOCAL",
    "-m limit --limit 3/min --limit-burst 10",
    "-m mark --mark 0x1",
    "-m length --length 0:100",
    "-m length --length 1000:1500",
    "-m string --string GET --algo bm",
    "-m recent --rcheck --seconds 60 --name lab --rsource",
    "-m connlimit --connlimit-above 10 --connlimit-mask 32",
    // 1000/sec: above what the probes of one case send from one source, so it only singles out sources over
    // their limit (a per-source match is an exception to placement: README.md, `placeRule`); at 10/sec the
    // probes themselves went over it.
    `-m hashlimit --hashlimit-above 1000/sec --hashlimit-mode srcip --hashlimit-name h${index}`,
    p === "tcp" ? "-m tcp --syn" : undefined,
    p === "tcp" ? "-m tcp ! --syn" : undefined,
    "-m pkttype --pkt-type unicast",
    `-m pkttype --pkt-type ${v(f, "broadcast", "multicast")}`,
    `-m iprange --src-range ${v(f, "198.19.0.1-198.19.0.9", "fd00:19::1-fd00:19::9")}`,
    f === 6 ? "-m rt --rt-type 0" : undefined,
    r.proto === "icmp" ? v(f, "-m icmp --icmp-type 8", "-m icmp6 --icmpv6-type 128") : undefined,
  ];
  return catalogue[i % catalogue.length];
}

function ruleOf(
  r: RandomRule,
  f: Family,
  chain: string,
  later: string[],
  ours: OurRule,
  index: number,
  many: boolean,
): string {
  const proto = r.proto === "icmp" ? v(f, "-p icmp", "-p ipv6-icmp") : r.proto ? `-p ${r.proto}` : "";
  const seen = new Set<string>();
  const matches = r.matches
    .map((i) => matchOf(i, r, f, ours, index, many))
    .filter((m): m is string => !!m)
    .filter((m) => {
      const words = m.replace(/^! /, "").split(" ");
      const key = words[0] === "-m" ? words.slice(0, 2).join(" ") : words[0];
      if (seen.has(key)) return false; // one option of a kind (iptables refuses some twice)
      seen.add(key);
      return true;
    });
  const reject = r.proto === "tcp" && r.port % 2 ? "-j REJECT --reject-with tcp-reset" : "-j REJECT";
  const targets = [
    "-j ACCEPT",
    "-j DROP",
    reject,
    "-j RETURN",
    later.length ? `-j ${later[r.to % later.length]}` : "-j DROP",
    later.length ? `-g ${later[r.to % later.length]}` : "-j ACCEPT",
    '-j LOG --log-prefix "lab: "',
    "",
    later.length ? `-j ${later[r.to % later.length]}` : reject,
  ];
  return ["-A", chain, proto, ...matches, targets[r.target % targets.length]].filter(Boolean).join(" ");
}

const randomRule = fc.record({
  proto: fc.constantFrom<Proto>("", "tcp", "tcp", "tcp", "udp", "all", "icmp"),
  matches: fc.array(fc.nat(200), { maxLength: 3 }),
  target: fc.nat(50),
  to: fc.nat(10),
  port: fc.nat(100),
});

const ourRule = fc.record({
  where: fc.nat(20),
  ports: fc.uniqueArray(fc.constantFrom(...POOL), { minLength: 1, maxLength: 3 }),
  action: fc.constantFrom("ACCEPT", "DROP", "REJECT", "REJECT"),
  reset: fc.boolean(),
  source: fc.nat(5),
  inInterface: fc.constantFrom(undefined, undefined, undefined, undefined, "eth1", "eth+"),
});

/** Cases for one family and backend, on a server with these interfaces. */
export function cases(f: Family, backend: Backend, interfaces: readonly string[] = ["vlab0"]): fc.Arbitrary<Case> {
  const many = interfaces.length > 1;
  return fc
    .record({
      template: fc.constantFrom(...TEMPLATES),
      policy: fc.constantFrom("ACCEPT", "DROP") as fc.Arbitrary<"ACCEPT" | "DROP">,
      extraChains: fc.nat(3),
      input: fc.array(fc.tuple(fc.nat(30), randomRule), { maxLength: 6 }),
      chains: fc.array(fc.array(fc.tuple(fc.nat(30), randomRule), { maxLength: 4 }), { maxLength: 3 }),
      ours: ourRule,
      probes: fc.array(fc.nat(40), { minLength: 1, maxLength: 2 }),
      nat: fc.record({ kind: fc.nat(9), port: fc.nat(5), other: fc.constantFrom(...POOL) }),
      other: fc.record({ kind: fc.nat(7), nat: fc.nat(5), port: fc.nat(5), other: fc.constantFrom(...POOL) }),
    })
    .map((g) => {
      const base = g.template.chains(f, backend).map((c) => ({ name: c.name, rules: [...c.rules] }));
      const randomNames = g.chains.map((_, i) => `LAB-${i}`);
      const chains = [...base, ...randomNames.map((name) => ({ name, rules: [] as string[] }))];
      const source = [
        undefined,
        undefined,
        undefined,
        undefined,
        many ? undefined : v(f, "198.18.0.1/32", "fd00:18::1/128"),
        clientNets(f, many).at(-1),
      ][g.ours.source];
      const userChains = chains.filter((c) => c.name !== "INPUT").map((c) => c.name);
      const ours: OurRule = {
        chain: g.ours.where < 17 || !userChains.length ? "INPUT" : userChains[g.ours.where % userChains.length],
        ports: [...g.ours.ports].sort((a, b) => a - b),
        action: g.ours.action as OurRule["action"],
        rejectWith: g.ours.action === "REJECT" && g.ours.reset ? "tcp-reset" : undefined,
        source,
        ...(many && g.ours.inInterface && { inInterface: g.ours.inInterface }),
      };
      let index = 0;
      const insert = (chain: { name: string; rules: string[] }, at: number, r: RandomRule, later: string[]) => {
        const pos = at % (chain.rules.length + 1);
        chain.rules.splice(pos, 0, ruleOf(r, f, chain.name, later, ours, index++, many));
      };
      const input = chains[0];
      for (const [at, r] of g.input) insert(input, at, r, randomNames);
      g.chains.forEach((rules, i) => {
        for (const [at, r] of rules) insert(chains[base.length + i], at, r, randomNames.slice(i + 1));
      });
      return {
        family: f,
        template: g.template.name,
        policy: g.template.policy ?? g.policy,
        chains,
        ours,
        probes: g.probes,
        nat: natOf(g.nat.kind, f, ours.ports[g.nat.port % ours.ports.length], g.nat.other, many),
        other: {
          ...otherOf(g.other.kind, f, ours.ports[g.other.port % ours.ports.length], g.other.other),
          nat: otherNatOf(g.other.nat, f, ours.ports[g.other.port % ours.ports.length], g.other.other),
        },
      };
    });
}

/** The case's own rule as the provider renders it (checked inputs, tagged with `tag`). */
export function argvOf(c: Case, tag: string): string[] {
  const { inputs, failures } = check(
    {},
    {
      connection: { host: "198.18.0.2" },
      port: c.ours.ports,
      action: c.ours.action,
      rejectWith: c.ours.rejectWith,
      source: c.ours.source,
      chain: c.ours.chain,
      inInterface: c.ours.inInterface,
      ipVersion: c.family === 4 ? "ipv4" : "ipv6",
    },
  );
  if (failures.length) throw new Error(`bad generated rule: ${JSON.stringify(failures)}`);
  return renderRule(inputs as never, c.family, tag);
}
