// What a listing tells about a host (the backend, how it saves its ruleset, who owns its policy,
// listening sockets, the rulesets), the listing commands themselves, and reading a section's answer.
import { closedListing, parseRuleset, parseVersion } from "../rules";
import type { HostContext, Ruleset } from "../rules";
import type { Session } from "../ssh";
import { withDeadline } from "../util";
import { ADDRESSES, parseAddresses } from "./addresses";
import { HostError } from "./errors";
import { besideListing } from "./beside";
import { chainsOrWhole, listedFrom, listedInPart, reachOrWhole, wholeTable } from "./confirm-listing";
import { generationSection, listedGeneration } from "./generation";
import { secondOf, secondScript } from "./second";
import type { BesideWant } from "./beside";
import { DETECT, OWNER, ownerOf, parsePersistence } from "./persist";
import { iptables, KILLED, section } from "./protocol";
import type { Family, Sections } from "./protocol";
import type { HostFacts } from "./types";

type Stable = Pick<HostFacts, "backend" | "version" | "persistence">;

/** The script that lists the rulesets: one iptables-save per family (sections save4, save6). */
export const rulesetsScript = (families: readonly Family[], table: string) =>
  families.map((f) => wholeTable(f, table)).join("\n");

/** The host's network interfaces with their flags (one "name 0x1003" a line), from /sys as busybox has it. */
const INTERFACES = section("interfaces", {
  script: `for d in /sys/class/net/*; do [ -r "$d/flags" ] && printf '%s %s\\n' "\${d##*/}" "$(cat "$d/flags")"; done; exit 0`,
});

/** The interfaces that are up and not loopback (IFF_UP 0x1, IFF_LOOPBACK 0x8); undefined when none is read. */
export function parseInterfaces(text: string): string[] | undefined {
  const up = text
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([name, flags]) => name && /^0x[0-9a-f]+$/i.test(flags ?? "") && (Number(flags) & 0x9) === 0x1)
    .map(([name]) => name);
  return up.length ? up : undefined;
}

/** What of the table a listing holds where it can hold less than the whole table: `chains` alone, or
 * with `reach`, `chains` and every chain they jump to. */
export interface InPart {
  chains: readonly string[];
  reach: boolean;
}

/**
 * The rulesets of `families`, where `part` is given and the generation was read ($pit_gen 0) on
 * nf_tables, as that part alone (sections chains<f> or reach<f>, `iptables -v -S`; the whole table where
 * it cannot be listed): a batch of deletes needs its chains alone, a batch that places rules in built-in
 * chains what they reach (findRule refuses a chain the listing does not hold, and judgements a listing
 * that is not closed from the judged chain, see PartialListingError). On a Kubernetes node that is 3 MB
 * (or half of it) less to list and parse.
 */
function tablesScript(families: readonly Family[], table: string, part?: InPart): string {
  if (!part?.chains.length) return rulesetsScript(families, table);
  return families
    .map((f) =>
      [
        `case "$(${iptables(f)} -V 2>/dev/null)" in *nf_tables*) pit_part=$pit_gen ;; *) pit_part=1 ;; esac`,
        `if [ "$pit_part" = 0 ]; then`,
        part.reach ? reachOrWhole(f, table, part.chains) : chainsOrWhole(f, table, part.chains),
        "else",
        rulesetsScript([f], table),
        "fi",
      ].join("\n"),
    )
    .join("\n");
}

/** The script that lists a host: with `generation`, the nf_tables generation first (section gen); the
 * facts not known yet, listening sockets and the policy owner if asked for, what is beside the chain if
 * asked for, the rulesets (only `part` of them where tablesScript can). */
export function listingScript(
  known: boolean,
  families: readonly Family[],
  table: string,
  want: { listening?: boolean; owner?: boolean; generation?: boolean; part?: InPart } & BesideWant = {},
): string {
  const gen = want.generation ? [generationSection("gen"), "pit_gen=$c"] : [];
  const parts = known ? gen : [...gen, section("version", ["iptables", "--version"]), DETECT];
  if (want.listening) parts.push(section("listening", ["ss", "-H", "-l", "-n", "-t", "-u"]));
  if (want.owner) parts.push(OWNER);
  if (want.nat || want.nft) parts.push(besideListing(families, want));
  if (table === "filter") parts.push(secondScript(families));
  return [...parts, INTERFACES, ADDRESSES, tablesScript(families, table, want.part)].join("\n");
}

/** A section's output; a missing section or a non-zero exit is a HostError naming the command. */
export function outputOf(sections: Sections, name: string, what: string, target: string): string {
  const s = sections[name];
  if (!s) throw new HostError(`${what} on ${target}: the host gave no answer`, { kind: "lost", target, command: what });
  if (s.code === 0) return s.out;
  const why = s.code === KILLED ? "it was killed at its deadline (it hung)" : s.err || s.out;
  throw new HostError(`${what} on ${target} failed (exit ${s.code}): ${why}`, {
    kind: "command",
    target,
    command: what,
    status: s.code,
    stderr: s.err,
  });
}

/** The text iptables-save printed for a family (its section of rulesetsScript). */
const savedText = (s: Sections, f: Family, target: string) => outputOf(s, `save${f}`, `${iptables(f)}-save`, target);

/** Each listing received is parsed once, however many requests of the batch (or reads) use it. */
// Process-wide, keyed weakly: a listing received never changes, and its entry goes with it.
const parsed = new WeakMap<Sections, Map<Family, Ruleset>>();

/** The parsed listing of one family. */
export function rulesetOf(s: Sections, f: Family, target: string): Ruleset {
  const m = parsed.get(s) ?? parsed.set(s, new Map()).get(s)!;
  const known = m.get(f);
  if (known) return known;
  const text = savedText(s, f, target);
  const rs = parseRuleset(text, { family: f });
  listedFrom(rs, text, listedGeneration(s, f));
  return m.set(f, rs).get(f)!;
}

/** The chains a listing printed of a table (section chains<f> or reach<f>, see tablesScript), as a copy
 * of the table listed in part (closed where it holds every chain its rules jump to), with the generation
 * read before it. */
export function chainsListed(s: Sections, f: Family, table: string, target: string): Ruleset {
  const name = s[`reach${f}`] ? `reach${f}` : `chains${f}`;
  const text = outputOf(s, name, `${iptables(f)} -S`, target);
  const t = parseRuleset(text, { table, family: f }).tables.get(table) ?? { name: table, family: f, chains: new Map() };
  const closed = name === `reach${f}` && closedListing(t);
  const rs: Ruleset = { tables: new Map([[table, { ...t, partial: true, ...(closed && { closed }) }]]) };
  listedInPart(rs, listedGeneration(s, f));
  return rs;
}

/** The parsed rulesets of these families, by family. */
export const rulesetsOf = (s: Sections, families: readonly Family[], target: string) =>
  new Map(families.map((f) => [f, rulesetOf(s, f, target)] as const));

/** The nat tables besideListing printed (families whose nat is loaded), parsed once per listing. */
const natParsed = new WeakMap<Sections, HostFacts["nat"]>();
function natOf(s: Sections): HostFacts["nat"] {
  if (!natParsed.has(s)) {
    const listed = ([4, 6] as const).filter((f) => s[`nat${f}`]?.code === 0 && s[`nat${f}`]!.out.trim());
    natParsed.set(
      s,
      listed.length ? Object.fromEntries(listed.map((f) => [f, parseRuleset(s[`nat${f}`]!.out)])) : undefined,
    );
  }
  return natParsed.get(s);
}

/** What placement judges a rule of family `f` with, beside its table (rules/place.ts, HostContext). */
export const contextOf = (facts: HostFacts, f: Family): HostContext => ({
  interfaces: facts.interfaces,
  addresses: facts.addresses?.[f],
  nat: facts.nat?.[f],
  other: facts.other?.[f],
});

function parseListening(text: string): Set<string> {
  const set = new Set<string>();
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 5) set.add(`${f[0]}/${f[4].slice(f[4].lastIndexOf(":") + 1)}`);
  }
  return set;
}

/** The facts of one host: what does not change while the provider runs is read once. */
export class Facts {
  private stable?: Stable;
  constructor(private readonly session: Session) {}

  get known(): boolean {
    return this.stable !== undefined;
  }

  /** The backend and version iptables reported, once a listing has been read. */
  get iptables(): Pick<HostFacts, "backend" | "version"> | undefined {
    return this.stable;
  }

  of(sections: Sections, families: readonly Family[]): HostFacts {
    const target = this.session.target;
    if (!this.stable) {
      const v = parseVersion(outputOf(sections, "version", "iptables --version", target));
      const how = outputOf(sections, "persistence", "finding how the host saves its ruleset", target);
      this.stable = { backend: v.backend, version: v.version, persistence: parsePersistence(how) };
    }
    return {
      ...this.stable,
      hostKeyFingerprint: this.session.hostKey?.fingerprint ?? "",
      // Unknown where the host has no ss.
      listening: sections.listening?.code === 0 ? parseListening(sections.listening.out) : undefined,
      interfaces: sections.interfaces?.code === 0 ? parseInterfaces(sections.interfaces.out) : undefined,
      addresses: sections.addresses?.code === 0 ? parseAddresses(sections.addresses.out) : undefined,
      nat: natOf(sections),
      other: secondOf(sections, this.stable.backend),
      owner: sections.owner
        ? ownerOf(
            sections.owner.out,
            families.map((f) => rulesetOf(sections, f, target)),
          )
        : undefined,
    };
  }
}

/** Settles as `p` does, or fails with a "deadline" HostError after `sec` seconds (`what` names the step). */
export const stepDeadline = <T>(p: Promise<T>, sec: number, what: string, target: string): Promise<T> =>
  withDeadline(
    p,
    sec * 1000,
    () =>
      new HostError(`${what} on ${target} did not finish within ${sec}s`, { kind: "deadline", target, command: what }),
  );
