/**
 * What training reads: the preprocessed images of one configuration. Only images listed in the configuration's
 * `valid_imgs.json` AND whose properties marker exists are returned, so nothing a killed run left half-written
 * is ever handed to training.
 */
import { promises as fs } from "node:fs";
import { uniqueId, uniqueSubjectId, type IndependentImage } from "../config/collection.js";
import { processEnv, type Env } from "../config/settings.js";
import { EnvironmentError } from "../errors.js";
import { DEFAULT_PLANS_NAME } from "../config/plans.js";
import { dataIdentifierDir, imageOutputs, preprocessedDatasetDir, validImagesFile } from "../config/layout.js";

export interface PreprocessedImage {
  readonly uniqueId: string;
  readonly uniqueSubjectId: string;
  readonly modality: string;
  readonly datasetIndex: string;
  /** Zarr array directory of the image, (C, X, Y, Z) float32. */
  readonly image: string;
  readonly anonMask?: string;
  readonly anatMask?: string;
  /** Properties JSON (shape, spacing, crop box, checksums). */
  readonly properties: string;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

export async function listPreprocessedImages(
  datasetName: string,
  config: string,
  plansName = DEFAULT_PLANS_NAME,
  env: Env = processEnv(),
): Promise<PreprocessedImage[]> {
  const dataDir = dataIdentifierDir(preprocessedDatasetDir(datasetName, env), plansName, config);
  const file = validImagesFile(dataDir);
  let list: IndependentImage[];
  try {
    list = JSON.parse(await fs.readFile(file, "utf8")) as IndependentImage[];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new EnvironmentError(
        `no preprocessed data for configuration ${config}: run \`ssl3d preprocess -d ${datasetName} -c ${config}\` first`,
        { file },
      );
    throw err;
  }
  const out: PreprocessedImage[] = [];
  for (const img of list) {
    const o = imageOutputs(dataDir, img);
    if (!(await exists(o.properties))) continue;
    const m = img.associated_masks;
    out.push({
      uniqueId: uniqueId(img),
      uniqueSubjectId: uniqueSubjectId(img),
      modality: img.image_modality,
      datasetIndex: String(img.dataset_index),
      image: o.image,
      ...(m.anonymization_mask !== null ? { anonMask: o.anon } : {}),
      ...(m.anatomy_mask !== null ? { anatMask: o.anat } : {}),
      properties: o.properties,
    });
  }
  return out;
}
