/**
 * CI time of the test files that train (or run) models, with the native cpu kernels disabled (SSL3D_NATIVE=0: the
 * default backend is then wasm, stock tfjs kernels on `cpu`) and enabled (the default: cpu + native addon), in the
 * same run. Each file runs as its own `node --test` child; wall time and the children's CPU time (user + sys,
 * from getrusage of the waited-for children) are reported per file and in total, with the ratio disabled/enabled.
 * Run: `npm run bench:suite-time [-- --files a.test.ts,b.test.ts]`. Numbers go to docs/performance.md.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..");
const DEFAULT_FILES = [
  "test/integration/train.test.ts",
  "test/integration/models-parity.test.ts",
  "runtime/src/training/loop.test.ts",
  "runtime/src/models/models.test.ts",
  "runtime/src/models/ops/ops.test.ts",
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

const files = arg("files")?.split(",") ?? DEFAULT_FILES;
const node = process.execPath;

interface Run {
  wall: number;
  cpu: number;
  ok: boolean;
  tests: string;
}

/**
 * CPU seconds (user + sys) of all waited-for children so far: /proc/self/stat fields 16 and 17 (cutime, cstime, in
 * clock ticks of 1/100 s), which include every waited-for descendant (process.resourceUsage() covers this process only).
 */
function childrenCpu(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[13]) + Number(fields[14]); // cutime, cstime (stat fields 16 and 17)
  return ticks / 100;
}

function runFile(file: string, native: boolean): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, SSL3D_LOG_LEVEL: "warn" };
  if (native) delete env.SSL3D_NATIVE;
  else env.SSL3D_NATIVE = "0";
  const cpu0 = childrenCpu();
  const t0 = performance.now();
  const r = spawnSync(node, ["--import", "tsx", "--test", "--test-reporter=tap", file], {
    cwd: ROOT,
    env,
    encoding: "utf8",
    maxBuffer: 1 << 28,
  });
  const wall = (performance.now() - t0) / 1000;
  const cpu = childrenCpu() - cpu0;
  const pass = /^# pass (\d+)/m.exec(r.stdout)?.[1] ?? "?";
  const fail = /^# fail (\d+)/m.exec(r.stdout)?.[1] ?? "?";
  const skip = /^# skipped (\d+)/m.exec(r.stdout)?.[1] ?? "?";
  return { wall, cpu, ok: r.status === 0, tests: `${pass} pass, ${fail} fail, ${skip} skipped` };
}

const rows = [
  "| test file | native off: wall / CPU (s) | native on: wall / CPU (s) | wall ratio off/on | CPU ratio off/on |",
  "| --- | --- | --- | --- | --- |",
];
const tot = { offW: 0, offC: 0, onW: 0, onC: 0 };
for (const f of files) {
  const off = runFile(f, false);
  const on = runFile(f, true);
  tot.offW += off.wall;
  tot.offC += off.cpu;
  tot.onW += on.wall;
  tot.onC += on.cpu;
  const status = off.ok && on.ok ? "" : ` (FAILED: off ${off.tests}; on ${on.tests})`;
  rows.push(
    `| ${f}${status} | ${off.wall.toFixed(1)} / ${off.cpu.toFixed(1)} | ${on.wall.toFixed(1)} / ${on.cpu.toFixed(1)} | ${(off.wall / on.wall).toFixed(2)}× | ${(off.cpu / on.cpu).toFixed(2)}× |`,
  );
  process.stderr.write(`${rows[rows.length - 1]!}   [off: ${off.tests}; on: ${on.tests}]\n`);
}
rows.push(
  `| **total** | ${tot.offW.toFixed(1)} / ${tot.offC.toFixed(1)} | ${tot.onW.toFixed(1)} / ${tot.onC.toFixed(1)} | **${(tot.offW / tot.onW).toFixed(2)}×** | **${(tot.offC / tot.onC).toFixed(2)}×** |`,
);
process.stdout.write(`${rows.join("\n")}\n`);
