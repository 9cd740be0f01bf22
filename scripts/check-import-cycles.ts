/**
 * Import cycles in a source tree, found with the TypeScript compiler's parser: `import`/`export ... from` and
 * `import("...")` with a literal specifier, type-only imports included (a type-only cycle between two layers is
 * still a cycle of knowledge). Two levels:
 *
 * - files: module A imports B imports ... A;
 * - folders ("layers"): the first folder below the root (runtime/src/planning, runtime/src/preprocessing, ...) of
 *   A imports B's folder imports ... A's folder. Files directly in the root (runtime/src/errors.ts) are a layer of
 *   their own.
 *
 * Usage: `node --import tsx scripts/check-import-cycles.ts [ROOT...]` (default runtime/src); exits 1 and prints
 * each cycle when there is one. scripts/check-import-cycles.test.ts runs it on runtime/src in `npm test`.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

export interface CycleReport {
  /** Each cycle once, as a list of files relative to the root, first element repeated at the end. */
  readonly files: string[][];
  /** Each cycle of folders once, same form. */
  readonly folders: string[][];
  /** The folders of each folder cycle's strongly connected component, sorted (what an allowance names). */
  readonly folderComponents: string[][];
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** Relative specifiers of one file's static imports, re-exports and literal dynamic imports. */
export function importSpecifiers(file: string, text = readFileSync(file, "utf8")): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      out.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length === 1
    ) {
      const arg = node.arguments[0]!;
      if (ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg)) out.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out.filter((s) => s.startsWith("."));
}

/** `./x.js` -> the `.ts` file it names (ESM specifiers carry the emitted extension). */
function resolveSpecifier(from: string, spec: string): string {
  const base = resolve(dirname(from), spec);
  return base.endsWith(".js") ? `${base.slice(0, -3)}.ts` : base.endsWith(".ts") ? base : `${base}.ts`;
}

/** Strongly connected components with more than one node (or a self-loop), by Tarjan's algorithm. */
function components(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      for (;;) {
        const w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
        if (w === v) break;
      }
      if (comp.length > 1 || graph.get(v)?.has(v) === true) out.push(comp);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) strong(v);
  return out.map((comp) => [...comp].sort());
}

function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  return components(graph).map((comp) => shortestCycle(graph, comp));
}

/** One concrete cycle through the component's smallest node (breadth-first, so the shortest such cycle). */
function shortestCycle(graph: ReadonlyMap<string, ReadonlySet<string>>, comp: readonly string[]): string[] {
  const inComp = new Set(comp);
  const start = [...comp].sort()[0]!;
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!inComp.has(w)) continue;
      if (w === start) {
        const pathBack = [v];
        while (pathBack[0] !== start) pathBack.unshift(prev.get(pathBack[0]!)!);
        return [...pathBack, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

function layerOf(root: string, file: string): string {
  const rel = relative(root, file);
  const first = rel.split(sep)[0]!;
  return rel.includes(sep) ? first : "(root files)";
}

/** The file-level and folder-level import cycles below `root`. Imports that leave `root` are ignored. */
export function findImportCycles(root: string): CycleReport {
  const absRoot = resolve(root);
  const files = sourceFiles(absRoot);
  const fileGraph = new Map<string, Set<string>>();
  const layerGraph = new Map<string, Set<string>>();
  for (const f of files) {
    const from = relative(absRoot, f);
    const deps = new Set<string>();
    const layer = layerOf(absRoot, f);
    if (!layerGraph.has(layer)) layerGraph.set(layer, new Set());
    for (const spec of importSpecifiers(f)) {
      const target = resolveSpecifier(f, spec);
      const rel = relative(absRoot, target);
      if (rel.startsWith("..")) continue;
      deps.add(rel);
      const to = layerOf(absRoot, target);
      if (to !== layer) layerGraph.get(layer)!.add(to);
    }
    fileGraph.set(from, deps);
  }
  return { files: cycles(fileGraph), folders: cycles(layerGraph), folderComponents: components(layerGraph) };
}

/**
 * Folder cycles that predate this check, each the exact set of folders of its component. A listed cycle that grows
 * (a folder joins it), or a new one, fails; so does a listed one that is gone (then delete it here). Issue 17 removed
 * planning <-> preprocessing; these remain to be taken apart.
 */
export const ALLOWED_FOLDER_CYCLES: readonly (readonly string[])[] = [
  ["config", "io"],
  ["data", "distributed", "methods", "models", "observability", "training"],
];

export function formatCycles(r: CycleReport, allowed: readonly (readonly string[])[] = []): string[] {
  const key = (c: readonly string[]): string => [...c].sort().join(",");
  const allowedKeys = new Set(allowed.map(key));
  const present = new Set(r.folderComponents.map(key));
  return [
    ...r.files.map((c) => `file import cycle: ${c.join(" -> ")}`),
    ...r.folders.flatMap((c, i) => {
      const comp = r.folderComponents[i]!;
      return allowedKeys.has(key(comp)) ? [] : [`folder import cycle: ${c.join(" -> ")} (folders ${comp.join(", ")})`];
    }),
    ...allowed
      .filter((c) => !present.has(key(c)))
      .map((c) => `allowed folder cycle ${c.join(", ")} no longer exists: remove it from ALLOWED_FOLDER_CYCLES`),
  ];
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
  const roots = process.argv.length > 2 ? process.argv.slice(2) : [join(repo, "runtime", "src")];
  let bad = 0;
  for (const root of roots) {
    for (const line of formatCycles(findImportCycles(root), process.argv.length > 2 ? [] : ALLOWED_FOLDER_CYCLES)) {
      process.stderr.write(`${relative(repo, root) || root}: ${line}\n`);
      bad++;
    }
  }
  if (bad > 0) process.exit(1);
  const beyond = process.argv.length > 2 ? "" : ` beyond the ${ALLOWED_FOLDER_CYCLES.length} allowed folder cycles`;
  process.stdout.write(`no import cycles in ${roots.map((r) => relative(repo, r) || r).join(", ")}${beyond}\n`);
}
