// The provider's layers (docs/architecture.md): util <- rules <- ssh <- host <- lifecycle. A file imports
// only from its own folder and from the folders below it, another folder only through its index.ts
// (the barrel), and no files import each other in a cycle. Read from the sources with TypeScript's own
// import scanner. And the sizes that keep each file to one job: no file over 400 lines, no class over 250.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(__dirname, "../../provider");
/** Each folder's rank: a file may import from a folder of its own rank or lower. The lifecycle is the top. */
const RANK: Record<string, number> = { util: 0, rules: 1, ssh: 2, host: 3, ".": 4 };

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** The provider files a file imports (relative imports only: packages are not layers). */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((f) => f.startsWith("."))
    .map((f) => {
      const base = resolve(dirname(file), f);
      const candidates = [`${base}.ts`, join(base, "index.ts")];
      const found = candidates.find((c) => FILES.includes(c));
      if (!found) throw new Error(`${relative(ROOT, file)} imports ${f}, which is no provider file`);
      return found;
    });
}

const FILES = sources(ROOT);
const folderOf = (file: string) => relative(ROOT, dirname(file)) || ".";
const name = (file: string) => relative(ROOT, file);

/** Why an import breaks the layering, or undefined when it does not. */
function violation(from: string, to: string): string | undefined {
  const [a, b] = [folderOf(from), folderOf(to)];
  if (!(a in RANK)) return `${name(from)} is in folder ${a}, which has no layer (add it to RANK and the docs)`;
  if (!(b in RANK)) return `${name(to)} is in folder ${b}, which has no layer`;
  if (a === b) return undefined;
  if (RANK[b] > RANK[a]) return `${name(from)} imports upward: ${name(to)} (${b} is above ${a})`;
  if (b !== "." && !to.endsWith(join(b, "index.ts")))
    return `${name(from)} bypasses ${b}/index.ts: imports ${name(to)}`;
  return undefined;
}

/** The import cycles among files (each as a path a -> b -> ... -> a), found by depth-first search. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (f: string) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      found.push([...path.slice(path.indexOf(f)), f].map(name));
      return;
    }
    state.set(f, "open");
    path.push(f);
    for (const g of graph.get(f) ?? []) visit(g);
    path.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f);
  return found;
}

describe("the provider's layers", () => {
  const graph = new Map(FILES.map((f) => [f, importsOf(f)]));

  it("finds the files and their imports", () => {
    expect(FILES.length).toBeGreaterThan(20);
    expect(graph.get(join(ROOT, "provider.ts"))?.length).toBeGreaterThan(3);
  });

  it("no file imports upward or bypasses another folder's index.ts", () => {
    const bad = [...graph].flatMap(([from, tos]) => tos.map((to) => violation(from, to)).filter(Boolean));
    expect(bad).toEqual([]);
  });

  it("no files import each other in a cycle", () => {
    expect(cycles(graph)).toEqual([]);
  });

  it("the checks catch what they are for", () => {
    const [rules, ssh, host] = ["rules", "ssh", "host"].map((d) => join(ROOT, d));
    expect(violation(join(rules, "place.ts"), join(host, "index.ts"))).toMatch(/imports upward/);
    expect(violation(join(host, "plan.ts"), join(rules, "place.ts"))).toMatch(/bypasses rules\/index\.ts/);
    expect(violation(join(host, "plan.ts"), join(ssh, "index.ts"))).toBeUndefined();
    const [a, b, c] = ["a", "b", "c"].map((n) => join(ROOT, `${n}.ts`));
    expect(
      cycles(
        new Map([
          [a, [b]],
          [b, [c]],
          [c, [a]],
        ]),
      ),
    ).toEqual([["a.ts", "b.ts", "c.ts", "a.ts"]]);
  });
});

describe("the provider's sizes", () => {
  const lines = (f: string) => readFileSync(f, "utf8").split("\n").length;

  /** Each class of a file with its length in lines. */
  function classes(file: string): { name: string; lines: number }[] {
    const text = readFileSync(file, "utf8");
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    const found: { name: string; lines: number }[] = [];
    const visit = (n: ts.Node) => {
      if (ts.isClassDeclaration(n) || ts.isClassExpression(n)) {
        const span = (p: number) => sf.getLineAndCharacterOfPosition(p).line;
        found.push({
          name: `${name(file)} ${n.name?.text ?? "(anonymous)"}`,
          lines: span(n.getEnd()) - span(n.getStart()) + 1,
        });
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
    return found;
  }

  it("no production file is over 400 lines", () => {
    expect(FILES.filter((f) => lines(f) > 400).map((f) => `${name(f)}: ${lines(f)} lines`)).toEqual([]);
  });

  it("no class is over 250 lines", () => {
    const all = FILES.flatMap(classes);
    expect(all.length).toBeGreaterThan(5);
    expect(all.filter((c) => c.lines > 250).map((c) => `${c.name}: ${c.lines} lines`)).toEqual([]);
  });
});
