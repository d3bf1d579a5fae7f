/**
 * Both iptables backends at once (Debian 12 with ferm on legacy and fail2ban on nf_tables;
 * `iptables-nft-save` then prints "# Warning: iptables-legacy tables present"): the kernel runs a
 * packet through the tables of both, so it is accepted only if both accept it, and when both drop or
 * reject it, which answers first is not known.
 */
import type { Ordinary } from "./match";
import type { Ruleset } from "./parse";
import type { Backend } from "./types";
import { type Outcome, outcomes } from "./walk";

/** The tables of the backend iptables does not use, where the host has some. */
export interface OtherBackend {
  backend: Backend;
  ruleset: Ruleset;
}

/** One way the packets go, with what the other backend does to them: a decision of either. */
export interface Both {
  verdict: string;
  /** The other backend decides these (its outcome), not the one iptables uses. */
  other?: Outcome;
}

/**
 * What the packets `o` get when `mine` is what the tables iptables uses do to them, entering built-in
 * chain `start` of `table` in both backends: the other's ACCEPT leaves mine; mine's ACCEPT leaves the
 * other's; two refusals may each come first.
 */
export function withOther(mine: Outcome, table: string, start: string, o: Ordinary, other?: OtherBackend): Both[] {
  const t = other?.ruleset.tables.get(table);
  if (!t?.chains.has(start)) return [{ verdict: mine.verdict }];
  return outcomes(t, start, o, { chain: "", index: -1, verdict: "" }).flatMap((x): Both[] => {
    if (x.verdict === "ACCEPT") return [{ verdict: mine.verdict }];
    if (mine.verdict === "ACCEPT") return [{ verdict: x.verdict, other: x }];
    return [{ verdict: mine.verdict }, { verdict: x.verdict, other: x }];
  });
}
