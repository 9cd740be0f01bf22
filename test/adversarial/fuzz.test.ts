/**
 * Adversarial tier, fuzzing (issue 13): the NIfTI header parser and reader, the torch.save (zip + pickle) reader,
 * safetensors, `pretrain_data.json`, the local-run manifests and networks built from fuzzed architecture settings
 * (adaptation plans, safetensors `ssl3d.options`, `--options`) under fast-check with a fixed seed and a bounded
 * number of runs (`SSL3D_FUZZ_RUNS`, default 200 per target; raise it locally to search longer). Each target runs
 * in its own child process with a 512 MiB heap and a time bound: it must finish, throw only the runtime's typed
 * errors, and keep its peak resident memory bounded. See fuzz-targets.ts for the generators.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "./hostile-files.js";

const RUNS = process.env.SSL3D_FUZZ_RUNS ?? "200";
/** A child that reads small inputs must stay far below this; the old readers reached GBs on such inputs. */
const MAX_RSS_MIB = 768;

for (const target of ["nifti", "checkpoints", "safetensors", "collections", "manifests", "networks"]) {
  test(`fuzz ${target}: only typed errors, bounded time and memory (${RUNS} runs, fixed seed)`, () => {
    const r = spawnSync(
      process.execPath,
      [
        "--max-old-space-size=512",
        "--import",
        "tsx",
        join(ROOT, "test", "adversarial", "fuzz-targets.ts"),
        target,
        RUNS,
      ],
      {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 600_000,
        env: { ...process.env, SSL3D_LOG_LEVEL: "silent" },
      },
    );
    assert.equal(r.signal, null, `killed (${r.signal}): time bound exceeded\n${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      target: string;
      runs: number;
      maxRssMiB: number;
    };
    assert.equal(report.target, target);
    assert.ok(report.maxRssMiB < MAX_RSS_MIB, `peak ${report.maxRssMiB.toFixed(0)} MiB`);
  });
}
