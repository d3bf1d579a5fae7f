// A Pulumi program (JavaScript) for the e2e tests: PortRules from stack config, so each test
// changes config, not code. Config: `connection` (secret object), `rules` ([{name, args}]).
export const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { PortRule } = require("pulumi-iptables");
const cfg = new pulumi.Config();
const connection = cfg.requireSecretObject("connection");
const out = {};
for (const r of cfg.requireObject("rules")) {
  const rule = new PortRule(r.name, { connection: r.connection ?? connection, ...r.args });
  out[r.name] = { tag: rule.tag, rules: rule.rules, insertedAt: rule.insertedAt, placement: rule.placement, line: rule.line,
    packets: rule.packets, bytes: rule.bytes, counters: rule.counters, effective: rule.effective, shadowedBy: rule.shadowedBy,
    backend: rule.backend, hostKeyFingerprint: rule.hostKeyFingerprint, listening: rule.listening, missing: rule.missing, persisted: rule.persisted };
}
exports.rules = out;
`;
