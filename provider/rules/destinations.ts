/**
 * The host's own addresses as the destinations of ordinary packets (./ordinary): a PortRule speaks for
 * packets to each of them, arriving on each of the host's interfaces (Linux takes a packet for any of
 * its addresses on any interface). A rule that names a destination (`-d`, conntrack `--ctorigdst`)
 * matches the packets to the host's addresses inside it, and none of the others: on a host with one
 * address, `-d <that address>` matches every ordinary packet; an address the host does not have
 * (`-d 224.0.0.251`, a container's) matches none, an exception as before.
 */
import type { Hook } from "./names";
import { address, cidr } from "./overlap";
import type { Chain, RuleSpec, Table } from "./parse";

/** The networks the rules of a chain name as destinations (`-d`, `--ctorigdst`), parsed once per chain (a
 * Chain is read-only: an edit makes a new one, and a table's unchanged chains stay the same objects). */
type Net = NonNullable<ReturnType<typeof cidr>>;
const namedIn = new WeakMap<Chain, Net[]>();
function destinationsNamed(chain: Chain): Net[] {
  let out = namedIn.get(chain);
  if (!out) {
    const names = new Set<string>();
    for (const r of chain.rules) {
      if (r.match.destination) names.add(r.match.destination.value);
      for (const o of r.options ?? []) if (o.option === "--ctorigdst" && o.values[0]) names.add(o.values[0]);
    }
    out = [...names].map(cidr).filter((n): n is Net => n !== undefined);
    namedIn.set(chain, out);
  }
  return out;
}

/** Whether network `n` holds address `a` (both parsed). */
const holds = (n: Net, a: Net) => n[0].kind() === a[0].kind() && a[1] >= n[1] && a[0].match(n);

/** Per chain and address: which of the chain's named destinations hold the address ("" for none). */
const keysIn = new WeakMap<Chain, Map<string, string>>();
function keyIn(chain: Chain, a: string): string {
  const keys = keysIn.get(chain) ?? keysIn.set(chain, new Map()).get(chain)!;
  let key = keys.get(a);
  if (key === undefined) {
    const parsed = cidr(a);
    key = parsed
      ? destinationsNamed(chain)
          .flatMap((n, i) => (holds(n, parsed) ? [i] : []))
          .join(",")
      : "";
    keys.set(a, key);
  }
  return key;
}

/**
 * The host's addresses, one for each group that every destination these tables (and the rule) name
 * treats alike: a host whose rules name none of its addresses is judged for one of them. (A Kubernetes
 * node's nat table names thousands of service addresses: each chain's answer is kept per address.)
 */
export function distinctAddresses(
  host: readonly string[] | undefined,
  spec: RuleSpec,
  tables: (Table | undefined)[],
): readonly string[] | undefined {
  if (!host || host.length < 2) return host;
  const own = spec.match.destination?.value;
  const chains = tables.flatMap((t) => (t ? [...t.chains.values()] : []));
  const groups = new Map<string, string>();
  for (const a of host) {
    const parts = chains.flatMap((c, i) => {
      const k = keyIn(c, a);
      return k ? [`${i}:${k}`] : [];
    });
    const key = `${own && address.contains(own, a) ? 1 : 0} ${parts.join(" ")}`;
    if (!groups.has(key)) groups.set(key, a);
  }
  return [...groups.values()];
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
