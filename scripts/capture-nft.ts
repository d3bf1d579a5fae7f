/**
 * Captures `nft -j list ruleset` for the nftables analyser's unit tests:
 *   npx tsx scripts/capture-nft.ts
 *
 * For each test/fixtures/nft/<name>.nft it makes its own network namespace (pit-fx-<pid>-<n>),
 * loads the file with `nft -f`, adds one iptables-nft rule per family beside it (iptables' own
 * tables must be told apart from the host's nft tables), and writes what nft prints as
 * test/fixtures/nft/<name>.json.txt, byte for byte. Namespaces are always deleted. Nothing runs in this machine's own
 * network namespace.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Netns, deleteAll } from "../test/rules-lab/netns";

const DIR = join(__dirname, "..", "test", "fixtures", "nft");

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    deleteAll();
    process.exit(130);
  });
}

try {
  for (const file of readdirSync(DIR).filter((f) => f.endsWith(".nft"))) {
    const ns = Netns.create("pit-fx");
    try {
      const script = [
        "nft -f - || exit 1",
        "iptables -A INPUT -p tcp -m tcp --dport 8080 -m comment --comment pulumi-iptables:lab/dev/x/abcd1234 -j ACCEPT || exit 1",
        "ip6tables -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT || exit 1",
        "nft -j list ruleset",
      ].join("\n");
      const r = ns.run("nf_tables", script, readFileSync(join(DIR, file), "utf8"));
      if (r.code !== 0) throw new Error(`${file}: exit ${r.code}: ${r.stderr}`);
      JSON.parse(r.stdout); // fails here if nft printed anything but JSON
      writeFileSync(join(DIR, file.replace(/\.nft$/, ".json.txt")), r.stdout);
      console.log(`captured ${file}`);
    } finally {
      ns.delete();
    }
  }
} finally {
  deleteAll();
}
