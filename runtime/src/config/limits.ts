/**
 * Resource limits for untrusted input (checkpoints, NIfTI files, JSON documents, network settings read from files).
 * Every limit has a default and an environment-variable override; docs/limits-and-safety.md lists them all.
 * Readers check a limit BEFORE they allocate what it bounds. An invalid override is a ConfigError naming the
 * variable, never silently ignored.
 *
 * Leaf module (node:os only): any layer may import it.
 */
import { totalmem } from "node:os";
import { ConfigError } from "../errors.js";

export interface LimitSpec {
  /** Environment variable that overrides the default. */
  readonly env: string;
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
    description: "bytes the PyTorch/safetensors checkpoint reader may hold: the file, inflated zip records and decoded float32 tensors together",
    fallback: () => Math.min(32 * GiB, Math.floor(machineMemory() / 2)),
  },
  pickleNodes: {
    env: "SSL3D_PICKLE_MAX_NODES",
    description: "values a pickle traversal (adaptation plan, error messages) may visit; memo references count every time they are reached",
    fallback: () => 1_000_000,
  },
  pickleDepth: {
    env: "SSL3D_PICKLE_MAX_DEPTH",
    description: "nesting depth of pickled containers a traversal follows",
    fallback: () => 200,
  },
  networkParams: {
    env: "SSL3D_MAX_NETWORK_PARAMS",
    description: "scalar parameters of a network built from settings in a file (adaptation plan, ssl3d.options) or options",
    fallback: () => 2 ** 31,
  },
  networkTensors: {
    env: "SSL3D_MAX_NETWORK_TENSORS",
    description: "parameter tensors of such a network (blocks x layers)",
    fallback: () => 100_000,
  },
  voxels: {
    env: "SSL3D_MAX_VOXELS",
    description: "voxels x channels of one image in memory, as read and after resampling",
    // ~16 bytes per voxel (raw + float32 + transposed/cropped copy + resampled output) within a quarter of memory
    fallback: () => Math.max(2 ** 24, Math.min(2 ** 31, Math.floor(machineMemory() / 64))),
  },
  channels: {
    env: "SSL3D_MAX_CHANNELS",
    description: "volumes along a NIfTI's 4th dimension loaded as channels",
    fallback: () => 16,
  },
  voxOffset: {
    env: "SSL3D_MAX_VOX_OFFSET",
    description: "bytes between the start of a NIfTI file and its voxel data (header + extensions); skipped, never buffered",
    fallback: () => 64 * MiB,
  },
  jsonDepth: {
    env: "SSL3D_JSON_MAX_DEPTH",
    description: "nesting depth of objects/arrays in pretrain_data.json",
    fallback: () => 64,
  },
} as const satisfies Record<string, LimitSpec>;

export type LimitName = keyof typeof LIMITS;

/** The effective value of a limit: a positive integer from its environment variable, else the default. */
export function limit(name: LimitName, env: Readonly<Record<string, string | undefined>> = process.env): number {
  const spec: LimitSpec = LIMITS[name];
  const raw = env[spec.env];
  if (raw === undefined || raw.trim() === "") return spec.fallback();
  const n = Number(raw.trim());
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`must be a positive integer, got ${JSON.stringify(raw)}`, { field: spec.env });
  return n;
}

/** Human-readable byte count (for messages). */
export function formatBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${n} bytes`;
}
