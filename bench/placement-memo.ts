// How long placeRule and shadowing take on the 20,000-rule kube-proxy host, 8 placements on successive
// edited copies (as a batch plans them). Not a test: `npx tsx bench/placement-memo.ts`.
import { withInserted } from "../provider/host/ruleset-text";
import { parseRuleset, placeRule, shadowing } from "../provider/rules";
import { kubeProxyFilter } from "../test/fixtures/kube";

const host = ["-A INPUT -i lo -j ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -j DROP"];
let rs = parseRuleset(kubeProxyFilter(20000, host));
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;
let place = 0;
let review = 0;
for (let i = 0; i < 8; i++) {
  const text = `-A INPUT -p tcp -m tcp --dport ${8000 + i} -j ACCEPT`;
  let t = process.hrtime.bigint();
  const p = placeRule(rs, { table: "filter", chain: "INPUT", rule: text.split(" ").slice(2) });
  const took = ms(t);
  place += took;
  rs = withInserted(rs, "filter", "INPUT", p.line, text);
  t = process.hrtime.bigint();
  const s = shadowing(rs, { table: "filter", chain: "INPUT", line: p.line });
  const reviewed = ms(t);
  review += reviewed;
  console.log(
    `rule ${i + 1}: placeRule ${took.toFixed(1)} ms, shadowing ${reviewed.toFixed(1)} ms (line ${p.line}, effective ${p.effective}, shadowed ${s?.path ?? "no"})`,
  );
}
console.log(`placeRule x8: ${place.toFixed(1)} ms; shadowing x8: ${review.toFixed(1)} ms`);
