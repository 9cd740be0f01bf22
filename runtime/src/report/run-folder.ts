/**
 * What a finished (or running) training run left behind, read for `ssl3d report`: the results folder
 * `$nnssl_results/DatasetNNN_Name/<Trainer>__<Plans>__<Config>/` (plans.json, adaptation_plan.json) with its
 * `fold_all/` (run_info.json, training_log.jsonl, progress.png), and the checkpoints (in `fold_all/` or the
 * `SSL3D_CHECKPOINT_DIR` that run_info.json records). Checkpoint files are read header-only.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ConfigError, DataError } from "../errors.js";
import { readSafetensorsMetadata } from "../models/safetensors.js";
import {
  CheckpointMetaSchema,
  checkpointPath,
  type CheckpointKind,
  type CheckpointMeta,
} from "../training/checkpoint.js";
import { JSONL_LOG } from "../training/loop.js";
import { RUN_INFO, type RunInfo } from "../training/run-info.js";
import { FOLD_ALL, foldDir as foldDirOf, resultsFile } from "../config/layout.js";
import { readPlansDocument } from "../config/plans.js";

/** One line of `training_log.jsonl` (training/loop.ts). */
export interface EpochLine {
  readonly epoch: number;
  readonly train_loss: number | null;
  readonly val_loss: number | null;
  readonly lr: number;
  readonly epoch_time_s: number;
  readonly global_step: number;
  /** Absent in logs of other writers. */
  readonly step_losses?: readonly (number | null)[];
  readonly time: string;
}

export interface CheckpointEntry {
  readonly kind: CheckpointKind;
  readonly file: string;
  readonly bytes: number;
  readonly meta: CheckpointMeta;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface RunFolder {
  /** `<Trainer>__<Plans>__<Config>/` */
  readonly baseDir: string;
  readonly foldDir: string;
  /** "Dataset990_Demo · BaseMAETrainer__nnsslPlans__onemmiso" */
  readonly name: string;
  readonly info: RunInfo | undefined;
  readonly plans: Record<string, unknown> | undefined;
  readonly epochs: readonly EpochLine[];
  readonly checkpointDir: string;
  /** Newest first in nnssl's resume order (final, latest, best): what exists. */
  readonly checkpoints: readonly CheckpointEntry[];
}

function readJson(file: string): unknown {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as unknown;
  } catch (err) {
    throw new DataError(`invalid JSON: ${(err as Error).message}`, { file });
  }
}

/** Epoch lines of a JSONL log; a torn last line (a run killed mid-write) is skipped. */
export function readEpochLog(file: string): EpochLine[] {
  if (!existsSync(file)) return [];
  const out: EpochLine[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    try {
      out.push(JSON.parse(line) as EpochLine);
    } catch {
      continue;
    }
  }
  return out;
}

async function readCheckpointEntry(kind: CheckpointKind, file: string): Promise<CheckpointEntry> {
  const metadata = await readSafetensorsMetadata(file);
  let raw: unknown;
  try {
    raw = JSON.parse(metadata.ssl3d ?? "null");
  } catch {
    throw new DataError("checkpoint metadata is not JSON", { file, field: "__metadata__.ssl3d" });
  }
  const r = CheckpointMetaSchema.safeParse(raw);
  if (!r.success)
    throw new DataError(`not an ssl3d training checkpoint: ${r.error.issues[0]?.message ?? "?"}`, {
      file,
      field: `__metadata__.ssl3d.${r.error.issues[0]?.path.join(".") ?? ""}`,
    });
  return { kind, file, bytes: statSync(file).size, meta: r.data, metadata };
}

/** The run folder given as the results folder, its `fold_all/`, or a file inside either. */
export async function readRunFolder(dir: string, opts: { checkpointDir?: string } = {}): Promise<RunFolder> {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new ConfigError("results folder not found", { file: abs });
  const foldDir = existsSync(foldDirOf(abs)) ? foldDirOf(abs) : abs;
  const baseDir = basename(foldDir) === FOLD_ALL ? dirname(foldDir) : foldDir;
  const info = readJson(join(foldDir, RUN_INFO)) as RunInfo | undefined;
  const epochs = readEpochLog(join(foldDir, JSONL_LOG));
  const checkpointDir =
    opts.checkpointDir ??
    (existsSync(checkpointPath(foldDir, "final")) || existsSync(checkpointPath(foldDir, "latest"))
      ? foldDir
      : (info?.checkpoint_dir ?? foldDir));
  const checkpoints: CheckpointEntry[] = [];
  for (const kind of ["final", "latest", "best"] as const) {
    const f = checkpointPath(checkpointDir, kind);
    if (existsSync(f)) checkpoints.push(await readCheckpointEntry(kind, f));
  }
  if (info === undefined && epochs.length === 0 && checkpoints.length === 0) {
    throw new ConfigError(`not a training results folder (no fold_all/${RUN_INFO}, ${JSONL_LOG} or checkpoint)`, {
      file: abs,
    });
  }
  const dataset = info?.dataset ?? basename(dirname(baseDir));
  return {
    baseDir,
    foldDir,
    name: `${dataset} · ${basename(baseDir)}`,
    info,
    plans: existsSync(resultsFile(baseDir, "plans")) ? readPlansDocument(resultsFile(baseDir, "plans")) : undefined,
    epochs,
    checkpointDir,
    checkpoints,
  };
}
