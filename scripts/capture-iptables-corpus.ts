/**
 * Captures iptables' own test corpus for the rule core's unit tests:
 *   npx tsx scripts/capture-iptables-corpus.ts
 *
 * Fetches the upstream source tarball of iptables from Debian's archive for bookworm (1.8.9) and
 * trixie (1.8.11) with `apt-get source --download-only`, through a private apt configuration under a
 * temporary directory (deb-src lines of the archive this machine's apt already uses, private lists
 * and cache): nothing is installed and the machine's apt state is left alone. From each tarball it
 * keeps the lines iptables prints back:
 *   - every `extensions/lib{xt,ipt,ip6t}_*.t` case that must succeed, as the output the test expects
 *     (`-A <chain> <expected>` for each chain of its section), in the section's table;
 *   - every `-A` line (with or without `[pkts:bytes]`) of the shell testcases' dumps and scripts
 *     (iptables/tests/shell/testcases, arptables and ebtables left out).
 * and writes them to test/fixtures/iptables-corpus/iptables-<version>.tsv.gz, one case a line:
 * `<families: 4, 6 or 46>\t<table>\t<origin file:line>\t<listed line>`.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";

const OUT = join(__dirname, "..", "test", "fixtures", "iptables-corpus");
const SUITES = { bookworm: "1.8.9", trixie: "1.8.11" } as const;
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** The Debian archive URI this machine's apt already uses (override: PIT_DEBIAN_ARCHIVE). */
function archiveUri(): string {
  if (process.env.PIT_DEBIAN_ARCHIVE) return process.env.PIT_DEBIAN_ARCHIVE;
  const dir = "/etc/apt/sources.list.d";
  const files = ["/etc/apt/sources.list", ...(existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [])];
  for (const file of files.filter((f) => /\.(list|sources)$/.test(f) && existsSync(f))) {
    const text = readFileSync(file, "utf8");
    const uri =
      /^URIs:\s*(\S+\/debian)\s*$/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\s/m.exec(text)?.[1];
    if (uri) return uri;
  }
  throw new Error("no Debian archive in this machine's apt sources: set PIT_DEBIAN_ARCHIVE");
}

/** apt's options for a private configuration, lists and cache under `work`. */
const aptOptions = (work: string) => [
  `-o=Dir::Etc::SourceList=${join(work, "sources.list")}`,
  `-o=Dir::Etc::SourceParts=${join(work, "sources.list.d")}`,
  `-o=Dir::State=${join(work, "state")}`,
  `-o=Dir::Cache=${join(work, "cache")}`,
  "-o=Debug::NoLocking=1",
];

/** Downloads and unpacks iptables' upstream tarball of one suite; returns the source tree. */
function fetchSource(work: string, suite: string, version: string): string {
  const apt = aptOptions(work);
  const dl = join(work, suite);
  mkdirSync(dl, { recursive: true });
  try {
    execFileSync("apt-get", [...apt, "source", "--download-only", `iptables/${suite}`], { cwd: dl, stdio: "pipe" });
  } catch (e) {
    // Only the upstream tarball is needed; Debian's own parts may be missing on a mirror snapshot.
    if (!existsSync(join(dl, `iptables_${version}.orig.tar.xz`))) throw e;
  }
  const tarball = join(dl, `iptables_${version}.orig.tar.xz`);
  if (!existsSync(tarball)) throw new Error(`${suite} has no iptables ${version}: ${readdirSync(dl).join(", ")}`);
  const tree = join(dl, "src");
  mkdirSync(tree);
  execFileSync("tar", ["-xJf", tarball, "-C", tree, "--strip-components=1"]);
  return tree;
}

/** The cases of one extensions/*.t file that must succeed, as iptables prints them back. */
function extensionCases(tree: string, file: string): string[] {
  const families = file.startsWith("libipt_") ? "4" : file.startsWith("libip6t_") ? "6" : "46";
  let table = "filter";
  let chains = ["INPUT"];
  const out: string[] = [];
  readFileSync(join(tree, "extensions", file), "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line.startsWith("*")) table = line.slice(1).trim();
      else if (line.startsWith(":")) chains = line.slice(1).trim().split(",");
      else {
        const [rule, expected, result] = line.split(";");
        if (result !== "OK" || expected === undefined) return;
        const listed = expected === "=" ? rule : expected;
        for (const chain of chains)
          out.push([families, table, `extensions/${file}:${i + 1}`, `-A ${chain} ${listed}`].join("\t"));
      }
    });
  return out;
}

const LISTED = /^(\[\d+:\d+\] )?-A \S+/;
/** A script's expected output ends a shell string: its closing quote is not part of the last line. */
const unquoted = (line: string) =>
  ['"', "'"].reduce((l, q) => ((l.split(q).length - 1) % 2 && l.endsWith(q) ? l.slice(0, -1) : l), line);

/** Every listed `-A` line of the shell testcases (dumps and scripts' expected outputs). */
function shellCases(tree: string): string[] {
  const root = join(tree, "iptables", "tests", "shell", "testcases");
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!/^(arptables|ebtables)$/.test(entry.name)) walk(path);
        continue;
      }
      if (entry.name.endsWith(".xml")) continue;
      const origin = relative(tree, path);
      const families = /ip6/.test(origin) ? "6" : "4";
      let table = "filter";
      readFileSync(path, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (/^\*[a-z]+$/.test(line)) table = line.slice(1);
          if (LISTED.test(line) && !line.includes("$"))
            out.push([families, table, `${origin}:${i + 1}`, unquoted(line)].join("\t"));
        });
    }
  };
  walk(root);
  return out;
}

function main() {
  const work = mkdtempSync(join(tmpdir(), "pit-corpus-"));
  try {
    const uri = archiveUri();
    mkdirSync(join(work, "sources.list.d"));
    mkdirSync(join(work, "state", "lists", "partial"), { recursive: true });
    mkdirSync(join(work, "cache", "archives", "partial"), { recursive: true });
    writeFileSync(
      join(work, "sources.list"),
      Object.keys(SUITES)
        .map((suite) => `deb-src [signed-by=${KEYRING}] ${uri} ${suite} main\n`)
        .join(""),
    );
    execFileSync("apt-get", [...aptOptions(work), "update"], { stdio: "pipe" });
    mkdirSync(OUT, { recursive: true });
    for (const [suite, version] of Object.entries(SUITES)) {
      const tree = fetchSource(work, suite, version);
      const tests = readdirSync(join(tree, "extensions"))
        .filter((f) => /^lib(xt|ipt|ip6t)_.*\.t$/.test(f))
        .sort();
      const lines = [...tests.flatMap((f) => extensionCases(tree, f)), ...shellCases(tree)];
      writeFileSync(join(OUT, `iptables-${version}.tsv.gz`), gzipSync(`${lines.join("\n")}\n`, { level: 9 }));
      console.log(`iptables ${version} (${suite}): ${lines.length} listed lines`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
