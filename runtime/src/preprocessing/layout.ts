/**
 * Where the preprocessing stages put things (nnssl `src/nnssl/paths.py` and `default_preprocessor.py`, with `.zarr`
 * arrays instead of `.b2nd`):
 *
 *   $nnssl_preprocessed/<Dataset>/dataset_fingerprint.json
 *   $nnssl_preprocessed/<Dataset>/<plans>.json
 *   $nnssl_preprocessed/<Dataset>/pretrain_data__<config>.json
 *   $nnssl_preprocessed/<Dataset>/valid_imgs.json                (valid_imgs__<part>_of_<total>.json while split)
 *   $nnssl_preprocessed/<Dataset>/<plans>_<config>/valid_imgs.json  (per configuration; read by training)
 *   $nnssl_preprocessed/<Dataset>/<plans>_<config>/<collection>/<dataset_index>/<subject>/<session>/
 *       <stem>.zarr  <stem>__anon.zarr  <stem>__anat.zarr  <stem>.json (properties, written last)
 */
import * as path from "node:path";
import { imageStem, type IndependentImage, type OutputKind } from "../config/collection.js";
import { LOCK_FILE, lockFolder, type FolderLock } from "../io/folder-lock.js";
import { checkSafeName, childPath } from "../io/safe-path.js";

export function fingerprintFile(ppDataset: string): string {
  return path.join(ppDataset, "dataset_fingerprint.json");
}

/** Plans and configuration names become file and folder names: plain names only (docs/limits-and-safety.md). */
export function checkPlansName(plansName: string): string {
  return checkSafeName(plansName, `plans name "${plansName}"`, { field: "plans name" });
}

export function plansFile(ppDataset: string, plansName: string): string {
  return path.join(ppDataset, `${checkPlansName(plansName)}.json`);
}

export function dataIdentifierDir(ppDataset: string, plansName: string, config: string): string {
  checkSafeName(config, `configuration name "${config}"`, { field: "configuration" });
  return path.join(ppDataset, `${checkPlansName(plansName)}_${config}`);
}

export function collectionCopyFile(ppDataset: string, config: string): string {
  checkSafeName(config, `configuration name "${config}"`, { field: "configuration" });
  return path.join(ppDataset, `pretrain_data__${config}.json`);
}

export function validImagesFile(dir: string, part?: { part: number; total: number }): string {
  return path.join(dir, part === undefined || part.total <= 1 ? "valid_imgs.json" : `valid_imgs__${part.part}_of_${part.total}.json`);
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
    return childPath(dataDir, [...folder, `${imageStem(img.image_name)}${suffix}${ext}`], { field: `image ${JSON.stringify(img.image_name)}` });
  };
  return { image: file("image", ".zarr"), anon: file("anon", ".zarr"), anat: file("anat", ".zarr"), properties: file("image", ".json") };
}

const PART_LOCK_RE = /^\.ssl3d\.part-\d+-of-\d+\.lock$/;

/**
 * The writer lock of `$nnssl_preprocessed/<Dataset>` (io/folder-lock.ts): fingerprint, plan and an unsplit preprocess
 * take the whole folder; `preprocess --part p --total-parts t` jobs take their own part (parts run side by side) and
 * exclude, and are excluded by, a whole-folder writer.
 */
export function lockDataset(ppDataset: string, owner: string, part?: { part: number; total: number }): FolderLock {
  if (part !== undefined && part.total > 1) {
    return lockFolder(ppDataset, { owner: `${owner} (part ${part.part} of ${part.total})`, name: `.ssl3d.part-${part.part}-of-${part.total}.lock`, conflictsWith: (n) => n === LOCK_FILE });
  }
  return lockFolder(ppDataset, { owner, conflictsWith: (n) => PART_LOCK_RE.test(n) });
}
