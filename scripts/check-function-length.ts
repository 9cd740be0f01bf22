/**
 * Fails when a function in the project's TypeScript is longer than the limit (default 120 lines), and prints the
 * longest ones either way. Scans the non-test `.ts` files under `runtime/`, `operator/` and `api/`, skipping
 * generated files (a name containing `generated`, or a first line starting with `// GENERATED`). A function is any
 * declaration, method, constructor, accessor, function expression or arrow function; its length counts the lines from
 * its first token to its last, and a nested function counts both in itself and in its parent.
 *
 * Usage: `node --import tsx scripts/check-function-length.ts [--max N] [--top N] [dir ...]` (`npm run
 * check:functions`; scripts/test.sh runs it before the test tiers). Exit code 1 when a function exceeds the limit.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const DEFAULT_DIRS = ["runtime", "operator", "api"];
export const DEFAULT_MAX = 120;

export interface FunctionLength {
  readonly file: string;
  /** 1-based line of the function's first token. */
  readonly line: number;
  readonly name: string;
  readonly lines: number;
}

const SKIP_DIRS = new Set(["node_modules", "dist", "build", ".cache"]);

function isGenerated(file: string, text: string): boolean {
  return /generated/i.test(file.split("/").at(-1) ?? "") || text.startsWith("// GENERATED");
}

/** The non-test, non-declaration `.ts` files under `dir` (sorted). */
export function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) walk(p);
      } else if (e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".d.ts")) {
        out.push(p);
      }
    }
  };
  if (statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true) walk(dir);
  return out;
}

function nameOf(node: ts.Node, sf: ts.SourceFile): string {
  if (
    (ts.isFunctionDeclaration(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isGetAccessor(node) ||
      ts.isSetAccessor(node) ||
      ts.isFunctionExpression(node)) &&
    node.name !== undefined
  ) {
    return node.name.getText(sf);
  }
  if (ts.isConstructorDeclaration(node)) {
    const cls = node.parent;
    return `${cls.name?.getText(sf) ?? "<class>"}.constructor`;
  }
  const p = node.parent;
  if (ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p))
    return p.name.getText(sf);
  return "<anonymous>";
}

/** Every function of one file's text, with its length in lines. */
export function functionLengths(file: string, text: string): FunctionLength[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: FunctionLength[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body !== undefined) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      out.push({ file, line: start + 1, name: nameOf(node, sf), lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** The functions of every non-generated source file under `dirs`, longest first. */
export function scan(dirs: readonly string[], base = root): FunctionLength[] {
  const all: FunctionLength[] = [];
  for (const d of dirs) {
    for (const f of sourceFiles(resolve(base, d))) {
      const text = readFileSync(f, "utf8");
      if (!isGenerated(f, text)) all.push(...functionLengths(relative(base, f), text));
    }
  }
  return all.sort((a, b) => b.lines - a.lines || a.file.localeCompare(b.file) || a.line - b.line);
}

function intArg(args: string[], flag: string, fallback: number): number {
  const i = args.indexOf(flag);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 1)
    throw new Error(`${flag} needs a positive integer, got ${JSON.stringify(args[i + 1])}`);
  args.splice(i, 2);
  return v;
}

/** Prints the `top` longest functions; returns the exit code (1 when one is longer than `max`). */
export function main(argv: readonly string[], base = root, print: (line: string) => void = console.log): number {
  const args = [...argv];
  const max = intArg(args, "--max", DEFAULT_MAX);
  const top = intArg(args, "--top", 10);
  const dirs = args.length > 0 ? args : DEFAULT_DIRS;
  const fns = scan(dirs, base);
  const over = fns.filter((f) => f.lines > max);
  print(`Longest functions in ${dirs.join(", ")} (limit ${max} lines):`);
  for (const f of fns.slice(0, Math.max(top, over.length)))
    print(`${String(f.lines).padStart(5)}  ${f.file}:${f.line}  ${f.name}${f.lines > max ? "  (too long)" : ""}`);
  if (over.length > 0) {
    print(`${over.length} function(s) longer than ${max} lines: split them.`);
    return 1;
  }
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1])
  process.exitCode = main(process.argv.slice(2));
