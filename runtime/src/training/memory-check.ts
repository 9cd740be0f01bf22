/**
 * Absurd sizes fail up front (docs/limits-and-safety.md, "Manifests and options"): before any data is read or a
 * network is built, the bytes the input batches alone will hold (batch × loaded patch voxels × 4 bytes, for every
 * batch queued by the loader plus the one in use and its tensor copy) are compared with the memory available to
 * this process. The estimate is a lower bound (activations come on top), so only sizes that cannot possibly fit fail.
 */
import { MEMORY_LIMIT_ENV, memoryLimit } from "../config/limits.js";
import { ConfigError } from "../errors.js";
import { processEnv, type Env } from "../config/settings.js";

export { MEMORY_LIMIT_ENV, memoryLimit } from "../config/limits.js";

export interface BatchMemoryInput {
  /** Per-process batch (network samples). */
  readonly batchSize: number;
  /** Loaded patches per network sample (contrastive methods load several). */
  readonly imagesPerSample: number;
  /** Loaded patch (x, y, z), before any crop. */
  readonly loadedPatch: readonly number[];
  readonly prefetch: number;
}

export function inputBatchBytes(i: BatchMemoryInput): number {
  const voxels = i.loadedPatch.reduce((a, b) => a * b, 1);
  return i.batchSize * i.imagesPerSample * voxels * 4 * (i.prefetch + 2);
}

function gib(bytes: number): string {
  return bytes >= 1024 ** 4 ? `${(bytes / 1024 ** 4).toFixed(1)} TiB` : `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** A ConfigError naming the option when the input batches alone cannot fit. */
export function checkBatchMemory(i: BatchMemoryInput, env: Env = processEnv()): void {
  const need = inputBatchBytes(i);
  const limit = memoryLimit(env);
  if (need <= limit.bytes) return;
  throw new ConfigError(
    `batch size ${i.batchSize} with patch ${i.loadedPatch.join("x")} needs at least ${gib(need)} for the input batches alone (batch x ${i.imagesPerSample} patch(es) x voxels x 4 bytes x (prefetch ${i.prefetch} + 2)); ${limit.source} is ${gib(limit.bytes)} (override with ${MEMORY_LIMIT_ENV})`,
    { field: "--batch-size / --patch-size" },
  );
}
