/** Option parsing shared by the fingerprint / plan / preprocess commands. */
import { availableParallelism } from "node:os";
import { resolveDatasetName } from "../../config/env.js";
import { checkCount, COUNTS, type CountCheck } from "../../config/limits.js";
import { ConfigError } from "../../errors.js";
import type { OnError } from "../../preprocessing/tasks.js";
import { CONFIGURATION_NAMES } from "../../config/plans.js";
import { envString } from "../../config/settings.js";

/** Worker threads when no option is given: `$nnUNet_def_n_proc` (bounded like `-np`), else min(8, CPUs). */
export function defaultProcesses(): number {
  const v = envString("nnUNet_def_n_proc");
  if (v !== undefined && v.trim() !== "")
    return checkCount({ ...COUNTS.numProcesses, flag: "nnUNet_def_n_proc", min: 1 }, v);
  return Math.min(8, availableParallelism());
}

/** A non-negative safe integer (`--part`, `--total-parts`). */
export function parseCount(flag: string): (v: string) => number {
  return (v: string) => {
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
      throw new ConfigError(`expects a non-negative integer, got "${v.slice(0, 40)}"`, { field: flag });
    return Number(v);
  };
}

/** Thread counts (`-np`, `-npfp`): one or several, each bounded by config/limits.ts (threads and their memory). */
export function parseCounts(
  check: CountCheck,
  values: readonly string[] | string | undefined,
  fallback: number,
): number[] {
  if (values === undefined) return [fallback];
  const list = typeof values === "string" ? [values] : values;
  return list.map((v) => checkCount(check, v));
}

export function parseOnError(v: string | undefined): OnError {
  const mode = v ?? "fail";
  if (mode !== "fail" && mode !== "skip") throw new ConfigError(`--on-error must be "fail" or "skip", got "${mode}"`);
  return mode;
}

export function parseConfigs(v: readonly string[] | undefined): string[] {
  const list = v === undefined || v.length === 0 ? ["onemmiso"] : [...v];
  for (const c of list) {
    if (!(CONFIGURATION_NAMES as readonly string[]).includes(c))
      throw new ConfigError(`unknown configuration "${c}" (choices: ${CONFIGURATION_NAMES.join(", ")})`);
  }
  return list;
}

export function parseDatasets(v: readonly string[] | string): string[] {
  return (typeof v === "string" ? [v] : [...v]).map((d) => resolveDatasetName(d));
}

export function checkPlanner(v: string | undefined): void {
  if (v !== undefined && v !== "ExperimentPlanner")
    throw new ConfigError(`planner "${v}" is not available (only ExperimentPlanner)`);
}
