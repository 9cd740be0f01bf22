/**
 * The folder layout under the three nnssl roots, in one place. Every stage that reads or writes below
 * `nnssl_raw`, `nnssl_preprocessed` or `nnssl_results` asks this module for the path; nothing else joins file names
 * of the layout. Upstream: the roots are `src/nnssl/paths.py`; the results folder is `get_output_folder` in
 * `src/nnssl/utilities/file_path_utilities.py` (`<Trainer>__<Plans>__<Config>/fold_<fold>`, ssl3d trains fold `all`
 * only); plans and data-identifier names follow `src/nnssl/experiment_planning/`. Arrays are `.zarr` instead of
 * upstream's `.b2nd`, checkpoints `.safetensors` instead of `.pth` (docs/preprocessing.md, ADR 0021).
 *
 *   $nnssl_raw/<Dataset>/pretrain_data.json
 *   $nnssl_preprocessed/<Dataset>/dataset_fingerprint.json
 *   $nnssl_preprocessed/<Dataset>/<plans>.json
 *   $nnssl_preprocessed/<Dataset>/pretrain_data__<config>.json
 *   $nnssl_preprocessed/<Dataset>/splits_final.json
 *   $nnssl_preprocessed/<Dataset>/valid_imgs.json                (valid_imgs__<part>_of_<total>.json while split)
 *   $nnssl_preprocessed/<Dataset>/<plans>_<config>/valid_imgs.json  (per configuration; read by training)
 *   $nnssl_preprocessed/<Dataset>/<plans>_<config>/failed_imgs.json
 *   $nnssl_preprocessed/<Dataset>/<plans>_<config>/<collection>/<dataset_index>/<subject>/<session>/
 *       <stem>.zarr  <stem>__anon.zarr  <stem>__anat.zarr  <stem>.json (properties, written last)
 *   $nnssl_results/<Dataset>/<Trainer>__<Plans>__<Config>/plans.json, adaptation_plan.json
 *   $nnssl_results/<Dataset>/<Trainer>__<Plans>__<Config>/fold_all/run_info.json, training_log.jsonl, progress.png,
 *       checkpoint_{final,latest,best}.safetensors
 *
 * Names that become path components (dataset, plans, configuration, trainer, image fields) are checked to be plain
 * names and the results to lie below their root (io/safe-path.ts, docs/limits-and-safety.md).
 */
import * as path from "node:path";
import { imageStem, type IndependentImage, type OutputKind } from "./collection.js";
import { requireRoot } from "./env.js";
import type { Env } from "./settings.js";
import { LOCK_FILE, lockFolder, type FolderLock } from "../io/folder-lock.js";
import { checkSafeName, childPath } from "../io/safe-path.js";

/** The collection file of a raw dataset (upstream's name). */
export const COLLECTION_FILE = "pretrain_data.json";
/** The only fold ssl3d trains (upstream's `fold_all`). */
export const FOLD_ALL = "fold_all";
/** Files of a results folder (`<Trainer>__<Plans>__<Config>/`). */
export const RESULTS_FILES = { plans: "plans.json", adaptationPlan: "adaptation_plan.json" } as const;
/** Files of its `fold_all/`. */
export const FOLD_FILES = {
  runInfo: "run_info.json",
  trainingLog: "training_log.jsonl",
  progress: "progress.png",
} as const;
export const CHECKPOINT_KINDS = ["final", "latest", "best"] as const;
export type CheckpointKind = (typeof CHECKPOINT_KINDS)[number];
/** A bare network file (`ssl3d import`), looked for after the checkpoints. */
export const NETWORK_FILE = "network.safetensors";

function datasetComponent(datasetName: string): string {
  return checkSafeName(datasetName, `dataset name ${JSON.stringify(datasetName)}`, { field: "dataset" });
}

// ---- nnssl_raw ---------------------------------------------------------------------------------------------------

/** `$nnssl_raw/<Dataset>` */
export function rawDatasetDir(datasetName: string, env?: Env): string {
  return childPath(requireRoot("nnssl_raw", env), [datasetComponent(datasetName)], { field: "dataset" });
}

/** `$nnssl_raw/<Dataset>/pretrain_data.json` */
export function collectionFile(datasetName: string, env?: Env): string {
  return path.join(rawDatasetDir(datasetName, env), COLLECTION_FILE);
}

// ---- nnssl_preprocessed ------------------------------------------------------------------------------------------

/** `$nnssl_preprocessed/<Dataset>` */
export function preprocessedDatasetDir(datasetName: string, env?: Env): string {
  return childPath(requireRoot("nnssl_preprocessed", env), [datasetComponent(datasetName)], { field: "dataset" });
}

export function fingerprintFile(ppDataset: string): string {
  return path.join(ppDataset, "dataset_fingerprint.json");
}

/** Plans and configuration names become file and folder names: plain names only (docs/limits-and-safety.md). */
export function checkPlansName(plansName: string, field = "plans name"): string {
  return checkSafeName(plansName, `plans name "${plansName}"`, { field });
}

export function checkConfigurationName(config: string, field = "configuration"): string {
  return checkSafeName(config, `configuration name "${config}"`, { field });
}

/** `<Dataset>/<plans>.json` */
export function plansFile(ppDataset: string, plansName: string): string {
  return path.join(ppDataset, `${checkPlansName(plansName)}.json`);
}

/** `<Dataset>/<plans>_<config>`: upstream's data identifier folder. */
export function dataIdentifierDir(ppDataset: string, plansName: string, config: string): string {
  checkConfigurationName(config);
  return path.join(ppDataset, `${checkPlansName(plansName)}_${config}`);
}

/** The collection as preprocessed for one configuration. */
export function collectionCopyFile(ppDataset: string, config: string): string {
  checkConfigurationName(config);
  return path.join(ppDataset, `pretrain_data__${config}.json`);
}

/** Subject split of training (upstream's name; data/split.ts). */
export function splitsFile(ppDataset: string): string {
  return path.join(ppDataset, "splits_final.json");
}

type Part = { part: number; total: number } | undefined;
const partSuffix = (part: Part): string =>
  part === undefined || part.total <= 1 ? "" : `__${part.part}_of_${part.total}`;

export function validImagesFile(dir: string, part?: { part: number; total: number }): string {
  return path.join(dir, `valid_imgs${partSuffix(part)}.json`);
}

export function failedImagesFile(dir: string, part?: { part: number; total: number }): string {
  return path.join(dir, `failed_imgs${partSuffix(part)}.json`);
}

export interface ImageOutputs {
  readonly image: string;
  readonly anon: string;
  readonly anat: string;
  readonly properties: string;
}

/**
 * The files of one image below `dataDir` (the layout of `outputPath`). Every component is checked to be a plain
 * name and the result to lie below `dataDir`, whatever produced the image record (a collection file is checked when
 * it is parsed; this is the second line).
 */
export function imageOutputs(dataDir: string, img: IndependentImage): ImageOutputs {
  const folder = [img.collection_name, String(img.dataset_index), img.subject_id, String(img.session_id)];
  const file = (kind: OutputKind, ext: string): string => {
    const suffix = kind === "image" ? "" : kind === "anon" ? "__anon" : "__anat";
    return childPath(dataDir, [...folder, `${imageStem(img.image_name)}${suffix}${ext}`], {
      field: `image ${JSON.stringify(img.image_name)}`,
    });
  };
  return {
    image: file("image", ".zarr"),
    anon: file("anon", ".zarr"),
    anat: file("anat", ".zarr"),
    properties: file("image", ".json"),
  };
}

const PART_LOCK_RE = /^\.ssl3d\.part-\d+-of-\d+\.lock$/;

/**
 * The writer lock of `$nnssl_preprocessed/<Dataset>` (io/folder-lock.ts): fingerprint, plan and an unsplit preprocess
 * take the whole folder; `preprocess --part p --total-parts t` jobs take their own part (parts run side by side) and
 * exclude, and are excluded by, a whole-folder writer.
 */
export function lockDataset(ppDataset: string, owner: string, part?: { part: number; total: number }): FolderLock {
  if (part !== undefined && part.total > 1) {
    return lockFolder(ppDataset, {
      owner: `${owner} (part ${part.part} of ${part.total})`,
      name: `.ssl3d.part-${part.part}-of-${part.total}.lock`,
      conflictsWith: (n) => n === LOCK_FILE,
    });
  }
  return lockFolder(ppDataset, { owner, conflictsWith: (n) => PART_LOCK_RE.test(n) });
}

// ---- nnssl_results -----------------------------------------------------------------------------------------------

/** `<Trainer>__<Plans>__<Config>` (upstream's `convert_trainer_plans_config_to_identifier`). */
export function trainingIdentifier(trainer: string, plans: string, config: string): string {
  return `${trainer}__${plans}__${config}`;
}

/** `$nnssl_results/<Dataset>/<Trainer>__<Plans>__<Config>`, every component a plain name, below the root. */
export function resultsRunDir(
  resultsRoot: string,
  datasetName: string,
  trainer: string,
  plans: string,
  config: string,
): string {
  return childPath(resultsRoot, [datasetName, trainingIdentifier(trainer, plans, config)], {
    field: "trainer, plans and configuration names",
  });
}

/** `<results folder>/fold_all` */
export function foldDir(runDir: string): string {
  return path.join(runDir, FOLD_ALL);
}

/** `plans.json` / `adaptation_plan.json` of a results folder. */
export function resultsFile(runDir: string, name: keyof typeof RESULTS_FILES): string {
  return path.join(runDir, RESULTS_FILES[name]);
}

/** `run_info.json` / `training_log.jsonl` / `progress.png` of a `fold_all/`. */
export function foldFile(fold: string, name: keyof typeof FOLD_FILES): string {
  return path.join(fold, FOLD_FILES[name]);
}

/** `checkpoint_<kind>.safetensors` in a checkpoint folder (`fold_all/` or the run's checkpoint volume folder). */
export function checkpointFileName(kind: CheckpointKind): string {
  return `checkpoint_${kind}.safetensors`;
}

export function checkpointFile(dir: string, kind: CheckpointKind): string {
  return path.join(dir, checkpointFileName(kind));
}

/** What a folder given as "a checkpoint" is searched for, in nnssl's resume order (final, latest, best), then a network. */
export const CHECKPOINT_SEARCH_ORDER: readonly string[] = [
  ...(["final", "latest", "best"] as const).map(checkpointFileName),
  NETWORK_FILE,
];
