/** Run test/helpers/torch-models.py (upstream dynamic-network-architectures in the Python venv) on an export. */
import * as tf from "@tensorflow/tfjs";
import { mkdtempSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { pythonBin } from "./python.js";
import { decodeSafetensors, encodeSafetensors } from "../../runtime/src/models/safetensors.js";

export interface TorchRun {
  readonly missing: string[];
  readonly unexpected: string[];
  readonly upstream_only: string[];
  readonly ours_only: string[];
  readonly params: number;
  /** Output in OUR layout (NDHWC; 2-D outputs unchanged). */
  readonly y: Float32Array;
  readonly yShape: number[];
}

export function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** x in our layout NDHWC → run upstream on NCDHW → output back to NDHWC. */
export async function runTorch(
  arch: string,
  kwargs: Record<string, unknown>,
  weights: string,
  x: tf.Tensor5D,
  dir: string,
  keepIndices?: number[][],
  tokenMask?: number[][],
): Promise<TorchRun> {
  const xin = tf.tidy(() => tf.transpose(x, [0, 4, 1, 2, 3]));
  const inPath = join(dir, "x.safetensors");
  await writeFile(
    inPath,
    encodeSafetensors(new Map([["x", { shape: xin.shape, data: xin.dataSync() as Float32Array }]])),
  );
  xin.dispose();
  const outPath = join(dir, "y.safetensors");
  const script = fileURLToPath(new URL("./torch-models.py", import.meta.url));
  const r = spawnSync(
    pythonBin(),
    [
      script,
      JSON.stringify({
        arch,
        kwargs,
        weights,
        input: inPath,
        output: outPath,
        keep_indices: keepIndices ?? null,
        token_mask: tokenMask ?? null,
      }),
    ],
    {
      encoding: "utf8",
      timeout: 1_200_000,
      maxBuffer: 1 << 26,
      env: { ...process.env, OMP_NUM_THREADS: "2" },
    },
  );
  if (r.status !== 0) throw new Error(`python failed (${r.status ?? r.signal}): ${r.stderr}`);
  const info = JSON.parse(r.stdout.trim().split("\n").pop()!) as Omit<TorchRun, "y" | "yShape">;
  const y = decodeSafetensors(await readFile(outPath)).tensors.get("y")!;
  // images NCDHW → NDHWC; embeddings [N, D] stay as they are
  const yt = tf.tidy(() =>
    y.shape.length === 5
      ? tf.transpose(tf.tensor(y.data, [...y.shape]), [0, 2, 3, 4, 1])
      : tf.tensor(y.data, [...y.shape]),
  );
  const out = { ...info, y: yt.dataSync() as Float32Array, yShape: yt.shape };
  yt.dispose();
  return out;
}
