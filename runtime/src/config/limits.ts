/**
 * Resource limits for untrusted input (checkpoints, NIfTI files, JSON documents, network settings read from files).
 * Every limit has a default and an environment-variable override; docs/limits-and-safety.md lists them all.
 * Readers check a limit BEFORE they allocate what it bounds. An invalid override is a ConfigError naming the
 * variable, never silently ignored.
 *
 * Leaf module (node:os and config/settings.ts only): any layer may import it.
 */
import { totalmem } from "node:os";
import { ConfigError } from "../errors.js";
import { envRaw, processEnv, SETTINGS, type Env, type SettingName } from "./settings.js";

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
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`must be a positive integer, got ${JSON.stringify(raw)}`, { field: spec.env });
  return n;
}

/** Human-readable byte count (for messages). */
export function formatBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${n} bytes`;
}
