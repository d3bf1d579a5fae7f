// The lineage of a rule's tags: deterministic, so a retry or a replacement finds its own earlier rules.
import { describe, expect, it } from "vitest";
import { lineage, successorOf } from "../../../provider/lineage";
import { base, checked } from "./inputs";

describe("lineage", () => {
  it("gives a create a deterministic lineage of tags to take its own earlier rules over with", async () => {
    const a = await checked(base);
    const tags = lineage(a.unique);
    expect(tags[0]).toBe(a.unique);
    expect(new Set(tags).size).toBe(tags.length);
    expect(lineage(a.unique)).toEqual(tags);
    expect(tags[1]).toBe(successorOf(a.unique));
  });
});
