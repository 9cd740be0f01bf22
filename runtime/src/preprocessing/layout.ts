/**
 * Where the preprocessing stages put things (reference spec 1.4, with `.zarr` arrays instead of `.b2nd`):
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
import { outputPath, type IndependentImage } from "../config/collection.js";

export function fingerprintFile(ppDataset: string): string {
  return path.join(ppDataset, "dataset_fingerprint.json");
}

export function plansFile(ppDataset: string, plansName: string): string {
  return path.join(ppDataset, `${plansName}.json`);
}

export function dataIdentifierDir(ppDataset: string, plansName: string, config: string): string {
  return path.join(ppDataset, `${plansName}_${config}`);
}

export function collectionCopyFile(ppDataset: string, config: string): string {
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

export function imageOutputs(dataDir: string, img: IndependentImage): ImageOutputs {
  return {
    image: path.join(dataDir, outputPath(img, "image", ".zarr")),
    anon: path.join(dataDir, outputPath(img, "anon", ".zarr")),
    anat: path.join(dataDir, outputPath(img, "anat", ".zarr")),
    properties: path.join(dataDir, outputPath(img, "image", ".json")),
  };
}
