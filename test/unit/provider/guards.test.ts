// The guards: which changes are confirmed over a fresh SSH connection.
import { describe, expect, it } from "vitest";
import { check } from "../../../provider/provider";
import { mayLockOut } from "../../../provider/guards";

const identity = { project: "web", stack: "prod", name: "allow-app" };
const key = (n: string) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${n}\n-----END OPENSSH PRIVATE KEY-----\n`;
const base = { connection: { host: "198.18.1.2", privateKey: key("k") }, port: 2222, action: "ACCEPT", identity };

async function checked(news: Record<string, unknown>, olds: Record<string, unknown> = {}) {
  const r = await check(olds, news);
  expect(r.failures).toEqual([]);
  return r.inputs as Record<string, any>;
}

describe("mayLockOut: which changes are confirmed over a fresh SSH connection", () => {
  const rule = async (args: Record<string, unknown>) => (await checked({ ...base, ...args })) as any;
  it.each([
    ["a DROP of the SSH port on INPUT", { port: 22, action: "DROP" }, "insert", true],
    ["a DROP of another port", { port: 8080, action: "DROP" }, "insert", false],
    ["a DROP of 22 with allowLockout (meant)", { port: 22, action: "DROP", allowLockout: true }, "insert", false],
    ["a REJECT of a range holding 22", { port: "20-30", action: "REJECT" }, "insert", true],
    ["a DROP of 22 on FORWARD", { port: 22, action: "DROP", chain: "FORWARD" }, "insert", false],
    ["an ACCEPT of 22", { port: 22 }, "insert", false],
    ["the delete of an ACCEPT of 22", { port: 22 }, "delete", true],
    ["the delete of an ACCEPT of 22 with allowLockout (meant)", { port: 22, allowLockout: true }, "delete", false],
    ["the delete of a DROP of 22", { port: 22, action: "DROP" }, "delete", false],
    ["a udp DROP of 22", { port: 22, action: "DROP", protocol: "udp" }, "insert", false],
  ] as const)("%s: %s", async (_what, args, change, expected) => {
    expect(mayLockOut(await rule(args), change)).toBe(expected);
  });
});
