/**
 * Local launcher, torchrun's role: start `nproc` processes of the same command on this node, each with `RANK`,
 * `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` set from the node's PET_* contract. Signals are forwarded;
 * when one rank fails the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launcher exits
 * with the failed rank's code, so a pod fails as a whole and the operator can restart the gang.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { log } from "../observability/log.js";
import { ENV, type DistributedConfig } from "./env.js";

export interface LaunchOptions {
  readonly cfg: Pick<DistributedConfig, "nnodes" | "nodeRank" | "masterAddr" | "masterPort">;
  readonly nprocPerNode: number;
  /** Executable and arguments of each rank (e.g. process.execPath with the CLI arguments). */
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly graceMs?: number;
}

export function rankEnv(opts: LaunchOptions, localRank: number): NodeJS.ProcessEnv {
  const world = opts.cfg.nnodes * opts.nprocPerNode;
  const rank = opts.cfg.nodeRank * opts.nprocPerNode + localRank;
  return {
    ...(opts.env ?? process.env),
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

  return new Promise((resolve) => {
    for (let local = 0; local < opts.nprocPerNode; local++) {
      const child = spawn(opts.command, [...opts.args], { stdio: "inherit", env: rankEnv(opts, local) });
      children.push(child);
      child.on("exit", (code, signal) => {
        remaining--;
        const failed = code !== 0;
        if (failed && firstFailure === undefined) {
          firstFailure = code ?? 128 + (signal === null ? 1 : ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[signal] ?? 1);
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
