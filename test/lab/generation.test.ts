// The nf_tables generation as the change detector of a kept conversation (issue 25, host/generation.ts):
// real iptables, nft and the provider's own Perl line. It rises by exactly one per committed restore of
// either family and not for listings; legacy restores leave it. A kept conversation's batches are then
// confirmed from the edited chain alone (no digest, no whole-table listing); where another writer
// committed something in between, the batch falls back (digest, whole table), and the rule still goes
// where the kernel lets its packets through (a real connection).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REACH_CHAINS } from "../../provider/host/confirm-listing";
import { generationIn, generationSection } from "../../provider/host/generation";
import { framed, limitsFor, preamble } from "../../provider/host/protocol";
import { check, create, fromStored, remove } from "../../provider/provider";
import type { PortRuleState } from "../../provider/provider";
import { closeAll, getSession } from "../../provider/ssh";
import { Lab } from "./lab";
import type { LabHost } from "./lab";

let lab: Lab;
beforeAll(async () => {
  lab = await Lab.create();
});
afterAll(async () => {
  await closeAll();
  await lab?.destroy();
});

/** The generation as the provider reads it on `h`. */
async function generation(h: LabHost): Promise<number | undefined> {
  const script = framed(preamble(limitsFor(5, 600)) + generationSection("gen"));
  return generationIn(script.parse(await h.sh(script.script)), "gen");
}

const restore = (h: LabHost, f: 4 | 6, port: number) =>
  h.sh(
    `printf '*filter\\n-I INPUT 1 -p tcp -m tcp --dport ${port} -j ACCEPT\\nCOMMIT\\n' | ${f === 4 ? "iptables" : "ip6tables"}-restore --noflush`,
  );

/** A filter table whose INPUT jumps to FW (holding `fw`) above the SSH accept and a final DROP. */
const withFw = (fw: string[] = []) =>
  [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FW - [0:0]",
    "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A INPUT -j FW",
    "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
    "-A INPUT -j DROP",
    ...fw,
    "COMMIT",
    "",
  ].join("\n");

/** The checked inputs of an IPv4 ACCEPT of tcp `port` on `h` (resource `name`). */
async function acceptInputs(h: LabHost, port: number, name: string) {
  const { inputs, failures } = await check(
    {},
    {
      connection: h.connection(),
      port,
      action: "ACCEPT",
      ipVersion: "ipv4",
      identity: { project: "gen", stack: "lab", name },
    },
  );
  expect(failures).toEqual([]);
  return inputs as any;
}

/** What the host answers on the pooled session of `connection` from now on: each section's name and exit
 * code ("save4 0"), in order; `take` returns them and starts afresh (`text` then holds what they said). */
function tap(connection: Parameters<typeof getSession>[0]): { take: () => string[]; text: string } {
  const session = getSession(connection);
  const open = session.openChannel.bind(session);
  let received = "";
  session.openChannel = async (...args: Parameters<typeof open>) => {
    const c = await open(...args);
    c.channel.on("data", (d: Buffer) => {
      received += d.toString();
    });
    return c;
  };
  const tapped = {
    text: "",
    take: () => {
      const ends = [...received.matchAll(/^@@pit-end \S+ (\S+) (\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
      tapped.text = received;
      received = "";
      return ends;
    },
  };
  return tapped;
}

describe("the nf_tables generation", () => {
  it("rises by one per restore of either family, not for listings; iptables-legacy does not move it", async () => {
    const h = await lab.addHost();
    const g0 = await generation(h);
    expect(g0).toBeTypeOf("number");
    await h.sh(
      "iptables-save >/dev/null; ip6tables-save >/dev/null; iptables -S INPUT >/dev/null; nft list chains >/dev/null",
    );
    expect(await generation(h)).toBe(g0);
    await restore(h, 4, 9401);
    expect(await generation(h)).toBe(g0! + 1);
    await restore(h, 6, 9402);
    expect(await generation(h)).toBe(g0! + 2);
    const legacy = await lab.addHost({ backend: "legacy" });
    const l0 = await generation(legacy);
    await restore(legacy, 4, 9403);
    // Why the provider trusts it on nf_tables only: a legacy change is not a netfilter transaction.
    expect(await generation(legacy)).toBe(l0);
  });

  it("confirms a kept conversation from the edited chain, and falls back where another writer committed", async () => {
    const h = await lab.addHost({ rules: { v4: withFw() }, listen: { tcp: [9411, 9412, 9413] } });
    const accept = async (port: number) => create(await acceptInputs(h, port, `p${port}`));
    // What the host answered, step by step: the sections each step printed, with their exit codes.
    const answers = tap((await acceptInputs(h, 9411, "p9411")).connection);
    const step = answers.take;

    await accept(9411); // begin (the lock, the listing of what INPUT reaches, the generation), then its apply
    const first = step();
    expect(first).toContain("gen 0");
    expect(first).toContain("reach4 0");
    expect(first).toContain("same4 0");
    expect(first.filter((s) => /^(digest4|save4) /.test(s))).toEqual([]);
    await accept(9412); // the kept conversation: the edited chain alone
    const second = step();
    expect(second).not.toContain("gen 0"); // no new lock, no new listing
    expect(second).toContain("same4 0");
    expect(second.filter((s) => /^(digest4|save4) /.test(s))).toEqual([]);
    // Another writer (no lock) drops 9413 in FW, which INPUT jumps to above where the copy would put an ACCEPT.
    // (Within the second the conversation is kept.)
    await h.sh("iptables -A FW -p tcp -m tcp --dport 9413 -j DROP");
    await accept(9413);
    const third = step();
    expect(third).toContain("same4 1");
    expect(third).toContain("digest4 1");
    expect(third.some((s) => s.startsWith("save4 "))).toBe(true);
    // The kernel lets the three ports through: the third went above the writer's DROP.
    for (const port of [9411, 9412, 9413]) expect(await lab.probe(h, port)).toBe("open");
  });

  it("lists what INPUT reaches for a create, not a chain only FORWARD reaches; a custom chain needs the whole table", async () => {
    // BIG: what kube-proxy's KUBE-SERVICES is to a node, reached from FORWARD alone.
    const big = Array.from({ length: 200 }, (_, i) => `-A BIG -d 198.19.0.${i}/32 -p tcp -m tcp --dport 80 -j REJECT`);
    const fw = ["-A FW -p tcp -m tcp --dport 9433 -j DROP", ":BIG - [0:0]", "-A FORWARD -j BIG", ...big];
    const h = await lab.addHost({ rules: { v4: withFw(fw) }, listen: { tcp: [9431, 9432, 9433] } });
    // A hostile comment whose words look like jumps: each is tried as a chain name, as data, never as script.
    const hostile = "x -j $(touch /run/pit-pwned) -j `touch /run/pit-pwned` -j * -j ;touch${IFS}/run/pit-pwned";
    await h.sh(`iptables -I INPUT 2 -p udp -m udp --dport 9 -m comment --comment '${hostile}' -j ACCEPT`);
    const answers = tap((await acceptInputs(h, 9431, "r9431")).connection);
    await create(await acceptInputs(h, 9431, "r9431"));
    const first = answers.take();
    expect(first).toContain("reach4 0");
    expect(first.filter((e) => e.startsWith("save4 "))).toEqual([]);
    expect(answers.text).toContain("-A FW -p tcp -m tcp --dport 9433");
    expect(answers.text).not.toContain("-A BIG "); // nor FORWARD's jump to it, nor its 200 rules
    expect(await h.sh("ls /run/pit-pwned 2>&1 || true")).toContain("No such file");
    expect(await lab.probe(h, 9431)).toBe("open");
    // An ACCEPT of 9433 placed by what INPUT reaches: above the jump to FW, whose DROP would refuse it.
    await create(await acceptInputs(h, 9433, "r9433"));
    answers.take();
    expect(await lab.probe(h, 9433)).toBe("open");
    // In FW (no built-in chain): which built-in chains reach FW is not in the listing; the whole table is.
    await create({ ...(await acceptInputs(h, 9432, "r9432")), chain: "FW" });
    expect(answers.take()).toContain("save4 0");
    expect(await lab.probe(h, 9432)).toBe("open");
  });

  it("lists the whole table where INPUT reaches more chains than are worth listing one by one", async () => {
    const many = Array.from({ length: REACH_CHAINS }, (_, i) => `C${i}`);
    const fw = [
      ...many.map((c) => `:${c} - [0:0]`),
      ...many.map((c) => `-A FW -p tcp -m tcp --dport ${9440 + many.indexOf(c)} -j ${c}`),
      ...many.map((c) => `-A ${c} -j RETURN`),
    ];
    const h = await lab.addHost({ rules: { v4: withFw(fw) }, listen: { tcp: [9449] } });
    const answers = tap((await acceptInputs(h, 9449, "m9449")).connection);
    await create(await acceptInputs(h, 9449, "m9449"));
    const first = answers.take();
    expect(first).toContain("reach4 1");
    expect(first).toContain("save4 0");
    expect(await lab.probe(h, 9449)).toBe("open");
  });

  it("destroys from the chain alone, and lists the whole table where the removal guard judges the SSH port", async () => {
    const fw = Array.from({ length: 50 }, (_, i) => `-A FW -p tcp -m tcp --dport ${30000 + i} -j REJECT`);
    const h = await lab.addHost({ rules: { v4: withFw(fw) }, listen: { tcp: [9421, 9422] } });
    const before = await h.ruleset(4);
    const made = async (port: number) =>
      fromStored<PortRuleState>((await create(await acceptInputs(h, port, `d${port}`))).outs);
    const rules2 = await Promise.all([made(9421), made(9422)]);
    const ssh = await made(22); // matches the provider's own SSH packets: its removal is judged
    for (const port of [9421, 9422]) expect(await lab.probe(h, port)).toBe("open");
    await closeAll(); // a destroy is a fresh process: a fresh conversation, which takes the lock and lists
    const answers = tap(rules2[0].connection as any);
    await Promise.all(rules2.map((r) => remove(r.tag, r)));
    const first = answers.take();
    expect(first).toContain("lock 0");
    expect(first).toContain("chains4 0");
    expect(first.filter((e) => e.startsWith("save4 "))).toEqual([]); // not one listing of the whole table
    for (const port of [9421, 9422]) expect(await lab.probe(h, port)).toBe("timeout");
    await remove(ssh.tag, ssh);
    // The chain alone first; the guard's walk needs the whole table, listed in the same shell (one lock).
    const third = answers.take();
    expect(third.filter((e) => /^(lock|chains4|save4) /.test(e))).toEqual([
      "lock 0",
      "chains4 0",
      "save4 0",
      "chains4 0",
    ]);
    expect(await h.ruleset(4)).toBe(before);
  });
});
