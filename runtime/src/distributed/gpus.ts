/**
 * One process per GPU: tfjs-node-gpu computes on one GPU per process (the binding takes a registered GPU device;
 * the launcher gives each local rank its own via CUDA_VISIBLE_DEVICES), so more local ranks than visible GPUs on a
 * GPU backend would stack ranks on one device. That is a configuration error, reported before any rank starts.
 */
import { readdirSync } from "node:fs";
import { ConfigError } from "../errors.js";
import { envRaw, processEnv, type Env } from "../config/settings.js";

/** GPUs this process may use: CUDA_VISIBLE_DEVICES when set (empty, "-1", "none": 0), else the /dev/nvidiaN nodes. */
export function visibleGpuCount(env: Env = processEnv(), devDir = "/dev"): number {
  const v = envRaw("CUDA_VISIBLE_DEVICES", env);
  if (v !== undefined) {
    const ids = v
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    // CUDA stops at the first invalid entry ("-1" hides every device)
    const valid = ids.findIndex((s) => s === "-1" || s.toLowerCase() === "none");
    return valid === -1 ? ids.length : valid;
  }
  try {
    return readdirSync(devDir).filter((f) => /^nvidia\d+$/.test(f)).length;
  } catch {
    return 0;
  }
}

/**
 * Throws when `nproc` local ranks would share GPUs: always for an explicit `node-gpu` backend, and for `auto` when the
 * GPU build is installed and some GPU is visible (auto then trains on the GPU).
 */
export function checkRanksFitGpus(nproc: number, backend: string, gpus: number, gpuBuildInstalled: boolean): void {
  const onGpu = backend === "node-gpu" || (backend === "auto" && gpuBuildInstalled && gpus > 0);
  if (!onGpu || nproc <= gpus) return;
  throw new ConfigError(
    `${nproc} local ranks but ${gpus} visible GPU${gpus === 1 ? "" : "s"} on the ${backend} backend (one GPU per rank; ` +
      "check CUDA_VISIBLE_DEVICES and the pod's nvidia.com/gpu limit, or lower the process count)",
    { field: "--nproc-per-node" },
  );
}
