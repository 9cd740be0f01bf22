/**
 * Local launcher, torchrun's role: start `nproc` processes of the same command on this node, each with `RANK`,
 * `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` set from the node's PET_* contract. Signals are forwarded;
 * when one rank fails the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launcher exits
 * with the failed rank's code, so a pod fails as a whole and the operator can restart the gang.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { log } from "../observability/log.js";
import { ConfigError } from "../errors.js";
import { ENV, type DistributedConfig } from "./env.js";
import { childEnv, envRaw, type Env } from "../config/settings.js";

export interface LaunchOptions {
  readonly cfg: Pick<DistributedConfig, "nnodes" | "nodeRank" | "masterAddr" | "masterPort">;
  readonly nprocPerNode: number;
  /** Executable and arguments of each rank (e.g. process.execPath with the CLI arguments). */
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly graceMs?: number;
}

/**
 * The devices this node's container may use, as CUDA_VISIBLE_DEVICES entries: an existing CUDA_VISIBLE_DEVICES
 * list wins (its entries are already what CUDA understands); else NVIDIA_VISIBLE_DEVICES, set by the NVIDIA device
 * plugin / container toolkit, whose devices the container sees renumbered 0..n-1 (UUIDs are kept as they are,
 * CUDA accepts them). undefined when neither is set (no GPU: nothing to pin).
 */
export function visibleDevices(env: Env): string[] | undefined {
  const list = (v: string): string[] =>
    v
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "");
  const cuda = envRaw("CUDA_VISIBLE_DEVICES", env);
  if (cuda !== undefined) return list(cuda);
  const nv = envRaw("NVIDIA_VISIBLE_DEVICES", env);
  if (nv === undefined || nv === "" || nv === "void") return undefined;
  if (nv === "none") return [];
  if (nv === "all") return undefined; // count unknown here: every local rank picks its index
  return list(nv).map((d, i) => (d.startsWith("GPU-") || d.startsWith("MIG-") ? d : String(i)));
}

/** CUDA_VISIBLE_DEVICES of one local rank: exactly one device, or an error when the node has too few. */
export function deviceForLocalRank(env: Env, nprocPerNode: number, localRank: number): string | undefined {
  const devices = visibleDevices(env);
  if (devices === undefined) return envRaw("NVIDIA_VISIBLE_DEVICES", env) === "all" ? String(localRank) : undefined;
  if (devices.length < nprocPerNode) {
    throw new ConfigError(
      `${nprocPerNode} local ranks need one GPU each, but only ${devices.length} are visible (${devices.join(",") || "none"}); lower nprocPerNode or request more nvidia.com/gpu`,
      { field: "CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES" },
    );
  }
  return devices[localRank];
}

export function rankEnv(opts: LaunchOptions, localRank: number): NodeJS.ProcessEnv {
  const world = opts.cfg.nnodes * opts.nprocPerNode;
  const rank = opts.cfg.nodeRank * opts.nprocPerNode + localRank;
  const base = opts.env ?? childEnv();
  const device = opts.nprocPerNode > 1 ? deviceForLocalRank(base, opts.nprocPerNode, localRank) : undefined;
  return {
    ...base,
    ...(device === undefined ? {} : { CUDA_VISIBLE_DEVICES: device }),
    [ENV.nnodes]: String(opts.cfg.nnodes),
    [ENV.nodeRank]: String(opts.cfg.nodeRank),
    [ENV.nprocPerNode]: String(opts.nprocPerNode),
    [ENV.rank]: String(rank),
    [ENV.localRank]: String(localRank),
    [ENV.worldSize]: String(world),
    [ENV.torchMasterAddr]: opts.cfg.masterAddr,
    [ENV.torchMasterPort]: String(opts.cfg.masterPort),
  };
}

/** Run all local ranks to completion; resolves to the exit code the launcher should exit with. */
export function launchLocalRanks(opts: LaunchOptions): Promise<number> {
  const grace = opts.graceMs ?? 10_000;
  const children: ChildProcess[] = [];
  let firstFailure: number | undefined;
  let remaining = opts.nprocPerNode;

  const stopAll = (signal: NodeJS.Signals): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  const forward = (signal: NodeJS.Signals) => () => {
    stopAll(signal);
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP"] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);

  // Fail before starting anything when the node has fewer GPUs than local ranks.
  for (let local = 0; local < opts.nprocPerNode; local++) rankEnv(opts, local);
  return new Promise((resolve) => {
    for (let local = 0; local < opts.nprocPerNode; local++) {
      const child = spawn(opts.command, [...opts.args], { stdio: "inherit", env: rankEnv(opts, local) });
      children.push(child);
      child.on("exit", (code, signal) => {
        remaining--;
        const failed = code !== 0;
        if (failed && firstFailure === undefined) {
          firstFailure =
            code ??
            128 +
              (signal === null ? 1 : (({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[signal] ?? 1));
          log().error({ localRank: local, code, signal }, "Rank failed; stopping the other ranks");
          stopAll("SIGTERM");
          setTimeout(() => {
            stopAll("SIGKILL");
          }, grace).unref();
        }
        if (remaining === 0) {
          for (const [s, h] of handlers) process.off(s, h);
          resolve(firstFailure ?? 0);
        }
      });
    }
  });
}
