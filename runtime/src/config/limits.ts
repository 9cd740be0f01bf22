/**
 * Resource limits for untrusted input (checkpoints, NIfTI files, JSON documents, network settings read from files).
 * Every limit has a default and an environment-variable override; docs/limits-and-safety.md lists them all.
 * Readers check a limit BEFORE they allocate what it bounds. An invalid override is a ConfigError naming the
 * variable, never silently ignored.
 *
 * Counts given as options (threads, local processes, epochs, iterations) are checked by `checkCount` when the
 * command line is parsed, before anything starts: against their limit and against the memory they would need.
 *
 * Leaf module (node:fs, node:os and config/settings.ts only): any layer may import it.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { ConfigError } from "../errors.js";
import { envRaw, envString, processEnv, SETTINGS, type Env, type SettingName } from "./settings.js";

export interface LimitSpec {
  /** Environment variable that overrides the default (described in config/settings.ts). */
  readonly env: SettingName;
  readonly description: string;
  /** The default (may depend on the machine's memory). */
  readonly fallback: () => number;
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** Bytes of physical memory of this machine (os.totalmem). */
export function machineMemory(): number {
  return totalmem();
}

export const LIMITS = {
  checkpointBytes: {
    env: "SSL3D_CHECKPOINT_MAX_BYTES",
    description: SETTINGS.SSL3D_CHECKPOINT_MAX_BYTES.description,
    fallback: () => Math.min(32 * GiB, Math.floor(machineMemory() / 2)),
  },
  pickleNodes: {
    env: "SSL3D_PICKLE_MAX_NODES",
    description: SETTINGS.SSL3D_PICKLE_MAX_NODES.description,
    fallback: () => 1_000_000,
  },
  pickleDepth: {
    env: "SSL3D_PICKLE_MAX_DEPTH",
    description: SETTINGS.SSL3D_PICKLE_MAX_DEPTH.description,
    fallback: () => 200,
  },
  networkParams: {
    env: "SSL3D_MAX_NETWORK_PARAMS",
    description: SETTINGS.SSL3D_MAX_NETWORK_PARAMS.description,
    fallback: () => 2 ** 31,
  },
  networkTensors: {
    env: "SSL3D_MAX_NETWORK_TENSORS",
    description: SETTINGS.SSL3D_MAX_NETWORK_TENSORS.description,
    fallback: () => 100_000,
  },
  voxels: {
    env: "SSL3D_MAX_VOXELS",
    description: SETTINGS.SSL3D_MAX_VOXELS.description,
    // ~16 bytes per voxel (raw + float32 + transposed/cropped copy + resampled output) within a quarter of memory
    fallback: () => Math.max(2 ** 24, Math.min(2 ** 31, Math.floor(machineMemory() / 64))),
  },
  channels: {
    env: "SSL3D_MAX_CHANNELS",
    description: SETTINGS.SSL3D_MAX_CHANNELS.description,
    fallback: () => 16,
  },
  voxOffset: {
    env: "SSL3D_MAX_VOX_OFFSET",
    description: SETTINGS.SSL3D_MAX_VOX_OFFSET.description,
    fallback: () => 64 * MiB,
  },
  threads: {
    env: "SSL3D_MAX_THREADS",
    description: SETTINGS.SSL3D_MAX_THREADS.description,
    fallback: () => Math.max(64, 8 * availableParallelism()),
  },
  localProcesses: {
    env: "SSL3D_MAX_LOCAL_PROCESSES",
    description: SETTINGS.SSL3D_MAX_LOCAL_PROCESSES.description,
    fallback: () => Math.max(8, availableParallelism()),
  },
  epochs: {
    env: "SSL3D_MAX_EPOCHS",
    description: SETTINGS.SSL3D_MAX_EPOCHS.description,
    fallback: () => 1_000_000,
  },
  itersPerEpoch: {
    env: "SSL3D_MAX_ITERS_PER_EPOCH",
    description: SETTINGS.SSL3D_MAX_ITERS_PER_EPOCH.description,
    fallback: () => 1_000_000,
  },
  documentBytes: {
    env: "SSL3D_MAX_DOCUMENT_BYTES",
    description: SETTINGS.SSL3D_MAX_DOCUMENT_BYTES.description,
    fallback: () => 256 * MiB,
  },
  jsonDepth: {
    env: "SSL3D_JSON_MAX_DEPTH",
    description: SETTINGS.SSL3D_JSON_MAX_DEPTH.description,
    fallback: () => 64,
  },
} as const satisfies Record<string, LimitSpec>;

export type LimitName = keyof typeof LIMITS;

/** The effective value of a limit: a positive integer from its environment variable, else the default. */
export function limit(name: LimitName, env: Env = processEnv()): number {
  const spec: LimitSpec = LIMITS[name];
  const raw = envRaw(spec.env, env);
  if (raw === undefined || raw.trim() === "") return spec.fallback();
  const n = Number(raw.trim());
  if (!Number.isSafeInteger(n) || n < 1)
    throw new ConfigError(`must be a positive integer, got ${JSON.stringify(raw)}`, { field: spec.env });
  return n;
}

/** Human-readable byte count (for messages). */
export function formatBytes(n: number): string {
  if (n >= 1024 * GiB) return `${(n / (1024 * GiB)).toFixed(1)} TiB`;
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${n} bytes`;
}

/** Environment variable that overrides the memory available to this process (see `memoryLimit`). */
export const MEMORY_LIMIT_ENV = "SSL3D_MEMORY_LIMIT_BYTES" satisfies SettingName;

/** The memory this process may use: `SSL3D_MEMORY_LIMIT_BYTES`, else the cgroup limit, else physical memory. */
export function memoryLimit(env: Env = processEnv()): { bytes: number; source: string } {
  const v = envString(MEMORY_LIMIT_ENV, env);
  if (v !== undefined) {
    if (!/^\d+$/.test(v) || Number(v) <= 0)
      throw new ConfigError(`${MEMORY_LIMIT_ENV} must be a positive number of bytes, got "${v}"`, {
        field: MEMORY_LIMIT_ENV,
      });
    return { bytes: Number(v), source: MEMORY_LIMIT_ENV };
  }
  try {
    const cg = readFileSync("/sys/fs/cgroup/memory.max", "utf8").trim();
    if (/^\d+$/.test(cg) && Number(cg) < totalmem()) return { bytes: Number(cg), source: "the cgroup memory limit" };
  } catch {
    // no cgroup v2 limit
  }
  return { bytes: totalmem(), source: "this machine's memory" };
}

/**
 * Lower bounds of what one more unit of a count costs in memory, for the message of `checkCount` and its memory
 * check: an idle worker thread (a V8 isolate) measures ~11 MiB before it loads any module; a Node.js process with
 * TensorFlow.js loaded ~75 MiB before it builds a model. Lower bounds, so only counts that cannot fit fail on memory.
 */
export const WORKER_THREAD_BYTES = 8 * MiB;
export const TRAINING_PROCESS_BYTES = 64 * MiB;

export interface CountCheck {
  /** The option as the user typed it (`--workers`), named in the message as the field. */
  readonly flag: string;
  /** The limit that bounds it. */
  readonly limit: LimitName;
  /** What one unit is, plural (`worker threads`). */
  readonly what: string;
  /** Memory one unit needs at least (omit for counts that cost time, not memory). */
  readonly unitBytes?: number;
  /** The smallest allowed value (default 0). */
  readonly min?: number;
  /** Up to this many units cost no extra memory (one training process is the one already running). */
  readonly freeUnits?: number;
}

/**
 * A count from an option or environment variable: a non-negative decimal integer (a safe integer), at least `min`,
 * at most its limit, and (with `unitBytes`) small enough that the memory it needs fits `memoryLimit`. The
 * ConfigError names the option and says what it would need.
 */
export function checkCount(c: CountCheck, value: string | number, env: Env = processEnv()): number {
  const text = String(value).trim();
  const min = c.min ?? 0;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    const kind = min === 0 ? "a non-negative integer" : `an integer >= ${min}`;
    const why = Number.isNaN(n) || n < min ? kind : `${kind} at most ${Number.MAX_SAFE_INTEGER}`;
    throw new ConfigError(`expects ${why}, got ${JSON.stringify(String(value).slice(0, 40))}`, { field: c.flag });
  }
  const max = limit(c.limit, env);
  const need = c.unitBytes === undefined || n <= (c.freeUnits ?? 0) ? undefined : n * c.unitBytes;
  const mem = need === undefined ? undefined : memoryLimit(env);
  const needs =
    need === undefined ? "" : ` would need at least ${formatBytes(need)} (${formatBytes(c.unitBytes!)} each)`;
  if (n > max) {
    throw new ConfigError(`${n} ${c.what}${needs}; at most ${max} are allowed (override with ${LIMITS[c.limit].env})`, {
      field: c.flag,
    });
  }
  if (need !== undefined && mem !== undefined && need > mem.bytes) {
    throw new ConfigError(
      `${n} ${c.what}${needs}; ${mem.source} is ${formatBytes(mem.bytes)} (override with ${MEMORY_LIMIT_ENV})`,
      { field: c.flag },
    );
  }
  return n;
}

/** The counts every command checks, by option. */
export const COUNTS = {
  workers: { flag: "--workers", limit: "threads", what: "data loader worker threads", unitBytes: WORKER_THREAD_BYTES },
  numProcesses: {
    flag: "--num-processes",
    limit: "threads",
    what: "preprocessing worker threads",
    unitBytes: WORKER_THREAD_BYTES,
  },
  numProcessesFingerprint: {
    flag: "--num-processes-fingerprint",
    limit: "threads",
    what: "fingerprint worker threads",
    unitBytes: WORKER_THREAD_BYTES,
  },
  jobs: { flag: "--jobs", limit: "threads", what: "files verified at once", min: 1 },
  nprocPerNode: {
    flag: "--nproc-per-node",
    limit: "localProcesses",
    what: "training processes",
    unitBytes: TRAINING_PROCESS_BYTES,
    min: 1,
    freeUnits: 1,
  },
  epochs: { flag: "--epochs", limit: "epochs", what: "epochs", min: 1 },
  itersPerEpoch: { flag: "--iters-per-epoch", limit: "itersPerEpoch", what: "iterations per epoch", min: 1 },
  valIters: { flag: "--val-iters", limit: "itersPerEpoch", what: "validation iterations per epoch" },
} as const satisfies Record<string, CountCheck>;
