/**
 * `fold_all/run_info.json`, written by `ssl3d train` (rank 0) when a run starts: what the run report needs beyond the
 * checkpoints and logs (data counts, resolved trainer and architecture, where the checkpoints go). No heavy imports:
 * the local runner (`ssl3d run`) reads it to find a run's results folder.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { FOLD_FILES, foldDir, foldFile } from "../config/layout.js";

export const RUN_INFO = FOLD_FILES.runInfo;
export interface RunInfo {
  readonly dataset: string;
  readonly plans: string;
  readonly configuration: string;
  readonly trainer: string;
  readonly trainer_key: string;
  readonly method: string;
  readonly architecture: string;
  readonly parameters: number;
  readonly patch_size: number[];
  readonly network_patch_size: number[];
  /** Global batch size (all ranks). */
  readonly batch_size: number;
  readonly world_size: number;
  readonly epochs: number;
  readonly iters_per_epoch: number;
  readonly val_iters: number;
  readonly modalities: string[] | null;
  readonly train_images: number;
  readonly val_images: number;
  readonly train_subjects: number;
  readonly val_subjects: number;
  readonly checkpoint_dir: string;
  readonly started_at: string;
}

/** The results folder (`<root>/<Dataset>/<Trainer>__<Plans>__<Config>`) whose run_info.json records `checkpointDir`; the newest if several. */
export function findResultsFolder(resultsRoot: string, checkpointDir: string): string | undefined {
  if (!existsSync(resultsRoot)) return undefined;
  let best: { dir: string; mtime: number } | undefined;
  for (const ds of readdirSync(resultsRoot, { withFileTypes: true })) {
    if (!ds.isDirectory()) continue;
    for (const run of readdirSync(join(resultsRoot, ds.name), { withFileTypes: true })) {
      const info = foldFile(foldDir(join(resultsRoot, ds.name, run.name)), "runInfo");
      if (!run.isDirectory() || !existsSync(info)) continue;
      let recorded: string | undefined;
      try {
        recorded = (JSON.parse(readFileSync(info, "utf8")) as Partial<RunInfo>).checkpoint_dir;
      } catch {
        continue;
      }
      const mtime = statSync(info).mtimeMs;
      if (
        recorded !== undefined &&
        resolve(recorded) === resolve(checkpointDir) &&
        (best === undefined || mtime > best.mtime)
      )
        best = { dir: join(resultsRoot, ds.name, run.name), mtime };
    }
  }
  return best?.dir;
}
