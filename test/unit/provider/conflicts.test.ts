// Conflicts between the PortRules of one run (provider/conflicts.ts): found in Check whichever rule is
// checked first, with the same message; rules that say which wins pass.
import { describe, expect, it } from "vitest";
import { clashes, conflictOf, winnerOf } from "../../../provider/conflicts";
import { check } from "../../../provider/rules";
import type { RuleInputs } from "../../../provider/rules";

let hosts = 0;
/** Two rules on a host of their own (the registry is process-wide). */
function pair(a: Record<string, unknown>, b: Record<string, unknown>): [RuleInputs, RuleInputs] {
  const host = `198.18.7.${++hosts}`;
  const one = (name: string, args: Record<string, unknown>) => {
    const r = check({}, { connection: { host }, port: 9500, identity: { project: "p", stack: "s", name }, ...args });
    expect(r.failures).toEqual([]);
    return r.inputs;
  };
  return [one("allow", a), one("block", b)];
}

/** The conflict found when `first` is checked before `second` (undefined: none). */
const inOrder = (first: RuleInputs, second: RuleInputs) => [conflictOf(first), conflictOf(second)];

describe("conflicts between the rules of a run", () => {
  it("ACCEPT and DROP of tcp 9500, both auto: the second checked fails, naming both, in the same words either way", () => {
    const [a, b] = pair({ action: "ACCEPT" }, { action: "DROP" });
    const [c, d] = pair({ action: "ACCEPT" }, { action: "DROP" });
    const one = inOrder(a, b);
    const other = inOrder(d, c);
    expect(one[0]).toBeUndefined();
    expect(other[0]).toBeUndefined();
    expect(one[1]).toBe(
      `PortRule "allow" (ACCEPT tcp 9500, position auto) and PortRule "block" (DROP tcp 9500, position auto) ` +
        `match the same packets on ${a.connection.host} (filter INPUT, ipv4 and ipv6) with different verdicts, and neither ` +
        "says which wins: whichever pulumi up inserted second would go above the other and decide those packets. " +
        "Say which wins: give the exception a source inside the other's (it goes above it, for that source; " +
        'position "auto" or "top" for it, "auto" or "bottom" for the other), or give both explicit, different ' +
        'positions ("top" = line 1 < 2 < ... < "bottom": the smaller one is above), or remove one of them',
    );
    expect(other[1]).toBe(one[1]?.replace(a.connection.host, c.connection.host));
  });

  it("checking a rule again (its replacement or update in the same run) replaces its entry: no conflict with its old self", () => {
    const [a, b] = pair({ action: "ACCEPT" }, { action: "ACCEPT", port: 9600 });
    expect(inOrder(a, b)).toEqual([undefined, undefined]);
    expect(conflictOf({ ...a, action: "DROP" })).toBeUndefined(); // "allow" is now a DROP: its old ACCEPT is gone
    expect(conflictOf({ ...b, port: 9500, ports: "9500" })).toMatch(
      /^PortRule "allow" \(DROP tcp 9500.* and PortRule "block" \(ACCEPT tcp 9500/,
    );
  });

  const cases: [string, Record<string, unknown>, Record<string, unknown>, "allow" | "block" | "conflict" | "none"][] = [
    ["a narrower source, both auto", { source: "198.18.0.0/24" }, {}, "allow"],
    ["a source inside the other's source", { source: "198.18.0.0/24" }, { source: "198.18.0.0/16" }, "allow"],
    ["the same source", { source: "198.18.0.0/24" }, { source: "198.18.0.0/24" }, "conflict"],
    [
      "a narrower source placed top, the broader bottom",
      { source: "198.18.0.0/24", position: "top" },
      { position: "bottom" },
      "allow",
    ],
    ["a narrower source, the broader placed top", { source: "198.18.0.0/24" }, { position: "top" }, "conflict"],
    ["a narrower source at line 2", { source: "198.18.0.0/24", position: 2 }, {}, "conflict"],
    ["explicit positions 3 and 1", { position: 3 }, { position: 1 }, "block"],
    ["top and bottom", { position: "top" }, { position: "bottom" }, "allow"],
    ["top and line 1", { position: "top" }, { position: 1 }, "conflict"],
    ["one explicit position, the other auto", { position: 2 }, {}, "conflict"],
    ["a narrower interface (auto moves the broader above it)", { inInterface: "eth0" }, {}, "conflict"],
    ["a narrower port range", { port: 9500 }, { port: "9000-9999" }, "conflict"],
    ["disjoint ports", { port: 9501 }, {}, "none"],
    ["other protocols", { protocol: "udp" }, {}, "none"],
    ["other families", { ipVersion: "ipv6" }, { ipVersion: "ipv4" }, "none"],
    ["both families against ipv6", { ipVersion: "both" }, { ipVersion: "ipv6" }, "conflict"],
    ["other chains", { chain: "FORWARD" }, {}, "none"],
    ["other interfaces", { inInterface: "eth0" }, { inInterface: "eth1" }, "none"],
    ["the same verdict", { action: "DROP" }, {}, "none"],
    ["DROP against REJECT", { action: "REJECT" }, {}, "conflict"],
  ];
  it.each(cases)("%s", (_, allow, block, expected) => {
    const [a, b] = pair({ action: "ACCEPT", ...allow }, { action: "DROP", ...block });
    const clash = clashes(a, b).length > 0;
    const winner = winnerOf(a, b)?.identity?.name;
    const found = inOrder(a, b)[1];
    if (expected === "none") expect([clash, found]).toEqual([false, undefined]);
    else if (expected === "conflict") expect([clash, winner, found === undefined]).toEqual([true, undefined, false]);
    else expect([clash, winner, found, winnerOf(b, a)?.identity?.name]).toEqual([true, expected, undefined, expected]);
  });
});
