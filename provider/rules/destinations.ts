/**
 * The host's own addresses as the destinations of ordinary packets (./ordinary): a PortRule speaks for
 * packets to each of them, arriving on each of the host's interfaces (Linux takes a packet for any of
 * its addresses on any interface). A rule that names a destination (`-d`, conntrack `--ctorigdst`)
 * matches the packets to the host's addresses inside it, and none of the others: on a host with one
 * address, `-d <that address>` matches every ordinary packet; an address the host does not have
 * (`-d 224.0.0.251`, a container's) matches none, an exception as before.
 */
import type { Hook } from "./names";
import { address } from "./overlap";
import type { RuleSpec, Table } from "./parse";

/** The destinations the rules of a table name (`-d`, `--ctorigdst`), per table (a Table is read-only). */
const namedIn = new WeakMap<Table, string[]>();
function destinationsNamed(table: Table): string[] {
  let out = namedIn.get(table);
  if (!out) {
    const names = new Set<string>();
    for (const chain of table.chains.values())
      for (const r of chain.rules) {
        if (r.match.destination) names.add(r.match.destination.value);
        for (const o of r.options ?? []) if (o.option === "--ctorigdst" && o.values[0]) names.add(o.values[0]);
      }
    out = [...names];
    namedIn.set(table, out);
  }
  return out;
}

/**
 * The host's addresses, one for each group that every destination these tables (and the rule) name
 * treats alike: a host whose rules name none of its addresses is judged for one of them.
 */
export function distinctAddresses(
  host: readonly string[] | undefined,
  spec: RuleSpec,
  tables: (Table | undefined)[],
): readonly string[] | undefined {
  if (!host || host.length < 2) return host;
  const own = spec.match.destination?.value;
  const names = [...tables.flatMap((t) => (t ? destinationsNamed(t) : [])), ...(own ? [own] : [])];
  const seen = new Map<string, string>();
  for (const a of host) {
    const key = names.map((n) => (address.contains(n, a) ? "1" : "0")).join("");
    if (!seen.has(key)) seen.set(key, a);
  }
  return [...seen.values()];
}

/**
 * The destinations the ordinary packets of `spec` entering on `hook` are addressed to, each judged on its
 * own: the host's addresses that the rule's own `-d` takes; where they are not known (or on FORWARD and
 * OUTPUT, where the destination is not the host), one that no rule names (undefined) or the rule's own
 * `-d` as it is written.
 */
export function destinationsOf(
  spec: RuleSpec,
  hook: Hook,
  host: readonly string[] | undefined,
): (string | undefined)[] {
  const own = spec.match.destination;
  const written = own && !own.negated ? own.value : undefined;
  if (hook !== "in" || !host?.length) return [written];
  if (!own) return [...host];
  const taken = host.filter((a) => address.contains(own.value, a) !== own.negated);
  return taken.length ? taken : [written];
}
