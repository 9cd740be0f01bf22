/**
 * Preprocess one image into the store, resumably: the properties JSON beside the arrays is written last and
 * records a checksum of every array, the plan it was made with and the identity (size, mtime) of the inputs.
 * A re-run skips the image only if all of that still matches the files on disk; otherwise the marker is
 * removed first, then arrays are rewritten (each atomically), then the marker.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { uniqueId, type IndependentImage } from "../config/collection.js";
import { DataError } from "../errors.js";
import { removeStaleTemps, writeJsonAtomic } from "../io/atomic.js";
import { assertInsideReal } from "../io/safe-path.js";
import { checksumZarrVolume, writeZarrVolume } from "../io/zarr-volume.js";
import type { ConfigurationPlan, Plan } from "../config/plans.js";
import { loadImage, sitkStuff } from "./image-io.js";
import { imageOutputs, type ImageOutputs } from "../config/layout.js";
import { preprocessCase, type CaseProperties } from "./preprocess-case.js";

/** Bump when the numbers or the layout change: finished images of older versions are then redone. */
export const PREPROCESSOR_VERSION = 1;
export const PROPERTIES_FORMAT = "ssl3d-preprocessed-image/v1";

export interface FileStamp {
  readonly size: number;
  readonly mtimeMs: number;
}

export interface ArrayRecord {
  /** Relative to the properties file's folder. */
  readonly path: string;
  readonly checksum: string;
}

export interface ImageProperties extends CaseProperties {
  format: typeof PROPERTIES_FORMAT;
  preprocessor_version: number;
  unique_id: string;
  plan_hash: string;
  inputs: Record<string, FileStamp>;
  /** Stored array shape (C, X, Y, Z). */
  shape: number[];
  sitk_stuff: { spacing: number[]; origin: number[]; direction: number[] };
  affine: number[];
  datatype: string;
  arrays: { image: ArrayRecord; anon?: ArrayRecord; anat?: ArrayRecord };
}

export function planHash(plan: Plan, cfg: ConfigurationPlan): string {
  const doc = { v: PREPROCESSOR_VERSION, transpose_forward: plan.transpose_forward, cfg };
  return "sha256:" + createHash("sha256").update(JSON.stringify(doc)).digest("hex");
}

async function stamp(file: string): Promise<FileStamp> {
  const s = await fs.stat(file);
  return { size: s.size, mtimeMs: Math.round(s.mtimeMs) };
}

async function inputStamps(img: IndependentImage): Promise<Record<string, FileStamp>> {
  const r: Record<string, FileStamp> = {};
  try {
    r.image = await stamp(img.image_path);
    if (img.associated_masks.anonymization_mask !== null) r.anon = await stamp(img.associated_masks.anonymization_mask);
    if (img.associated_masks.anatomy_mask !== null) r.anat = await stamp(img.associated_masks.anatomy_mask);
  } catch {
    return {}; // unreadable input: never matches, the image is (re)processed and reports the real error
  }
  return r;
}

/** True when the properties marker exists and every recorded array, the plan and the inputs still match. */
export async function isFinished(
  propsFile: string,
  expect: { planHash: string; inputs: Record<string, FileStamp> },
): Promise<boolean> {
  let doc: Partial<Omit<ImageProperties, "format">> & { format?: string };
  try {
    doc = JSON.parse(await fs.readFile(propsFile, "utf8")) as typeof doc;
  } catch {
    return false;
  }
  if (doc.format !== PROPERTIES_FORMAT || doc.plan_hash !== expect.planHash) return false;
  if (JSON.stringify(doc.inputs) !== JSON.stringify(expect.inputs)) return false;
  if (doc.arrays === undefined) return false;
  const dir = path.dirname(propsFile);
  for (const rec of [doc.arrays.image, doc.arrays.anon, doc.arrays.anat]) {
    if (rec === undefined) continue;
    if ((await checksumZarrVolume(path.join(dir, rec.path))) !== rec.checksum) return false;
  }
  return true;
}

/**
 * Remove temporary leftovers of a killed earlier attempt for this image: exactly the `.<file>.tmp-<pid>-<hex>` names
 * of its own outputs (never another image's, even one whose name starts the same).
 */
async function removeLeftovers(outputs: ImageOutputs): Promise<void> {
  const byDir = new Map<string, string[]>();
  for (const p of [outputs.image, outputs.anon, outputs.anat, outputs.properties]) {
    const d = path.dirname(p);
    byDir.set(d, [...(byDir.get(d) ?? []), path.basename(p)]);
  }
  for (const [dir, names] of byDir) await removeStaleTemps(dir, names);
}

export interface ImageTask {
  readonly image: IndependentImage;
  readonly plan: Plan;
  readonly config: string;
  readonly dataDir: string;
  /** Redo even when finished. */
  readonly force?: boolean;
}

export interface ImageResult {
  readonly uniqueId: string;
  readonly status: "done" | "skipped";
  readonly shape?: number[];
}

export async function preprocessImage(task: ImageTask): Promise<ImageResult> {
  const { image: img, plan } = task;
  const cfg = plan.configurations[task.config];
  if (cfg === undefined) throw new Error(`plan has no configuration ${task.config}`);
  const out = imageOutputs(task.dataDir, img);
  const hash = planHash(plan, cfg);
  const inputs = await inputStamps(img);
  if (task.force !== true && (await isFinished(out.properties, { planHash: hash, inputs })))
    return { uniqueId: uniqueId(img), status: "skipped" };

  const root = task.dataDir;
  await fs.rm(assertInsideReal(root, out.properties), { force: true });
  await removeLeftovers(out);
  const loaded = await loadImage(img);
  let res: ReturnType<typeof preprocessCase>;
  try {
    res = preprocessCase(loaded.input, loaded.masks, plan, cfg);
  } catch (err) {
    // the core is pure and knows no file names: name the image
    if (err instanceof DataError && err.file === undefined)
      throw new DataError(err.message, { file: img.image_path, field: err.field, cause: err });
    throw err;
  }
  const shape = [res.channels, ...res.shape];
  const dir = path.dirname(out.properties);
  const rel = (p: string): string => path.relative(dir, p);
  const arrays: ImageProperties["arrays"] = {
    image: { path: rel(out.image), checksum: (await writeZarrVolume(out.image, res.data, shape, { root })).checksum },
  };
  for (const kind of ["anon", "anat"] as const) {
    const m = res[kind];
    if (m === undefined) {
      // a mask this image had in an earlier run (its own output name: collection names are checked to be unique)
      await fs.rm(assertInsideReal(root, out[kind]), { recursive: true, force: true });
      continue;
    }
    arrays[kind] = { path: rel(out[kind]), checksum: (await writeZarrVolume(out[kind], m, shape, { root })).checksum };
  }
  const sp = loaded.input.spacing;
  const props: ImageProperties = {
    format: PROPERTIES_FORMAT,
    preprocessor_version: PREPROCESSOR_VERSION,
    unique_id: uniqueId(img),
    plan_hash: hash,
    inputs,
    shape,
    ...res.properties,
    sitk_stuff: sitkStuff(loaded.affine, [sp[2], sp[1], sp[0]]),
    affine: [...loaded.affine],
    datatype: loaded.datatype,
    arrays,
  };
  await writeJsonAtomic(out.properties, props, 2, { root });
  return { uniqueId: uniqueId(img), status: "done", shape };
}
