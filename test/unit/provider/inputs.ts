// What the provider's unit tests give check: one rule's inputs, and check's answer for them.
import { expect } from "vitest";
import { check, fromStored } from "../../../provider/provider";

export const identity = { project: "web", stack: "prod", name: "allow-app" };
/** A private key's text (the provider reads no key before it dials). */
export const key = (n: string) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${n}\n-----END OPENSSH PRIVATE KEY-----\n`;
export const base = {
  connection: { host: "198.18.1.2", privateKey: key("k") },
  port: 2222,
  action: "ACCEPT",
  identity,
};

/** check's inputs for `news` (given `olds`), which must pass, each hidden key under its own name again. */
export async function checked(news: Record<string, unknown>, olds: Record<string, unknown> = {}) {
  const r = await check(olds, news);
  expect(r.failures).toEqual([]);
  return fromStored<Record<string, any>>(r.inputs);
}
