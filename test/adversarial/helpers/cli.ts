/**
 * The adversarial tier's harness: run the real `ssl3d` CLI as a child process and report its exit code, output,
 * wall time and peak memory (the child's own getrusage maxrss, written at exit by peak-rss.mjs), plus sentinel files
 * outside the roots whose bytes and mtimes must survive every case.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "..", "..", "..");
export const BIN = join(ROOT, "bin", "ssl3d.mjs");
export const NODE = join(ROOT, "node_modules", ".bin", "node");
const PEAK_RSS = join(import.meta.dirname, "peak-rss.mjs");

export interface CliResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
  /** Peak resident set size of the child in MiB (undefined when it was killed before writing it). */
  readonly peakMiB: number | undefined;
}

export interface CliOptions {
  readonly timeoutMs?: number;
  readonly cwd?: string;
}

/** Run `ssl3d args...` with `env` (the caller's full environment), measured. */
export async function ssl3d(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  opts: CliOptions = {},
): Promise<CliResult> {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-adv-rss-"));
  const rssFile = join(dir, "rss");
  const t0 = performance.now();
  const child = spawn(NODE, ["--import", PEAK_RSS, BIN, ...args], {
    cwd: opts.cwd ?? tmpdir(),
    env: { SSL3D_LOG_LEVEL: "warn", ...env, SSL3D_TEST_PEAK_RSS_FILE: rssFile },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
  const [status, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) =>
    child.on("close", (c, s) => {
      res([c, s]);
    }),
  );
  clearTimeout(timer);
  const ms = performance.now() - t0;
  const peakMiB = existsSync(rssFile) ? Number(readFileSync(rssFile, "utf8")) / 1024 : undefined;
  rmSync(dir, { recursive: true, force: true });
  return { status, signal, stdout, stderr, ms, peakMiB };
}

/** The `ssl3d: error: ...` line of a failed run; asserts there is exactly one and no "internal error". */
export function errorLine(r: CliResult): string {
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("ssl3d: error: "));
  assert.equal(lines.length, 1, `one error line expected, stderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/, r.stderr);
  return lines[0]!;
}

/** Exit code, one error line matching every pattern, and bounds on time and memory. */
export function assertFails(
  r: CliResult,
  code: number,
  patterns: readonly RegExp[],
  bounds: { maxMs?: number; maxMiB?: number } = {},
): string {
  assert.equal(r.status, code, `exit code ${String(r.status)} (signal ${String(r.signal)}), stderr:\n${r.stderr}`);
  const line = errorLine(r);
  for (const p of patterns) assert.match(line, p);
  if (bounds.maxMs !== undefined) assert.ok(r.ms < bounds.maxMs, `took ${r.ms.toFixed(0)} ms (bound ${bounds.maxMs})`);
  if (bounds.maxMiB !== undefined) {
    assert.ok(r.peakMiB !== undefined, "peak memory was not reported");
    assert.ok(r.peakMiB < bounds.maxMiB, `peak ${r.peakMiB.toFixed(0)} MiB (bound ${bounds.maxMiB})`);
  }
  return line;
}

/** Files outside every root whose bytes and mtimes a case must leave alone. */
export class Sentinels {
  private readonly files = new Map<string, { bytes: Buffer; mtimeMs: number }>();

  /** Create `rel` (file, or a `.zarr`/folder with one file inside when it ends in `/`) under `dir`. */
  add(dir: string, rel: string, content = `sentinel ${rel}\n`): void {
    const isDir = rel.endsWith("/");
    const file = isDir ? join(dir, rel, "zarr.json") : join(dir, rel);
    mkdirSync(join(file, ".."), { recursive: true });
    writeFileSync(file, content);
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(file, old, old);
    this.files.set(file, { bytes: readFileSync(file), mtimeMs: statSync(file).mtimeMs });
  }

  /** Every sentinel still exists with the same bytes and mtime. */
  check(): void {
    for (const [file, s] of this.files) {
      assert.ok(existsSync(file), `${file} was deleted`);
      assert.deepEqual(readFileSync(file), s.bytes, `${file} was modified`);
      assert.equal(statSync(file).mtimeMs, s.mtimeMs, `${file} was touched`);
    }
  }
}

/**
 * Every entry under `dir` (relative path → type, size, mtime and SHA-256 of a file's bytes or a link's target), to
 * check that a case left a tree exactly as it was: nothing added, removed, rewritten or touched. Entries whose
 * relative path starts with one of `skip` (a case's own output folder) are left out.
 */
export function snapshotTree(dir: string, skip: readonly string[] = []): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (skip.some((p) => r === p || r.startsWith(`${p}/`))) continue;
      const full = join(d, e.name);
      const st = lstatSync(full);
      if (e.isDirectory()) {
        out.set(`${r}/`, "dir");
        walk(full, r);
      } else if (e.isSymbolicLink()) {
        out.set(r, `link -> ${readlinkSync(full)} @${st.mtimeMs}`);
      } else if (e.isFile()) {
        out.set(
          r,
          `${st.size} bytes @${st.mtimeMs} sha256 ${createHash("sha256").update(readFileSync(full)).digest("hex")}`,
        );
      } else {
        out.set(r, `special @${st.mtimeMs}`);
      }
    }
  };
  walk(dir, "");
  return out;
}

/** `after` equals `before` entry by entry (the message lists what was added, removed or changed). */
export function assertSameTree(
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
  what = "tree",
): void {
  const diffs: string[] = [];
  for (const [k, v] of before) {
    const a = after.get(k);
    if (a === undefined) diffs.push(`removed ${k}`);
    else if (a !== v) diffs.push(`changed ${k}: ${v} -> ${a}`);
  }
  for (const k of after.keys()) if (!before.has(k)) diffs.push(`added ${k}`);
  assert.deepEqual(diffs, [], `${what} was modified:\n${diffs.join("\n")}`);
}
