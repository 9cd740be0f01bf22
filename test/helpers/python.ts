/** Paths of the Python reference environment that scripts/setup.d/20-python.sh prepares. */
import { spawnSync } from "node:child_process";
import { homedir } from "node:os";
import { join } from "node:path";

export function cacheDir(): string {
  return process.env.SSL3D_CACHE ?? join(homedir(), ".cache", "ssl3d");
}

/** The venv's python (Debian python3 + system site packages + PyPI reference packages). */
export function pythonBin(): string {
  return join(cacheDir(), "venv", "bin", "python");
}

/** Run a Python snippet; throws with stderr on failure; returns stdout. */
export function runPython(
  code: string,
  args: readonly string[] = [],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): string {
  const r = spawnSync(pythonBin(), ["-c", code, ...args], {
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 600_000,
    maxBuffer: 1 << 28,
    env: { ...process.env, OMP_NUM_THREADS: "2", ...opts.env },
  });
  if (r.status !== 0) throw new Error(`python failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}
