// The transaction's test helpers: a create's request and its listings (captured nf_tables
// transcripts), the first step's answer, an agent on a fake host (fake.ts), and checks of its scripts.
import { expect } from "vitest";
import { HostAgent } from "../../../provider/host/agent";
import { Arrivals } from "../../../provider/host/gather";
import type { HostError, InsertRequest } from "../../../provider/host";
import { check, renderRule, ruleText } from "../../../provider/rules";
import { readFamilyFile } from "../../fixtures/captures";
import { insertRuleText } from "../../fixtures/listing";
import { type FakeHost, shellSyntaxError } from "./fake";
import type { SectionAnswer, StepAnswer } from "./fake";

export const guide = (f: 4 | 6) => readFamilyFile("nf_tables", f, "allow-guide/save-c.txt");
export const TAG = "pulumi-iptables:web/prod/app/0123456789ab";
export const inputs = (args: Record<string, unknown> = {}) => {
  const r = check(
    {},
    { connection: { host: "198.18.0.10" }, port: 2222, action: "ACCEPT", ipVersion: "ipv4", ...args },
  );
  expect(r.failures).toEqual([]);
  return r.inputs;
};
export const text = (f: 4 | 6, args: Record<string, unknown> = {}) =>
  ruleText("INPUT", renderRule(inputs(args), f, TAG));
export const withRule = (f: 4 | 6, line = 3, args: Record<string, unknown> = {}) =>
  insertRuleText(guide(f), "filter", "INPUT", line, text(f, args));

export function insert(args: Record<string, unknown> = {}, extra: Partial<InsertRequest> = {}): InsertRequest {
  const i = inputs(args);
  const fams = i.ipVersion === "both" ? ([4, 6] as const) : ([4] as const);
  return {
    kind: "insert",
    table: "filter",
    chain: "INPUT",
    specs: Object.fromEntries(fams.map((f) => [f, renderRule(i, f, TAG)])),
    tag: TAG,
    position: "auto",
    persist: i.persist,
    ...extra,
  };
}

export const facts = {
  version: { out: "iptables v1.8.9 (nf_tables)" },
  persistence: { out: "netfilter-persistent /etc/iptables/rules.v4 /etc/iptables/rules.v6" },
};
export const first = (saves: Record<string, string>, more: Record<string, SectionAnswer> = {}): StepAnswer => ({
  lock: {},
  reap: {},
  ...facts,
  listening: { out: "tcp LISTEN 0 128 0.0.0.0:2222 0.0.0.0:*" },
  ...more,
  ...Object.fromEntries(Object.entries(saves).map(([k, v]) => [k, { out: v }])),
});

/** The answer to a both-families create's second step where ip6tables-restore refuses the change and
 * the listing shows the IPv4 half on the host. */
export const refusedSecondFamily = (): StepAnswer => {
  const both = { ipVersion: "both" };
  return {
    persist: {},
    arm: { out: "12:00:30 UTC" },
    restore4: {},
    restore6: { code: 2, err: "ip6tables-restore: line 2 failed" },
    save4: { out: withRule(4, 3, both) },
    save6: { out: guide(6) },
  };
};

/** Batching windows as short as before gather.ts (the operations of one moment share a batch, the
 * conversation waits 20 ms), so that tests that do not test them do not wait for them. */
export const quick = () => new Arrivals({ quiet: 2, wave: 2, gather: 20, keep: 20 });

/** An agent on a fake host (`windows`: its batching, quick unless a test says otherwise). */
export function agentOn(host: FakeHost, fresh?: FakeHost, windows = quick()) {
  return new HostAgent(host.session(), fresh ? () => fresh.session() : undefined, windows);
}

export async function failure(p: Promise<unknown>): Promise<HostError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "the change must fail").toBeInstanceOf(Error);
  return e as HostError;
}

export function expectValidShell(host: FakeHost) {
  for (const s of [...host.scripts, ...host.runs]) expect(shellSyntaxError(s), s).toBeUndefined();
}
