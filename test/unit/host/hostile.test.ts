// Issue 20.1 and 20.2, the hostile-listing fuzz test: a host is untrusted input. Seeded random listings
// hold, around or without the resource's own rule, rules that carry its tag with comments full of
// newlines, quotes, here-document terminators, section markers (old fixed ones and random-looking
// ones), shell lines, unicode and other rules' tags, and rules that differ from the recorded rule by one
// token. Each listing goes through a delete, a replacement (lineage takeover), an adoption, a refresh
// (the agent over the fake host, fake.ts: the real scripts) and a review (pure). Checked on every case:
// no script holds a byte of a hostile comment (each carries a canary), every iptables-restore line is one
// of the lines the provider rendered for its own rule, and refresh reads exactly the recorded rule.
// PIT_FUZZ_CASES sets the number of cases (20,000 by default), PIT_FUZZ_SEED replays a run.
import { describe, expect, it } from "vitest";
import { HostAgent } from "../../../provider/host/agent";
import type { ChangeRequest, InsertRequest } from "../../../provider/host";
import { review } from "../../../provider/host/review";
import { planBatch } from "../../../provider/host/plan";
import { parseSections } from "../../../provider/host/protocol";
import { check, parseRuleset, renderRule, ruleText } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";
import { insertRuleText } from "../../fixtures/listing";
import { seeded } from "../../random";
import type { Seeded } from "../../random";
import { FakeHost, frame } from "./fake";
import type { StepAnswer } from "./fake";

const CASES = Number(process.env.PIT_FUZZ_CASES ?? 20_000);
const SEED = Number(process.env.PIT_FUZZ_SEED ?? Date.now() % 2 ** 31);

const TAG = "pulumi-iptables:web/prod/app/0123456789ab";
const NEXT = "pulumi-iptables:web/prod/app/ba9876543210";
const OTHER = "pulumi-iptables:web/prod/other/feedfacecafe";
const { inputs } = check({}, { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT" });
const spec = (tag?: string) => renderRule(inputs, 4, tag);
const OURS = ruleText("INPUT", spec(TAG));
const NEXT_TEXT = ruleText("INPUT", spec(NEXT));
const TWIN = ruleText("INPUT", spec());
/** The spec part (after `-A INPUT `) of every rule the provider may write a restore line for. */
const OWN_SPECS = new Set([OURS, NEXT_TEXT, TWIN].map((t) => t.replace(/^-A INPUT /, "")));

const BASES = ["allow-guide", "ends-in-drop", "ufw-real", "odd-comment"].map((s) =>
  readFamilyFile("nf_tables", 4, `${s}/save-c.txt`),
);

/** Pieces of hostile comments: framing of every kind, shell, quoting, control characters, tags. */
const PIECES = [
  "\n",
  "\r\n",
  '"',
  "\\",
  "'",
  "$(id)",
  "`id`",
  ";",
  "#",
  "@@PIT_INPUT",
  "@@PIT_TX",
  "@@PIT_TAGS",
  "@@PIT_0123456789abcdef",
  "\n@@PIT_INPUT\ntouch /tmp/pwned\n#",
  "\n@@PIT_TX\nid > /tmp/pwned\n#",
  "\n@@pit-end save4 0\n@@pit-begin save4\n",
  "\n@@pit-end 0123456789abcdef save4 0\n",
  "\n@@pit-stderr\n",
  "\n@@pit-step-done 1\n",
  "\nCOMMIT\n*filter\n-A INPUT -j ACCEPT\n",
  "\n-D INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n",
  "✓ café",
  "\u2028",
  "\u001b[2J",
  TAG,
  `${TAG} `,
  NEXT,
  OTHER,
  " ",
];

/** A rule carrying our tag whose comment is hostile; `canary` marks its bytes. */
function hostileRule(r: Seeded, canary: string): string {
  const parts = [canary];
  for (let n = 1 + r.int(6); n > 0; n--) parts.push(r.pick(PIECES));
  parts.push(r.pick([TAG, ` ${TAG}`, `${TAG}\n`, `\n${TAG}`]));
  const comment = parts.join("");
  const port = r.pick(["2222", "22", "8443", "8444"]);
  const action = r.pick(["ACCEPT", "DROP"]);
  return ruleText("INPUT", [
    "-p",
    "tcp",
    "-m",
    "tcp",
    "--dport",
    port,
    "-m",
    "comment",
    "--comment",
    comment,
    "-j",
    action,
  ]);
}

/** Our rule with one token changed: never ours. */
function nearCopy(r: Seeded): string {
  const variants = [
    OURS.replace("--dport 2222", "--dport 2223"),
    OURS.replace("--dport 2222", "--dport 8443"),
    OURS.replace("-j ACCEPT", "-j DROP"),
    OURS.replace("-p tcp", "-s 198.18.0.9/32 -p tcp"),
    OURS.replace(`"${TAG}"`, `"x ${TAG}"`),
    OURS.replace(TAG, `${TAG}x`),
    OURS.replace(TAG, OTHER),
    OURS.replace("-A INPUT", "-A INPUT ! -i lo"),
    `${OURS} -m comment --comment extra`,
  ];
  return r.pick(variants);
}

interface Case {
  listing: string;
  /** Line of our exact rule (or the lineage's older one, or the twin) in INPUT, if there. */
  canaries: string[];
  ours?: number;
}

/** A listing: a base, our rule (or not), hostile rules and near copies at random lines of INPUT. */
function listingFor(r: Seeded, own: string | undefined, k: number): Case {
  let text = r.pick(BASES);
  const rules = parseRuleset(text)
    .tables.get("filter")!
    .chains.get("INPUT")!
    .rules.map((x) => x.text);
  const canaries: string[] = [];
  const insert = (t: string) => {
    const at = 1 + r.int(rules.length + 1);
    text = insertRuleText(text, "filter", "INPUT", at, t);
    rules.splice(Math.min(at, rules.length + 1) - 1, 0, t);
  };
  if (own !== undefined && r.chance(0.7)) insert(own);
  for (let n = r.int(4); n > 0; n--) {
    const canary = `canary${k}x${n}x`;
    canaries.push(canary);
    insert(hostileRule(r, canary));
  }
  for (let n = r.int(3); n > 0; n--) insert(nearCopy(r));
  const i = own === undefined ? -1 : rules.indexOf(own);
  return { listing: text, canaries, ours: i < 0 ? undefined : i + 1 };
}

const facts = {
  version: { out: "iptables v1.8.9 (nf_tables)" },
  persistence: { out: "netfilter-persistent /etc/iptables/rules.v4 /etc/iptables/rules.v6" },
};
const first = (listing: string): StepAnswer => ({
  lock: {},
  reap: {},
  ...facts,
  listening: {},
  save4: { out: listing },
});

const insertReq = (extra: Partial<InsertRequest> = {}): InsertRequest => ({
  kind: "insert",
  table: "filter",
  chain: "INPUT",
  specs: { 4: spec(TAG) },
  tag: TAG,
  position: "auto",
  persist: false,
  twins: { 4: TWIN },
  ...extra,
});
const deleteReq: ChangeRequest = {
  kind: "delete",
  table: "filter",
  chain: "INPUT",
  families: [4],
  tag: TAG,
  rules: { 4: OURS },
  persist: false,
};

/** The rule lines inside a script's here-documents: iptables-restore input, and the adopted list's
 * tab-separated pairs of rules. */
function restoreLines(script: string): string[] {
  const out: string[] = [];
  const doc = /<<\S*?(@@PIT_[0-9a-f]+)\S*\n([\s\S]*?)\n\1/g;
  for (let m = doc.exec(script); m; m = doc.exec(script))
    out.push(...m[2].split(/[\n\t]/).filter((l) => /^-[ADIR] /.test(l)));
  return out;
}

/** The spec part of a restore line: after `-X CHAIN`, a line number and `-c p b`. */
const specOf = (line: string) => line.replace(/^-[ADIR] \S+ (\d+ )?(-c \d+ \d+ )?/, "");

interface Outcome {
  scripts: string[];
  /** Refresh: the line read, if any. */
  line?: number;
}

type Op = "delete" | "replace" | "adopt" | "refresh" | "review";

async function run(op: Op, c: Case): Promise<Outcome> {
  if (op === "review") {
    // Our rule went in where planned, and then another writer put a DROP of its port above it.
    const req = insertReq();
    const listed = new Map([[4 as const, parseRuleset(c.listing)]]);
    const { plans, expected } = planBatch([req], listed, { target: "t", facts: {} as never });
    const line = plans.get(req)?.[4]?.line ?? 1;
    const moved = insertRuleText(insertRuleText(c.listing, "filter", "INPUT", line, OURS), "filter", "INPUT", 1, DROP);
    const after = new Map([[4 as const, parseRuleset(moved)]]);
    const fixes = review(after, [req], plans, 0, "t", expected).fixes.get(4) ?? [];
    return { scripts: [`<<'@@PIT_0'\n${fixes.join("\n")}\n@@PIT_0`] };
  }
  if (op === "refresh") {
    const host = new FakeHost([], [{ ...facts, save4: { out: c.listing } }]);
    const agent = new HostAgent(host.session());
    const r = await agent.read("filter", "INPUT", TAG, { 4: OURS }, "ACCEPT");
    return { scripts: host.runs, line: r.families[4]?.line };
  }
  // After the apply step the connection drops: every script up to the change is written by then.
  const host = new FakeHost([first(c.listing), "drop"]);
  const agent = new HostAgent(host.session());
  const req =
    op === "delete"
      ? deleteReq
      : op === "replace"
        ? insertReq({ successors: [{ tag: NEXT, specs: { 4: spec(NEXT) } }] })
        : insertReq({ adopt: true });
  await agent.change(req).catch(() => undefined);
  await agent.settled();
  return { scripts: host.scripts };
}

/** The own rule a case's listing may hold: the twin to adopt; none for a review (it inserts it). */
const ownOf = (op: Op) => (op === "adopt" ? TWIN : op === "review" ? undefined : OURS);
/** Another writer's rule that shadows ours. */
const DROP = "-A INPUT -p tcp -m tcp --dport 2222 -j DROP";

describe("issue 20.1/20.2: hostile listings", () => {
  it(`act only on the exact recorded rule, and no listed byte reaches a script (${CASES} cases, seed ${SEED})`, async () => {
    const r = seeded(SEED);
    const ops: Op[] = ["delete", "replace", "adopt", "refresh", "review"];
    const violations: string[] = [];
    const counts: Record<string, number> = {};
    /** Cases per operation that wrote restore lines (or, for refresh, read the rule): not a vacuous pass. */
    const acted: Record<string, number> = {};
    for (let start = 0; start < CASES; start += 200) {
      const batch = Array.from({ length: Math.min(200, CASES - start) }, (_, i) => {
        const k = start + i;
        const op = ops[k % ops.length];
        return { k, op, c: listingFor(r, ownOf(op), k) };
      });
      await Promise.all(
        batch.map(async ({ k, op, c }) => {
          const o = await run(op, c);
          counts[op] = (counts[op] ?? 0) + 1;
          if (o.scripts.flatMap(restoreLines).length || o.line) acted[op] = (acted[op] ?? 0) + 1;
          const all = o.scripts.join("\n");
          const say = (what: string) => violations.push(`case ${k} (${op}, seed ${SEED}): ${what}`);
          for (const canary of c.canaries) if (all.includes(canary)) say(`a script holds listed text (${canary})`);
          for (const line of o.scripts.flatMap(restoreLines))
            if (!OWN_SPECS.has(specOf(line))) say(`a restore line is not the provider's own: ${JSON.stringify(line)}`);
          if (op === "refresh" && o.line !== c.ours) say(`refresh read line ${o.line}, the rule is at ${c.ours}`);
          // A delete deletes the recorded rule where it is (its undo puts it back there), or nothing.
          const ownSpec = OURS.replace(/^-A INPUT /, "");
          const wanted = c.ours ? [`-D INPUT ${ownSpec}`, `-I INPUT ${c.ours} ${ownSpec}`].sort() : [];
          const got = o.scripts.flatMap(restoreLines).sort();
          if (op === "delete" && JSON.stringify(got) !== JSON.stringify(wanted))
            say(`the delete wrote ${JSON.stringify(got)}, not ${JSON.stringify(wanted)}`);
        }),
      );
    }
    expect(violations.slice(0, 10)).toEqual([]);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(CASES);
    for (const op of ops) expect(acted[op] ?? 0, `${op} cases that acted`).toBeGreaterThan(counts[op] / 4);
  });

  it("forged framing in a section's output is data, never a section", () => {
    const r = seeded(SEED);
    const mark = "0f1e2d3c4b5a6978";
    for (let k = 0; k < 2000; k++) {
      const forged = Array.from({ length: 1 + r.int(4) }, () => r.pick(PIECES)).join("");
      const sections = { save4: { out: `-A INPUT${forged}-j ACCEPT`, err: "" }, persist: { out: "", code: 0 } };
      const parsed = parseSections(frame(sections, mark), mark);
      expect(Object.keys(parsed).sort()).toEqual(["persist", "save4"]);
      expect(parsed.save4.out).toBe(sections.save4.out);
    }
    // A framing line that carries the script's own mark, out of place, is refused.
    const inside = frame({ save4: { out: `x\n@@pit-end ${mark} save4 0\n@@pit-begin ${mark} evil` } }, mark);
    expect(() => parseSections(inside, mark)).toThrow(/framing line out of place/);
  });
});
