// The lineage of a rule's tags: deterministic, so a retry or a replacement finds its own earlier rules.
import { describe, expect, it } from "vitest";
import { check } from "../../../provider/provider";
import { lineage, successorOf } from "../../../provider/lineage";

const identity = { project: "web", stack: "prod", name: "allow-app" };
const key = (n: string) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${n}\n-----END OPENSSH PRIVATE KEY-----\n`;
const base = { connection: { host: "198.18.1.2", privateKey: key("k") }, port: 2222, action: "ACCEPT", identity };

async function checked(news: Record<string, unknown>, olds: Record<string, unknown> = {}) {
  const r = await check(olds, news);
  expect(r.failures).toEqual([]);
  return r.inputs as Record<string, any>;
}

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
