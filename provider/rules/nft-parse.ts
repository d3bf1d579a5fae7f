/** Reads `nft -j list ruleset`: the chains of the host's nftables tables with their rules, and named sets. */

/** `nft -j list ruleset` output that is not the JSON nft prints. */
export class NftParseError extends Error {
  constructor(message: string) {
    super(`cannot read the nft ruleset: ${message}`);
    this.name = "NftParseError";
  }
}

/** A value of nft's JSON, read with care: any shape may come. */
export type Json = unknown;
export interface NftRule {
  handle?: number;
  expr: Json[];
}
export interface NftChain {
  family: string;
  table: string;
  name: string;
  hook?: string;
  prio?: number;
  policy?: string;
  rules: NftRule[];
}
export interface NftRuleset {
  chains: NftChain[];
  /** Named sets' elements, by "family table name". */
  sets: Map<string, Json[]>;
}

/** The key of a chain or named set: "family table name". */
export const key = (family: string, table: string, name: string) => `${family} ${table} ${name}`;
export const isObject = (v: Json): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The items of nft's JSON documents, one per line (`nft -j list table` per table; none: no tables). */
function nftItems(text: string): Json[] {
  return text
    .split("\n")
    .filter((line) => line.trim())
    .flatMap((line) => {
      let doc: Json;
      try {
        doc = JSON.parse(line);
      } catch (e) {
        throw new NftParseError((e as Error).message);
      }
      const items = isObject(doc) ? doc.nftables : undefined;
      if (!Array.isArray(items)) throw new NftParseError('no "nftables" array');
      return items;
    });
}

/**
 * Reads `nft -j list ruleset`, or the output of `nft -j list table` for several tables (one JSON
 * document per line).
 * @throws NftParseError when the text is not nft's JSON.
 * @example parseNft('{"nftables": [{"metainfo": {"version": "1.0.6"}}]}').chains // []
 */
export function parseNft(text: string): NftRuleset {
  const items = nftItems(text);
  const rs: NftRuleset = { chains: [], sets: new Map() };
  const chains = new Map<string, NftChain>();
  for (const item of items) {
    if (!isObject(item)) continue;
    const { chain, rule, set } = item as Record<string, Record<string, Json> | undefined>;
    if (chain) {
      const c: NftChain = {
        family: String(chain.family),
        table: String(chain.table),
        name: String(chain.name),
        hook: typeof chain.hook === "string" ? chain.hook : undefined,
        prio: typeof chain.prio === "number" ? chain.prio : undefined,
        policy: typeof chain.policy === "string" ? chain.policy : undefined,
        rules: [],
      };
      chains.set(key(c.family, c.table, c.name), c);
      rs.chains.push(c);
    } else if (rule) {
      const c = chains.get(key(String(rule.family), String(rule.table), String(rule.chain)));
      if (!c) throw new NftParseError(`a rule of chain ${String(rule.chain)} comes before the chain`);
      c.rules.push({ handle: typeof rule.handle === "number" ? rule.handle : undefined, expr: asArray(rule.expr) });
    } else if (set) {
      rs.sets.set(key(String(set.family), String(set.table), String(set.name)), asArray(set.elem));
    }
  }
  return rs;
}

export const asArray = (v: Json): Json[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
