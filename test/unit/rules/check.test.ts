import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { check, UNKNOWN } from "../../../provider/rules";

const base = { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT" };
const failuresOf = (news: Record<string, unknown>) => check({}, { ...base, ...news }).failures;
/** The one failure for the property, asserting there is exactly one in all. */
function only(news: Record<string, unknown>, property: string) {
  const failures = failuresOf(news);
  expect(failures.map((f) => f.property)).toEqual([property]);
  return failures[0].reason;
}

describe("check: defaults and normalization", () => {
  it("fills defaults", () => {
    const { inputs, failures } = check({}, base);
    expect(failures).toEqual([]);
    expect(inputs).toEqual({
      connection: {
        host: "198.18.0.10",
        port: 22,
        user: "root",
        dialErrorLimit: 10,
        perDialTimeout: 15,
        maxConcurrentDials: 8,
        sudo: false,
      },
      port: 2222,
      ports: "2222",
      protocol: "tcp",
      action: "ACCEPT",
      chain: "INPUT",
      table: "filter",
      ipVersion: "both",
      defaults: {},
      position: "auto",
      persist: false,
      allowLockout: false,
      adopt: false,
      heal: true,
      rollbackAfter: 30,
    });
  });

  it("normalizes case, ports, CIDRs, positions and REJECT's default", () => {
    const { inputs, failures } = check(
      {},
      {
        ...base,
        protocol: "UDP",
        action: "reject",
        port: [8443, "8000-8100", { from: 53, to: 53 }, 8050, "8443", "9000:9001"],
        source: "fd00:0:0:0::/64",
        ipVersion: "IPv6",
        chain: "INPUT",
        position: "3",
      },
    );
    expect(failures).toEqual([]);
    expect(inputs).toMatchObject({
      protocol: "udp",
      action: "REJECT",
      port: [53, { from: 8000, to: 8100 }, 8443, { from: 9000, to: 9001 }],
      ports: "53,8000:8100,8443,9000:9001",
      source: "fd00::/64",
      chain: "INPUT",
      position: 3,
      rejectWith: "icmp6-port-unreachable",
    });
    expect(check({}, { ...base, port: "8000:8100" }).inputs.ports).toBe("8000:8100");
    expect(check({}, { ...base, port: ["22"] }).inputs.port).toBe(22);
    expect(check({}, { ...base, source: "198.18.0.7" }).inputs.source).toBe("198.18.0.7/32");
    expect(check({}, { ...base, action: "REJECT", ipVersion: "both" }).inputs.rejectWith).toBe("port-unreachable");
    expect(
      check(
        {},
        {
          ...base,
          connection: {
            host: "h",
            hostKey: `198.18.0.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f root@h `,
          },
        },
      ).inputs.connection.hostKey,
    ).toBe("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f");
    // One reading of a host key for the schema and the SSH layer: MD5 and truncated keys fail check.
    for (const bad of [`MD5:${"ab:".repeat(15)}ab`, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGaXS"])
      expect(check({}, { ...base, connection: { host: "h", hostKey: bad } }).failures[0].property).toBe(
        "connection.hostKey",
      );
  });

  it("tolerates unknown values anywhere during preview", () => {
    const news = {
      connection: { host: UNKNOWN, privateKey: UNKNOWN, proxy: UNKNOWN },
      port: UNKNOWN,
      action: UNKNOWN,
      source: UNKNOWN,
      rejectWith: "tcp-reset",
      ipVersion: UNKNOWN,
    };
    const { inputs, failures } = check({}, news);
    expect(failures).toEqual([]);
    expect(inputs).toMatchObject({
      port: UNKNOWN,
      ports: UNKNOWN,
      action: UNKNOWN,
      source: UNKNOWN,
      connection: { host: UNKNOWN, port: 22 },
    });
    expect(check({}, { ...base, connection: UNKNOWN }).failures).toEqual([]);
    expect(check({}, { ...base, port: [80, UNKNOWN] }).inputs).toMatchObject({ port: [80, UNKNOWN], ports: UNKNOWN });
    expect(check({}, { ...base, port: { from: 8000, to: UNKNOWN } }).failures).toEqual([]);
    // a known value still gets checked next to unknown ones
    expect(check({}, { ...base, action: UNKNOWN, port: 70000 }).failures.map((f) => f.property)).toEqual(["port"]);
  });
});

describe("check: the bad inputs of issue 5", () => {
  it("port 70000", () => expect(only({ port: 70000 }, "port")).toMatch(/must be a port 1-65535/));
  it('source "10.0.0.0/33"', () =>
    expect(only({ source: "10.0.0.0/33" }, "source")).toMatch(/prefix length of \/33, but IPv4 allows \/0 to \/32/));
  it("rejectWith on ACCEPT", () =>
    expect(only({ rejectWith: "tcp-reset" }, "rejectWith")).toMatch(
      /only applies to action REJECT.*set action: "REJECT"/,
    ));
  it('comment "; reboot #', () =>
    expect(only({ comment: '"; reboot #' }, "comment")).toMatch(/may only contain letters, digits/));
});

describe("check: every rule of issue 4", () => {
  it.each([
    ["range start after end", { port: "8100-8000" }, "port", /starts after it ends: write it as 8000-8100/],
    ["port 0", { port: 0 }, "port", /1-65535/],
    ["a bad item of a list names its index", { port: [80, "http"] }, "port[1]", /got "http"/],
    [
      "more than 15 multiport slots (a range counts 2)",
      { port: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, "100-200"] },
      "port",
      /lists 16 port slots but .* at most 15/,
    ],
    ["protocol other than tcp/udp", { protocol: "icmp" }, "protocol", /one of tcp, udp/],
    ["action", { action: "ALLOW" }, "action", /one of ACCEPT, DROP, REJECT/],
    ["adopt not a boolean", { adopt: "yes" }, "adopt", /must be true or false/],
    [
      "a port list in DOCKER-USER",
      { chain: "DOCKER-USER", port: [80, 443] },
      "port",
      /one port or one range, not a list: make one PortRule per port or range/,
    ],
    [
      "icmp6 reject type on IPv4",
      { action: "REJECT", rejectWith: "icmp6-adm-prohibited", ipVersion: "ipv4" },
      "rejectWith",
      /not a reject type for ipVersion ipv4/,
    ],
    [
      "icmp reject type on IPv6",
      { action: "REJECT", rejectWith: "icmp-host-prohibited", ipVersion: "ipv6" },
      "rejectWith",
      /not a reject type for ipVersion ipv6/,
    ],
    [
      "family-specific type with both",
      { action: "REJECT", rejectWith: "icmp-port-unreachable", ipVersion: "both" },
      "rejectWith",
      /tcp-reset, port-unreachable/,
    ],
    [
      "tcp-reset with udp",
      { action: "REJECT", rejectWith: "tcp-reset", protocol: "udp" },
      "rejectWith",
      /tcp-reset only works with protocol tcp/,
    ],
    [
      "IPv6 source with ipv4",
      { source: "fd00::/64", ipVersion: "ipv4" },
      "source",
      /IPv6 network but ipVersion is ipv4/,
    ],
    ["any source with both", { source: "198.18.0.0/24", ipVersion: "both" }, "source", /cannot apply to both families/],
    ["host bits set", { source: "198.18.0.5/24" }, "source", /the network is 198.18.0.0\/24/],
    ["not an address", { source: "example.com" }, "source", /IPv4 or IPv6 address or network/],
    ["0.0.0.0/0", { source: "0.0.0.0/0" }, "source", /leave source out/],
    ["chain over 28 chars", { chain: "A".repeat(29) }, "chain", /at most 28/],
    ["chain with whitespace", { chain: "MY CHAIN" }, "chain", /no spaces/],
    ["chain named like a target", { chain: "DROP" }, "chain", /is a target/],
    [
      "chain that is not in the table",
      { table: "raw", chain: "INPUT" },
      "chain",
      /raw table has no INPUT chain; its built-in chains are PREROUTING, OUTPUT/,
    ],
    ["REJECT outside filter", { table: "mangle", action: "REJECT" }, "action", /REJECT only works in the filter table/],
    ["DROP in nat", { table: "nat", chain: "PREROUTING", action: "DROP" }, "action", /nat table is not for filtering/],
    ["interface name too long", { inInterface: "a-very-long-ifname" }, "inInterface", /at most 15/],
    ["interface wildcard in the middle", { inInterface: "et+h" }, "inInterface", /ending in \+/],
    ["-i in OUTPUT", { chain: "OUTPUT", inInterface: "eth0" }, "inInterface", /cannot be used in the OUTPUT chain/],
    ["comment too long for the tag", { comment: "x".repeat(127) }, "comment", /at most 126 characters/],
    ["comment with the tag prefix", { comment: "pulumi-iptables:x" }, "comment", /marks the identity tag/],
    ["position 0", { position: 0 }, "position", /line number of 1 or more/],
    ["unknown property", { ports: 22 }, "ports", /not a known property/],
    [
      "host with a space",
      { connection: { host: "198.18.0.10 ; id" } },
      "connection.host",
      /host name or an IPv4\/IPv6 address/,
    ],
    ["missing host", { connection: {} }, "connection.host", /is required/],
    [
      "key path instead of key",
      { connection: { host: "h", privateKey: "~/.ssh/id_ed25519" } },
      "connection.privateKey",
      /not a file path/,
    ],
    ["bad host key", { connection: { host: "h", hostKey: "AAAA" } }, "connection.hostKey", /ssh-ed25519 AAAA/],
    ["proxy host", { connection: { host: "h", proxy: { host: "" } } }, "connection.proxy.host", /host name/],
    ["ssh port", { connection: { host: "h", port: 0 } }, "connection.port", /between 1 and 65535/],
    [
      "handshakes at once: more than the process runs",
      { connection: { host: "h", maxConcurrentDials: 11 } },
      "connection.maxConcurrentDials",
      /at most 10: the provider runs at most 10 SSH handshakes at once in all; leave it out for 8/,
    ],
    [
      "handshakes at once: none",
      { connection: { host: "h", maxConcurrentDials: 0 } },
      "connection.maxConcurrentDials",
      /from 1 to 10/,
    ],
    [
      "handshakes at once: a fraction",
      { connection: { host: "h", maxConcurrentDials: 2.5 } },
      "connection.maxConcurrentDials",
      /whole number/,
    ],
    [
      "jump host's handshakes at once as text",
      { connection: { host: "h", proxy: { host: "j", maxConcurrentDials: "4" } } },
      "connection.proxy.maxConcurrentDials",
      /must be a number of SSH handshakes at once, e\.g\. 4/,
    ],
  ])("%s", (_, news, property, reason) => {
    expect(only(news as Record<string, unknown>, property)).toMatch(reason);
  });

  it("it accepts exactly 15 slots", () =>
    expect(failuresOf({ port: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, "100-200"] })).toEqual([]));

  it("names every missing required property and never echoes secrets", () => {
    expect(check({}, {}).failures.map((f) => f.property)).toEqual(["connection", "port", "action"]);
    const r = check({}, { ...base, connection: { host: "h", password: 12345678, privateKey: "hunter2-secret" } });
    expect(JSON.stringify(r.failures)).not.toMatch(/12345678|hunter2/);
  });
});

describe("check on garbage (fast-check)", () => {
  const nasty = fc.oneof(
    fc.string({ unit: "binary" }),
    fc.string({
      unit: fc.constantFrom(
        "\0",
        ";",
        "`",
        "$(",
        "'",
        '"',
        "\n",
        "#",
        "|",
        "&",
        " ",
        "-",
        "/",
        "+",
        ":",
        "é",
        "🔥",
        "\u202e",
      ),
    }),
    fc.string({ minLength: 5000, maxLength: 20000 }),
  );
  const value = fc.letrec((tie) => ({
    any: fc.oneof(
      { depthSize: "small" },
      fc.anything(),
      nasty,
      fc.constant(UNKNOWN),
      fc.integer(),
      fc.double(),
      tie("obj"),
      fc.array(tie("any"), { maxLength: 20 }),
    ),
    obj: fc.dictionary(
      fc.constantFrom("host", "port", "from", "to", "user", "proxy", "privateKey", "__proto__", "constructor"),
      tie("any"),
      { maxKeys: 5 },
    ),
  })).any;
  const news = fc.record(
    {
      connection: fc.oneof(
        value,
        fc.record(
          { host: value, port: value, user: value, hostKey: value, proxy: value, sudo: value },
          { requiredKeys: [] },
        ),
      ),
      port: value,
      protocol: value,
      action: value,
      rejectWith: value,
      chain: value,
      table: value,
      source: value,
      inInterface: value,
      comment: value,
      ipVersion: value,
      position: value,
      persist: value,
      adopt: value,
      extra: value,
    },
    { requiredKeys: [] },
  );

  it("never throws and every failure names a property and a reason", () => {
    fc.assert(
      fc.property(news, (n) => {
        const { failures } = check({}, n as Record<string, unknown>);
        for (const f of failures) {
          expect(f.property).toMatch(
            /^(inputs|connection|port|protocol|action|rejectWith|chain|table|source|inInterface|comment|ipVersion|position|persist|adopt|extra)\b/,
          );
          expect(f.reason.length).toBeGreaterThan(5);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("never throws on non-objects either", () => {
    fc.assert(
      fc.property(
        fc.anything().filter((x) => typeof x !== "object" || x === null || Array.isArray(x)),
        (n) => {
          const { failures } = check({}, n as Record<string, unknown>);
          expect(failures.length).toBeGreaterThan(0);
          expect(failures[0].property).toBe("inputs");
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("check: rollbackAfter", () => {
  it.each([
    [1, /at least 2 seconds/],
    [2.5, /whole number/],
    [7200, /at most 3600/],
    ["30", /number of seconds/],
  ])("refuses %j with a reason", (value, reason) => {
    expect(only({ rollbackAfter: value }, "rollbackAfter")).toMatch(reason);
  });
  it("keeps a valid value", () => {
    expect(check({}, { ...base, rollbackAfter: 5 }).inputs.rollbackAfter).toBe(5);
  });
});

describe("issue 21.9: messages that say what is wrong", () => {
  it("refuses a built-in chain's name in lower case (chain names are case-sensitive), naming the fix", () => {
    expect(only({ chain: "input" }, "chain")).toBe(
      'must be "INPUT": iptables chain names are case-sensitive, and the built-in chain is upper case',
    );
    expect(only({ chain: "Forward" }, "chain")).toMatch(/^must be "FORWARD"/);
    expect(failuresOf({ chain: "INPUT" })).toEqual([]);
  });

  it("says how many items a list of over 100 ports has, and the multiport limit", () => {
    const port = Array.from({ length: 101 }, (_, i) => 1000 + i);
    expect(only({ port }, "port")).toBe(
      "lists 101 items but iptables' multiport match takes at most 15 ports: split the rule",
    );
  });

  it("refuses a perDialTimeout under one second", () => {
    expect(only({ connection: { host: "198.18.0.10", perDialTimeout: 0.001 } }, "connection.perDialTimeout")).toBe(
      "must be at least 1 second: an SSH handshake and every remote step need that much",
    );
    expect(failuresOf({ connection: { host: "198.18.0.10", perDialTimeout: 1 } })).toEqual([]);
  });
});
