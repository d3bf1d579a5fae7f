// The guards: the insert guard (would a rule cut off the provider's own SSH connection?), the operator's
// opt-in to a lockout, the host keys recorded in state, the secrets kept out of errors, and which changes
// are confirmed over a fresh SSH connection.
import { afterEach, describe, expect, it } from "vitest";
import { deleteGuard, guarded, insertGuard, mayLockOut, rememberPins, secretsOf } from "../../../provider/guards";
import { withDeleted, withInserted } from "../../../provider/host/ruleset-text";
import { parseRuleset, renderRule, ruleText } from "../../../provider/rules";
import type { Ruleset } from "../../../provider/rules";
import { addressOf, forgetPins, pinsOf } from "../../../provider/ssh";
import { base, checked } from "./inputs";

describe("mayLockOut: which changes are confirmed over a fresh SSH connection", () => {
  const rule = async (args: Record<string, unknown>) => (await checked({ ...base, ...args })) as any;
  it.each([
    ["a DROP of the SSH port on INPUT", { port: 22, action: "DROP" }, "insert", true],
    ["a DROP of another port", { port: 8080, action: "DROP" }, "insert", false],
    ["a DROP of 22 with allowLockout (meant)", { port: 22, action: "DROP", allowLockout: true }, "insert", false],
    ["a REJECT of a range holding 22", { port: "20-30", action: "REJECT" }, "insert", true],
    ["a DROP of 22 on FORWARD", { port: 22, action: "DROP", chain: "FORWARD" }, "insert", false],
    ["an ACCEPT of 22", { port: 22 }, "insert", false],
    ["the delete of an ACCEPT of 22", { port: 22 }, "delete", true],
    ["the delete of an ACCEPT of 22 with allowLockout (meant)", { port: 22, allowLockout: true }, "delete", false],
    ["the delete of a DROP of 22", { port: 22, action: "DROP" }, "delete", false],
    ["a udp DROP of 22", { port: 22, action: "DROP", protocol: "udp" }, "insert", false],
  ] as const)("%s: %s", async (_what, args, change, expected) => {
    expect(mayLockOut(await rule(args), change)).toBe(expected);
  });
});

describe("the insert guard: would the rule cut off the provider's own SSH connection?", () => {
  const origin = { clientAddress: "198.18.0.1", serverPort: 22 };
  const guardOf = async (args: Record<string, unknown>, warn: string[] = []) =>
    insertGuard((await checked({ ...base, ...args })) as any, { warn: (m) => warn.push(m) });
  const empty = parseRuleset("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
  /** The guard's answer for the rule `args` inserted at line 1 of its chain on `before` (an empty INPUT). */
  const judged = async (args: Record<string, unknown>, o: typeof origin = origin, before = empty) => {
    const inputs = await checked({ ...base, ...args });
    const f = o.clientAddress.includes(":") ? 6 : 4;
    const after = withInserted(
      before,
      "filter",
      inputs.chain,
      1,
      ruleText(inputs.chain, renderRule(inputs as never, f, "t")),
    );
    return (await guardOf(args))?.(o, f, before, after);
  };

  it("refuses a DROP that matches the connection, naming it and the way out", async () => {
    expect(await judged({ port: 22, action: "DROP" })).toBe(
      "this DROP rule on INPUT would match the provider's own SSH connection (tcp from 198.18.0.1 to port 22) " +
        'and cut it off: narrow "port" or "source", or set allowLockout: true if that is really intended',
    );
  });

  it("lets one through that does not match: another port, another source, the other family", async () => {
    expect(await judged({ port: 2222, action: "DROP" })).toBeUndefined();
    expect(await judged({ port: 22, action: "DROP", source: "198.18.9.0/24" })).toBeUndefined();
    const both = await guardOf({ port: 22, action: "DROP", ipVersion: "both" });
    expect(both?.(origin, 6, empty, empty)).toBeUndefined();
  });

  it("has nothing to guard for an ACCEPT, or on a chain the provider's packets do not cross", async () => {
    expect(await guardOf({ port: 22 })).toBeUndefined();
    expect(await guardOf({ port: 22, action: "DROP", chain: "FORWARD" })).toBeUndefined();
  });

  it("with allowLockout: goes ahead, and says so", async () => {
    const warn: string[] = [];
    const guard = await guardOf({ port: 22, action: "DROP", allowLockout: true }, warn);
    const after = withInserted(empty, "filter", "INPUT", 1, "-A INPUT -p tcp -m tcp --dport 22 -j DROP");
    expect(guard?.(origin, 4, empty, after)).toBeUndefined();
    expect(warn).toEqual([expect.stringMatching(/^allowLockout is set, so this goes ahead: this DROP rule on INPUT/)]);
  });
});

describe("the lockout guards on a zone firewall: the SSH packets arrive on one interface", () => {
  // Shorewall- or firewalld-like: the interface picks the zone's chain; SSH is open in eth0's zone only.
  const zones = parseRuleset(
    [
      "*filter",
      ":INPUT DROP [0:0]",
      ":zone-a - [0:0]",
      ":zone-b - [0:0]",
      "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-A INPUT -i eth0 -j zone-a",
      "-A INPUT -i eth1 -g zone-b",
      "-A zone-a -p tcp -m tcp --dport 22 -j ACCEPT",
      "-A zone-b -p tcp -m tcp --dport 8080 -j ACCEPT",
      "COMMIT",
      "",
    ].join("\n"),
  );
  const viaEth0 = { clientAddress: "198.18.0.1", serverPort: 22, serverAddress: "198.18.0.2", inInterface: "eth0" };
  const host = { interfaces: ["eth0", "eth1"], addresses: ["198.18.0.2", "198.18.1.2"] };
  const insert = async (args: Record<string, unknown>, o: object = viaEth0) => {
    const inputs = await checked({ ...base, port: 22, action: "DROP", ...args });
    const text = ruleText(inputs.chain, renderRule(inputs as never, 4, "t"));
    const after = withInserted(zones, "filter", inputs.chain, 1, text);
    return insertGuard(inputs as never, {})!(o as never, 4, zones, after, host);
  };

  it("refuses a DROP of 22 in the zone the connection arrives in, not in another zone's chain or interface", async () => {
    expect(await insert({ chain: "zone-a" })).toMatch(/would match the provider's own SSH connection/);
    expect(await insert({ chain: "zone-b" })).toBeUndefined();
    expect(await insert({ inInterface: "eth1" })).toBeUndefined();
    expect(await insert({ inInterface: "eth0" })).toMatch(/cut it off/);
  });

  it("without the interface (a host without ip), judges each of the host's interfaces: zone-b still cuts nothing", async () => {
    const unknown = { clientAddress: "198.18.0.1", serverPort: 22, serverAddress: "198.18.0.2" };
    expect(await insert({ chain: "zone-b" }, unknown)).toBeUndefined();
    expect(await insert({ chain: "zone-a" }, unknown)).toMatch(/cut it off/);
  });

  it("lets a DROP through below a rule that accepts the provider's own address; where the model cannot see SSH accepted, refuses", async () => {
    const admin = withInserted(zones, "filter", "zone-a", 1, "-A zone-a -s 198.18.0.1/32 -j ACCEPT");
    const inputs = await checked({ ...base, port: 22, action: "DROP", chain: "zone-a" });
    const below = withInserted(admin, "filter", "zone-a", 2, ruleText("zone-a", renderRule(inputs as never, 4, "t")));
    expect(insertGuard(inputs as never, {})!(viaEth0, 4, admin, below, host)).toBeUndefined();
    const limited = parseRuleset(
      "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -m limit --limit 3/min -j ACCEPT\nCOMMIT\n",
    );
    const after = withInserted(limited, "filter", "INPUT", 2, ruleText("INPUT", renderRule(inputs as never, 4, "t")));
    expect(insertGuard(inputs as never, {})!(viaEth0, 4, limited, after, host)).toMatch(/cut it off/);
  });

  it("refuses removing zone-a's ACCEPT of 22, which a model of an unnamed interface let through", () => {
    const accept = "-A zone-a -p tcp -m tcp --dport 22 -j ACCEPT";
    const props = { action: "ACCEPT", table: "filter", chain: "zone-a", tag: "t", rules: { ipv4: accept } } as any;
    const gone = withDeleted(zones, "filter", "zone-a", 1);
    const guard = deleteGuard(props, {})!;
    expect(guard(viaEth0, 4, zones, gone, host)).toMatch(
      /new SSH connections from 198\.18\.0\.1 to port 22 are accepted now \(by -A zone-a -p tcp -m tcp --dport 22 -j ACCEPT\), and would then be refused \(by the INPUT policy DROP\) on eth0, where they arrive, so no later/,
    );
    expect(guard({ clientAddress: "198.18.0.1", serverPort: 22 }, 4, zones, gone)).toBeUndefined();
    // Arriving on eth1, SSH was never accepted: removing it cuts nothing there.
    expect(guard({ ...viaEth0, inInterface: "eth1" }, 4, zones, gone, host)).toBeUndefined();
  });
});

describe("the host keys recorded in state", () => {
  afterEach(() => forgetPins());
  const FP = `SHA256:${"p".repeat(43)}`;
  const JUMP = `SHA256:${"j".repeat(43)}`;
  const conn = { host: "198.18.3.1", port: 22, proxy: { host: "198.18.3.2", port: 2200 } };

  it("are pinned to the host's and the jump host's addresses", () => {
    rememberPins({ connection: conn, hostKeyFingerprint: FP, proxyHostKeyFingerprint: JUMP } as any);
    expect(pinsOf(addressOf(conn)).map((p) => p.fingerprint)).toEqual([FP]);
    expect(pinsOf(addressOf(conn.proxy)).map((p) => p.fingerprint)).toEqual([JUMP]);
  });

  it("give way to a hostKey given in the connection (how a new key is accepted)", () => {
    const given = { ...conn, hostKey: FP, proxy: { ...conn.proxy, hostKey: JUMP } };
    rememberPins({ connection: given, hostKeyFingerprint: FP, proxyHostKeyFingerprint: JUMP } as any);
    expect(pinsOf(addressOf(conn))).toEqual([]);
    expect(pinsOf(addressOf(conn.proxy))).toEqual([]);
  });
});

describe("secrets", () => {
  it("every secret of a connection and its jump host is redacted from what a step throws", async () => {
    const conn = { password: "pw-1", privateKey: "key-2", proxy: { privateKeyPassword: "pass-3" } } as any;
    expect(secretsOf(conn).filter(Boolean)).toEqual(["pw-1", "key-2", "pass-3"]);
    const step = async () => {
      throw new Error("failed with pw-1, key-2 and pass-3");
    };
    const e = await guarded(conn, step).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(e?.message).not.toMatch(/pw-1|key-2|pass-3/);
    expect(await guarded(conn, async () => 7)).toBe(7);
  });
});

describe("the removal guard: would the host stop accepting the provider's SSH connections without the rule?", () => {
  const origin = { clientAddress: "198.18.0.1", serverPort: 22 };
  const rule = (port: number) =>
    `-A INPUT -p tcp -m tcp --dport ${port} -m comment --comment pulumi-iptables:web/prod/r${port}/abc -j ACCEPT`;
  const before = parseRuleset(
    `*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n${rule(22)}\n${rule(8080)}\nCOMMIT\n`,
  );
  const props = (port: number) =>
    ({ action: "ACCEPT", table: "filter", chain: "INPUT", tag: `t${port}`, rules: { ipv4: rule(port) } }) as any;
  const gone = (port: number) =>
    withDeleted(
      before,
      "filter",
      "INPUT",
      before.tables
        .get("filter")!
        .chains.get("INPUT")!
        .rules.findIndex((r) => r.text === rule(port)) + 1,
    );

  it("refuses removing the rule that accepts them", () => {
    const guard = deleteGuard(props(22), {})!;
    expect(guard(origin, 4, before, gone(22))).toMatch(/would lock the provider out of the host/);
  });

  it("does not judge the chain for a rule that cannot match their packets (another port)", () => {
    const guard = deleteGuard(props(8080), {})!;
    const unread = new Proxy({} as Ruleset, {
      get: () => {
        throw new Error("the ruleset after the removal was read");
      },
    });
    expect(guard(origin, 4, before, unread)).toBeUndefined();
    expect(guard(origin, 4, before, gone(8080))).toBeUndefined();
  });
});
