/**
 * Property test against real iptables: generated valid PortRule inputs → check → renderRule →
 * loaded into a lab namespace (one iptables-restore per backend/family batch) → `iptables -S`
 * prints back exactly ruleText(...), and `iptables -C <argv>` accepts every rendered argv.
 * Both backends, both families, on every iptables version the lab has: this machine's 1.8.9 and the
 * root filesystems of Debian 11 (1.8.7) and 13 (1.8.11) that scripts/rootfs.sh builds, whose own
 * binaries run chrooted. Namespaces are made in beforeAll and always deleted in afterAll.
 */
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  check,
  makeTag,
  parseRuleset,
  REJECT_TYPES,
  renderRule,
  ruleText,
  type RuleInputs,
} from "../../provider/rules";
import { rootfs, type Userland } from "../lab/rootfs";
import { BACKENDS, deleteAll, labUnavailable, Netns, tools } from "./netns";

const PER_BATCH = 80; // rules per backend x family x version: 320 per version
/** The iptables versions: this machine's own, and those of other userlands' root filesystems. */
const VERSIONS: { version: string; userland?: Userland }[] = [
  { version: "1.8.9" },
  { version: "1.8.7", userland: "bullseye" },
  { version: "1.8.11", userland: "trixie" },
];
const namespaces = new Map<string, Netns>();

beforeAll(() => {
  const why = labUnavailable();
  if (why) throw new Error(`rules lab cannot run: ${why}`);
  for (const { version, userland } of VERSIONS)
    for (const backend of BACKENDS)
      namespaces.set(`${version}/${backend}`, Netns.create("pit-rl", userland ? rootfs(userland) : ""));
});

afterAll(() => {
  deleteAll();
});

const port = fc.integer({ min: 1, max: 65535 });
const range = fc.tuple(port, port).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const);
const portInput = fc.oneof(
  port,
  range.map(([a, b]) => `${a}-${b}`),
  range.map(([a, b]) => `${a}:${b}`),
  range.map(([from, to]) => ({ from, to })),
  fc.array(
    fc.oneof(
      port,
      range.map(([a, b]) => `${a}-${b}`),
    ),
    { minLength: 1, maxLength: 7 },
  ),
);

function network(family: 4 | 6, bytes: number[], prefix: number): string {
  const addr =
    family === 4
      ? `198.${18 + (bytes[0] & 1)}.${bytes[1]}.${bytes[2]}`
      : ipaddr.fromByteArray([0xfd, ...bytes.slice(0, 15)]).toString();
  const cidr = `${addr}/${prefix}`;
  return `${(family === 4 ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(cidr).toString()}/${prefix}`;
}

const PLACES = [
  ["filter", "INPUT"],
  ["filter", "FORWARD"],
  ["filter", "OUTPUT"],
  ["filter", "PIT-LAB"],
  ["filter", "DOCKER-USER"],
  ["mangle", "PREROUTING"],
  ["mangle", "INPUT"],
  ["mangle", "POSTROUTING"],
  ["raw", "PREROUTING"],
  ["raw", "OUTPUT"],
] as const;

function newsFor(family: 4 | 6) {
  const rejectTypes = REJECT_TYPES[family].filter((t) => t !== "tcp-reset");
  return fc.record({
    port: portInput,
    protocol: fc.constantFrom("tcp", "udp", "TCP", "Udp"),
    action: fc.constantFrom("ACCEPT", "DROP", "REJECT", "accept", "reject"),
    rejectWith: fc.option(
      fc.constantFrom(
        ...rejectTypes,
        "tcp-reset",
        "port-unreachable",
        "admin-prohibited",
        "host-unreachable",
        "net-unreachable",
      ),
      { nil: undefined },
    ),
    place: fc.constantFrom(...PLACES),
    source: fc.option(
      fc.tuple(
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 }),
        fc.integer({ min: family === 4 ? 15 : 8, max: family === 4 ? 32 : 128 }),
      ),
      { nil: undefined },
    ),
    inInterface: fc.option(fc.stringMatching(/^[a-z][a-z0-9._-]{0,12}\+?$/), { nil: undefined }),
    comment: fc.option(
      fc.oneof(
        fc.stringMatching(/^[A-Za-z0-9 ._:/=+,@()-]{1,40}$/),
        fc.stringMatching(/^[A-Za-z0-9 ._:/=+,@()-]{100,126}$/),
      ),
      { nil: undefined },
    ),
    both: fc.boolean(),
    name: fc.string({ maxLength: 60 }),
    unique: fc.stringMatching(/^[a-z0-9]{8}$/),
  });
}

interface Sample {
  inputs: RuleInputs;
  argv: string[];
  text: string;
}

function samples(family: 4 | 6, seed: number): Sample[] {
  const out: Sample[] = [];
  for (const n of fc.sample(newsFor(family), { numRuns: PER_BATCH * 4, seed })) {
    if (out.length === PER_BATCH) break;
    const [table, chain] = n.place as readonly [string, string];
    const { inputs, failures } = check(
      {},
      {
        connection: { host: "198.18.0.10" },
        port: n.port,
        protocol: n.protocol,
        action: n.action,
        rejectWith: n.action.toUpperCase() === "REJECT" ? n.rejectWith : undefined,
        table,
        chain,
        source: n.source && network(family, n.source[0], n.source[1]),
        inInterface: n.inInterface,
        comment: n.comment,
        ipVersion: n.both && !n.source ? "both" : `ipv${family}`,
      },
    );
    if (failures.length > 0) continue; // the generator also makes inputs check rightly refuses
    const tag = makeTag({ project: "rules-lab", stack: `b${seed}`, name: n.name }, n.unique);
    const argv = renderRule(inputs, family, tag);
    out.push({ inputs, argv, text: ruleText(chain, argv) });
  }
  return out;
}

const sh = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

describe.each(VERSIONS.flatMap(({ version }) => BACKENDS.map((backend) => ({ version, backend }))))(
  "render → real iptables $version ($backend)",
  ({ version, backend }) => {
    it.each([4, 6] as const)("ipv%s: -S prints exactly ruleText, -C accepts the argv", (family) => {
      const ns = namespaces.get(`${version}/${backend}`)!;
      const { iptables: bin } = tools(family);
      expect(ns.run(backend, `${bin} --version`).stdout.trim()).toBe(`${bin} v${version} (${backend})`);
      const batch = samples(family, family * 1000 + (backend === "legacy" ? 7 : 3));
      expect(batch.length).toBe(PER_BATCH);
      const { iptables, restore } = tools(family);

      const tables = [...new Set(batch.map((s) => s.inputs.table))];
      const restoreText = tables
        .map((t) =>
          [
            `*${t}`,
            ...(t === "filter" ? [":PIT-LAB - [0:0]", ":DOCKER-USER - [0:0]"] : []),
            ...batch.filter((s) => s.inputs.table === t).map((s) => s.text),
            "COMMIT",
            "",
          ].join("\n"),
        )
        .join("");
      const loaded = ns.run(backend, `${restore}`, restoreText);
      expect(loaded.stderr).toBe("");
      expect(loaded.code).toBe(0);

      // What iptables prints back, per table and chain, in order.
      for (const t of tables) {
        const listed = ns.run(backend, `${iptables} -t ${t} -S`);
        expect(listed.code).toBe(0);
        const got = listed.stdout.split("\n").filter((l) => l.startsWith("-A "));
        const want = batch.filter((s) => s.inputs.table === t).map((s) => s.text);
        const byChain = (lines: string[]) => [...lines].sort((a, b) => a.split(" ")[1].localeCompare(b.split(" ")[1])); // stable: keeps order within a chain
        expect(byChain(got)).toEqual(byChain(want));
      }

      // Every rendered argv is accepted by -C (exact-match check) as the provider will run it.
      const script = batch
        .map(
          (s, i) =>
            // (1.8.7 on nf_tables prints the matched rule on stdout: only the exit status counts.)
            `${iptables} -t ${s.inputs.table} -C ${sh(s.inputs.chain)} ${s.argv.map(sh).join(" ")} >/dev/null || echo "not found: ${i}"`,
        )
        .join("\n");
      const checked = ns.run(backend, script);
      expect(checked.stdout).toBe("");
      expect(checked.stderr).toBe("");
    });
  },
);

/** The lab kernel has no LED trigger module: iptables refuses `-j LED` there (its quoting is unit-tested). */
const NO_KERNEL_SUPPORT = /-j LED /;
const BUILTIN = new Set(["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"]);
/** The unquoted argv of a listed line, as the parser reads it. */
const tokensOf = (table: string, line: string) =>
  [...parseRuleset(`*${table}\n${line}\nCOMMIT\n`).tables.get(table)!.chains.values()][0].rules[0].tokens;

/** The distinct IPv4 lines with a quoted value of iptables' own test corpus of `version`, by table. */
function quotedCorpus(version: string): Map<string, string[]> {
  const file = join(__dirname, "..", "fixtures", "iptables-corpus", `iptables-${version}.tsv.gz`);
  const byTable = new Map<string, string[]>();
  for (const row of gunzipSync(readFileSync(file)).toString("utf8").split("\n")) {
    const [families, table, , listed] = row.split("\t");
    const line = listed?.replace(/^\[\d+:\d+\] /, "").replace(/ -c \d+ \d+(?= |$)/, "");
    if (!line?.includes('"') || !families.includes("4") || NO_KERNEL_SUPPORT.test(line)) continue;
    const lines = byTable.get(table) ?? byTable.set(table, []).get(table)!;
    if (!lines.includes(line)) lines.push(line);
  }
  return byTable;
}

describe.each(
  VERSIONS.filter(({ version }) => version !== "1.8.7").flatMap(({ version }) =>
    BACKENDS.map((backend) => ({ version, backend })),
  ),
)("iptables $version's own quoted corpus lines → real iptables ($backend)", ({ version, backend }) => {
  it("loads every line and -S prints each back exactly as ruleText of its parsed argv", () => {
    const ns = namespaces.get(`${version}/${backend}`)!;
    const { iptables, restore } = tools(4);
    const corpus = quotedCorpus(version);
    expect([...corpus.values()].flat().length).toBeGreaterThan(80);
    for (const [table, lines] of corpus) {
      const chains = [...new Set(lines.map((l) => l.split(" ")[1]))].filter((c) => !BUILTIN.has(c));
      const text = [`*${table}`, ...chains.map((c) => `:${c} - [0:0]`), ...lines, "COMMIT", ""].join("\n");
      const loaded = ns.run(backend, `${restore}`, text);
      expect(loaded.stderr).toBe("");
      expect(loaded.code).toBe(0);
      const listed = ns.run(backend, `${iptables} -t ${table} -S`);
      expect(listed.code).toBe(0);
      const got = listed.stdout.split("\n").filter((l) => l.startsWith("-A "));
      const ours = lines.map((l) => ruleText(l.split(" ")[1], tokensOf(table, l)));
      const byChain = (xs: string[]) => [...xs].sort((a, b) => a.split(" ")[1].localeCompare(b.split(" ")[1]));
      expect(byChain(got)).toEqual(byChain(ours));
      expect(ns.run(backend, `${iptables} -t ${table} -F && ${iptables} -t ${table} -X`).code).toBe(0);
    }
  });
});
