/**
 * The kernel judges placement (issue 11): generated rulesets (test/rules-lab/rulesets.ts) are loaded
 * into a server namespace; the rule goes in where placeRule says, one line lower, and at random
 * other lines; real TCP connections from a client namespace to each of its ports say what the
 * kernel does with the first packet (SYN-ACK = ACCEPT, a reset or an ICMP error = REJECT, no answer =
 * DROP). At every line the kernel's verdict for each port must be one the model allows (the model
 * follows both branches of matches it cannot read); where the model says every first packet reaches
 * the rule, its counters count them; a rule in a chain nothing jumps to counts nothing; and
 * shadowing() must agree with the model. Where placeRule says effective, every port
 * gets the rule's verdict; one line lower, the model says the rule no longer decides them. Where the
 * rule sits at a line that does not decide its packets (drifted there), healing (host/move.ts
 * placeableOf, what `pulumi up` moves it by) chooses placeRule's line and says effective exactly when
 * placeRule does: the line the kernel judged above.
 * Half the lanes' servers have two or three interfaces (eth0, eth1, wan0; the rulesets' zone
 * dispatch names them, exactly and by eth+): the model judges the packets arriving on each of them
 * on its own, and the kernel is asked through each of them. Half the cases have nat PREROUTING rules
 * (a DNAT of one of the rule's ports to a backend namespace behind the server, a REDIRECT to another
 * port, Docker's chain, a DNAT bound to eth1, a REDIRECT bound to eth+): the model follows them.
 * The other backend holds a filter table too in half the cases (ferm-like policy DROP, a fail2ban-like
 * chain, a DROP or REJECT of a port), and a third of the cases a nat PREROUTING rule there (a DNAT to
 * the backend, a REDIRECT): the kernel applies both, and so does the model.
 * The model knows the server's addresses (one per interface, ./pair addressOn): rules name them (`-d`,
 * Docker publishing on the first one, a DNAT to the second); it judges packets to each address arriving
 * on each interface, and the kernel is asked for each interface's own address.
 * Both backends, both families, 8 namespace pairs at once. PIT_PLACEMENT_CASES sets the number of
 * cases (default 200; the full run uses thousands). A failure prints the ruleset, the rule and what
 * the kernel and the model said, ready to become a fixture.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertRuleText } from "../fixtures/listing";
import { chainOf, findByTag, makeTag, parseRuleset, placeRule, ruleText, shadowing } from "../../provider/rules";
import { placeableOf } from "../../provider/host/move";
import { possibleVerdicts } from "../../provider/rules/place";
import { deleteAll, labUnavailable, tools, type Backend } from "./netns";
import { addressOn, type Outcome, Pair } from "./pair";
import { argvOf, cases, type Case, type Family, natText, otherText, POOL, rulesetText } from "./rulesets";

const TOTAL = Number(process.env.PIT_PLACEMENT_CASES ?? 200);
const ONE = ["vlab0"];
const LANES: [Backend, Family, string[]][] = [
  ["nf_tables", 4, ONE],
  ["nf_tables", 6, ONE],
  ["legacy", 4, ONE],
  ["legacy", 6, ONE],
  ["nf_tables", 4, ["eth0", "eth1", "wan0"]],
  ["nf_tables", 6, ["eth0", "eth1"]],
  ["legacy", 4, ["eth0", "eth1"]],
  ["legacy", 6, ["eth0", "eth1", "wan0"]],
];
const TAG = makeTag({ project: "lab", stack: "kernel", name: "placed" }, "k3rn3l00");
const KERNEL: Record<Outcome, string> = { open: "ACCEPT", refused: "REJECT", timeout: "DROP" };

const pairs: Pair[] = [];
const stats = { cases: 0, lines: 0, probes: 0, determinate: 0, unreached: 0, effective: 0, moves: 0 };

beforeAll(async () => {
  const why = labUnavailable();
  if (why) throw new Error(`the placement lab cannot run: ${why}`);
  for (const [, , interfaces] of LANES) pairs.push(await Pair.create(POOL, interfaces));
}, 60_000);

afterAll(() => {
  for (const p of pairs) p.close();
  deleteAll();
  console.log(`kernel-differential placement: ${JSON.stringify(stats)}`);
});

async function runCase(pair: Pair, backend: Backend, c: Case): Promise<void> {
  const { save, restore } = tools(c.family);
  const text = rulesetText(c);
  const argv = argvOf(c, TAG);
  const chain = c.ours.chain;
  const ours = ruleText(chain, argv);
  const log: string[] = [];
  const second: Backend = backend === "legacy" ? "nf_tables" : "legacy";
  try {
    await pair.serverSh(second, restore, otherText(c));
    await pair.serverSh(backend, restore, natText(c));
    await pair.serverSh(backend, restore, text);
    const base = await pair.serverSh(backend, `${save} -t filter`);
    const rs = parseRuleset(base);
    const nat = parseRuleset(await pair.serverSh(backend, `${save} -t nat`));
    const end = chainOf(rs, "filter", chain)!.rules.length + 1;
    const interfaces = pair.interfaces;
    const secondSaved =
      (await pair.serverSh(second, `${save} -t filter`)) + (await pair.serverSh(second, `${save} -t nat`));
    const other = { backend: second, ruleset: parseRuleset(secondSaved) };
    const addresses = interfaces.map((_, k) => addressOn(c.family, "server", k));
    const host = { interfaces, addresses, nat, other };
    const placed = placeRule(rs, { table: "filter", chain, rule: argv, ...host });
    log.push(`placeRule: line ${placed.line}, effective ${placed.effective}: ${placed.reason}`);
    const lines = [
      { line: placed.line, role: "placed" },
      ...(placed.line < end ? [{ line: placed.line + 1, role: "lower" }] : []),
      ...c.probes.map((p) => ({ line: (p % end) + 1, role: "other" })),
    ];
    stats.cases++;
    for (const { line, role } of lines) {
      const withOurs = insertRuleText(base, "filter", chain, line, ours);
      await pair.serverSh(backend, restore, withOurs);
      const kernel: Outcome[][] = [];
      for (let k = 0; k < interfaces.length; k++) kernel.push(await pair.probe(c.family, c.ours.ports, 400, k));
      const listed = parseRuleset(await pair.serverSh(backend, `${save} -c -t filter`));
      const mine = findByTag(listed, "filter", chain, TAG)!;
      // Packets DNAT-ed to the backend go through FORWARD (which accepts them) to a listening port.
      // Each interface and address asked on its own (placeRule and shadowing judge one of each group the
      // rules treat alike): packets to every address of the server arrive on every interface.
      const model = interfaces
        .flatMap((i) =>
          addresses.flatMap((a) =>
            possibleVerdicts(rs, { table: "filter", chain, rule: argv, line, ...host, interfaces: [i], to: a })
              .filter((m) => m.arrival === i)
              .map((m) => ({ ...m, to: a })),
          ),
        )
        .map((m) => ({ ...m, verdicts: [...new Set(m.verdicts.map((x) => (x === "FORWARD" ? "ACCEPT" : x)))] }));
      const shadow = shadowing(parseRuleset(withOurs), { table: "filter", chain, line, ...host });
      // The kernel's answer for each (port, interface) the model judges, to that interface's own address
      // (the probes' destination): the rule speaks for no other.
      const judged = model
        .filter((m) => m.to === addresses[interfaces.indexOf(m.arrival ?? "")])
        .map((m) => {
          const k = interfaces.indexOf(m.arrival ?? "");
          return { ...m, kernel: kernel[k][c.ours.ports.indexOf(m.port!)] };
        });
      log.push(
        `line ${line}: kernel ${interfaces.map((i, k) => `${i}: ${kernel[k].map((o, j) => `${c.ours.ports[j]} ${KERNEL[o] ?? o}`).join(", ")}`).join("; ")}; ` +
          `model ${model.map((m) => `${m.port} on ${m.arrival} to ${m.to} ${m.verdicts.join("|")}${m.ours ? " (ours)" : ""}`).join(", ")}; ` +
          `counted ${mine.counters?.packets}; shadowing: ${shadow?.why ?? "none"}`,
      );
      stats.lines++;
      expect(mine.line, "the rule is where it was inserted").toBe(line);
      const unreached = /^no packet reaches/.test(shadow?.why ?? "");
      if (unreached) {
        stats.unreached++;
        expect(mine.counters?.packets, "no packet reaches the rule's chain").toBe(0n);
        continue;
      }
      expect([...new Set(model.map((m) => m.port))]).toEqual(c.ours.ports);
      for (const m of judged) {
        stats.probes++;
        if (m.verdicts.length === 1) stats.determinate++;
        expect(m.verdicts, `port ${m.port} on ${m.arrival}: the kernel's verdict is one the model allows`).toContain(
          KERNEL[m.kernel] ?? m.kernel,
        );
      }
      const verdict = c.ours.action;
      const effective = model.every((m) => m.verdicts.every((x) => x === verdict));
      expect(shadow === undefined, "shadowing() agrees with the model").toBe(effective);
      if (model.every((m) => m.ours && !m.others))
        expect(mine.counters!.packets, "the model says every packet reaches the rule").toBeGreaterThanOrEqual(
          c.ours.ports.length,
        );
      if (role === "placed" && placed.effective) {
        stats.effective++;
        expect(
          judged.map((m) => KERNEL[m.kernel]),
          "placed where placeRule says, every port on every interface gets the rule's verdict",
        ).toEqual(judged.map(() => verdict));
      }
      if (role !== "placed" && shadow) {
        stats.moves++;
        const to = placeableOf(listed, "filter", mine, host);
        expect(
          { line: to.line, effective: to.shadowedBy === undefined },
          "healing moves a drifted rule to the line placeRule chose, effective as placeRule said",
        ).toEqual({ line: placed.line, effective: placed.effective });
      }
      if (role === "lower")
        expect(
          model.some((m) => m.others),
          "one line lower, the rule no longer decides its packets",
        ).toBe(true);
    }
  } catch (e) {
    throw new Error(
      `${(e as Error).message}\n--- ${backend} ipv${c.family}, template ${c.template}, interfaces ${pair.interfaces.join(" ")}: ruleset ---\n${natText(c)}${text}--- ${second} ---\n${otherText(c)}` +
        `--- rule ---\n${ours}\n--- what happened ---\n${log.join("\n")}\n`,
    );
  }
}

describe("placement and effective against the kernel", () => {
  it(`${TOTAL} generated rulesets, both backends and families`, async () => {
    const per = Math.ceil(TOTAL / LANES.length);
    const seed = Number(process.env.PIT_PLACEMENT_SEED ?? Date.now() % 1_000_000);
    console.log(`kernel-differential placement: seed ${seed} (PIT_PLACEMENT_SEED replays it)`);
    const lanes = await Promise.allSettled(
      LANES.map(([backend, family, interfaces], i) =>
        fc.assert(
          fc.asyncProperty(cases(family, backend, interfaces), (c) => runCase(pairs[i], backend, c)),
          { numRuns: per, seed: seed + i, endOnFailure: true },
        ),
      ),
    );
    const failed = lanes.find((l) => l.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }, 1_800_000);
});
