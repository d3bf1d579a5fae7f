/**
 * Connection and rate limits (`-m connlimit`, `-m hashlimit`) against the ordinary packets: counted per
 * source address, a limit singles out sources over it (an exception, like a ban); counted for everyone
 * (`--connlimit-daddr`, a source mask many clients share, `hashlimit` without a `src*` mode), whether
 * ordinary packets are over it depends on all the traffic, so it may go either way.
 */
import { ALL, NONE, type Share, SOME } from "./ordinary";
import type { Chain, MatchOption, RuleSpec, Table } from "./parse";
import type { Family } from "./types";

/** The options of one `-m` module given with the option at `index` (a rule may repeat a module). */
export function instanceOf(options: readonly MatchOption[], index: number): MatchOption[] {
  const module = options[index].module;
  let start = index;
  while (start > 0 && options[start].option !== "" && options[start - 1].module === module) start--;
  let end = index + 1;
  while (end < options.length && options[end].option !== "" && options[end].module === module) end++;
  return options.slice(start, end);
}

const firstValue = (siblings: readonly MatchOption[], option: string) =>
  siblings.find((s) => s.option === option)?.values[0];

/** The options that test the count; the others only shape how it is counted. */
const COUNT_TESTS: Readonly<Record<string, "above" | "upto">> = {
  "--connlimit-above": "above",
  "--connlimit-upto": "upto",
  "--hashlimit-above": "above",
  "--hashlimit-upto": "upto",
  "--hashlimit": "upto",
};

/** A count test, per source (ordinary sources are under it) or shared by everyone (either way). */
function countTest(option: string, perSource: boolean): Share {
  const test = COUNT_TESTS[option];
  if (test === undefined) return ALL;
  if (!perSource) return SOME;
  return test === "above" ? NONE : ALL;
}

/** `--connlimit-mask` for one host: the whole address of the family (the default when not printed). */
function hostMask(mask: string | undefined, family: Family | undefined): boolean {
  if (mask === undefined) return true;
  const bits = Number(mask);
  return bits === 128 || (bits === 32 && family === 4);
}

/** `-m connlimit`: per source when counted by source address with a mask of one host. */
export function connlimitShare(opt: MatchOption, siblings: readonly MatchOption[], family?: Family): Share {
  const limit = Number(opt.values[0] ?? "NaN");
  // The new connection is counted itself: "above 0" takes every packet, "upto 0" none.
  if (opt.option === "--connlimit-above" && limit < 1) return ALL;
  if (opt.option === "--connlimit-upto" && limit < 1) return NONE;
  const bySource = !siblings.some((s) => s.option === "--connlimit-daddr");
  return countTest(opt.option, bySource && hostMask(firstValue(siblings, "--connlimit-mask"), family));
}

/** `-m hashlimit`: per source with a `src*` mode and no source mask (printed only when it is not one host). */
export function hashlimitShare(opt: MatchOption, siblings: readonly MatchOption[]): Share {
  const mode = (firstValue(siblings, "--hashlimit-mode") ?? "").split(",");
  const bySource = mode.some((m) => m.startsWith("src"));
  return countTest(opt.option, bySource && !siblings.some((s) => s.option === "--hashlimit-srcmask"));
}

const familyOfAddress = (v: string | undefined): Family | undefined =>
  v === undefined ? undefined : v.includes(":") ? 6 : /^\d+\.\d+\.\d+\.\d+/.test(v) ? 4 : undefined;

/** The family a rule's addresses or ICMP match show, if any. */
export function familyOfRule(spec: RuleSpec): Family | undefined {
  if (spec.match.icmpv6Type || spec.modules.includes("icmp6")) return 6;
  if (spec.match.icmpType || spec.modules.includes("icmp")) return 4;
  return familyOfAddress(spec.match.source?.value) ?? familyOfAddress(spec.match.destination?.value);
}

/** The family the first rule of a chain that shows one tells, per chain (a Chain is read-only: an edit makes a new one). */
const chainFamilies = new WeakMap<Chain, Family | undefined>();
function familyOfChain(chain: Chain): Family | undefined {
  if (!chainFamilies.has(chain))
    chainFamilies.set(
      chain,
      chain.rules.map(familyOfRule).find((f) => f !== undefined),
    );
  return chainFamilies.get(chain);
}

/** The family of a listed table: as its lister said, else as the first rule that shows one tells (undefined: none does). */
export function familyOfTable(table: Table): Family | undefined {
  if (table.family) return table.family;
  for (const chain of table.chains.values()) {
    const f = familyOfChain(chain);
    if (f !== undefined) return f;
  }
  return undefined;
}
