/** Reading `nft -j list ruleset` (provider/rules/nft-parse.ts). */
import { describe, expect, it } from "vitest";
import { NftParseError, parseNft } from "../../../provider/rules";

describe("parseNft", () => {
  it("refuses text that is not nft's JSON, by name", () => {
    expect(() => parseNft("Error: syntax error")).toThrow(NftParseError);
    expect(() => parseNft('{"x": 1}')).toThrow(/no "nftables" array/);
    expect(parseNft('{"nftables": [{"metainfo": {"version": "1.0.6"}}]}').chains).toEqual([]);
  });

  it("a rule that comes before its chain is refused", () => {
    const text = JSON.stringify({ nftables: [{ rule: { family: "inet", table: "t", chain: "input", expr: [] } }] });
    expect(() => parseNft(text)).toThrow(/a rule of chain input comes before the chain/);
  });
});
