/**
 * The distributed environment contract, torchrun-compatible.
 *
 * The operator (one pod per node) sets `PET_NNODES`, `PET_NODE_RANK`, `PET_NPROC_PER_NODE`, `PET_MASTER_ADDR`,
 * `PET_MASTER_PORT`. The local launcher (`ssl3d train --nproc-per-node N`, see launch.ts) starts one process per
 * local rank and adds `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, as torchrun does. When
 * `RANK`/`WORLD_SIZE` are present they win; otherwise a process is local rank 0 of its node.
 *
 * Leaf module (no TensorFlow, no sockets): the operator may import it for the variable names.
 */
import { ConfigError } from "../errors.js";
import { envInt, envRaw, processEnv, type Env, type SettingName } from "../config/settings.js";

export const ENV = {
  nnodes: "PET_NNODES",
  nodeRank: "PET_NODE_RANK",
  nprocPerNode: "PET_NPROC_PER_NODE",
  masterAddr: "PET_MASTER_ADDR",
  masterPort: "PET_MASTER_PORT",
  rank: "RANK",
  localRank: "LOCAL_RANK",
  worldSize: "WORLD_SIZE",
  torchMasterAddr: "MASTER_ADDR",
  torchMasterPort: "MASTER_PORT",
  timeout: "SSL3D_DIST_TIMEOUT_S",
} as const satisfies Record<string, SettingName>;

export const DEFAULT_MASTER_PORT = 29500;
/** Same order of magnitude as nnssl's NCCL timeout (25 min). */
export const DEFAULT_TIMEOUT_S = 1500;

export interface DistributedConfig {
  readonly nnodes: number;
  readonly nodeRank: number;
  readonly nprocPerNode: number;
  readonly localRank: number;
  /** Global rank = nodeRank * nprocPerNode + localRank. */
  readonly rank: number;
  readonly worldSize: number;
  readonly masterAddr: string;
  readonly masterPort: number;
  readonly timeoutMs: number;
}

function int(env: Env, name: SettingName, fallback: number, min: number): number {
  return envInt(name, fallback, min, env);
}

/** Read the contract from the environment; a single-process run when nothing is set. */
export function distributedConfigFromEnv(env: Env = processEnv()): DistributedConfig {
  const nnodes = int(env, ENV.nnodes, 1, 1);
  const nodeRank = int(env, ENV.nodeRank, 0, 0);
  const nprocPerNode = int(env, ENV.nprocPerNode, 1, 1);
  if (nodeRank >= nnodes) {
    throw new ConfigError(`node rank ${nodeRank} is not below the node count ${nnodes}`, {
      field: `environment variable ${ENV.nodeRank}`,
    });
  }
  const localRank = int(env, ENV.localRank, 0, 0);
  const worldSize = int(env, ENV.worldSize, nnodes * nprocPerNode, 1);
  const rank = int(env, ENV.rank, nodeRank * nprocPerNode + localRank, 0);
  if (rank >= worldSize) {
    throw new ConfigError(`rank ${rank} is not below the world size ${worldSize}`, {
      field: `environment variable ${ENV.rank}`,
    });
  }
  const masterAddr = envRaw(ENV.torchMasterAddr, env) ?? envRaw(ENV.masterAddr, env) ?? "127.0.0.1";
  const masterPort = int(env, ENV.torchMasterPort, int(env, ENV.masterPort, DEFAULT_MASTER_PORT, 1), 1);
  const timeoutMs = int(env, ENV.timeout, DEFAULT_TIMEOUT_S, 1) * 1000;
  return { nnodes, nodeRank, nprocPerNode, localRank, rank, worldSize, masterAddr, masterPort, timeoutMs };
}

/**
 * Per-rank share of a global batch. nnssl (`AbstractBaseTrainer._set_batch_size`) gives every rank
 * `ceil(total / world)` and the last ones what is left, which can be 0 or negative (total 5 on 4 ranks: 2, 2, 1, -1).
 * We split evenly instead: every rank gets `floor(total / world)` and the first `total % world` ranks one more, so no
 * rank is idle when `total >= world`. Gradients must then be weighted by `share / total` before summing (see
 * ProcessGroup.allReduceSum).
 */
export function perRankBatchSize(total: number, world: number, rank: number): number {
  if (!Number.isInteger(total) || total < world) {
    throw new ConfigError(`the global batch size ${total} must be an integer >= the world size ${world}`, {
      field: "batch size",
    });
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= world) {
    throw new ConfigError(`rank ${rank} is outside 0..${world - 1}`, { field: "rank" });
  }
  return Math.floor(total / world) + (rank < total % world ? 1 : 0);
}
