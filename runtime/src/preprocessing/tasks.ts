/** The per-image jobs the worker pool runs (in a worker thread, or in-process with `-np 1`). */
import { uniqueId, type IndependentImage } from "../config/collection.js";
import { arrayView } from "../io/volume.js";
import { readVolume } from "./image-io.js";
import { preprocessImage, type ImageResult, type ImageTask } from "./run-image.js";

/** What a stage does with an image that fails: stop the run (default) or skip it and list it. */
export type OnError = "skip" | "fail";

/** An image a stage could not process (`failed_imgs.json`, the fingerprint's `failed`). */
export interface FailedImage {
  readonly unique_id: string;
  readonly image_path: string;
  readonly reason: string;
}

export interface FingerprintEntry {
  readonly unique_id: string;
  readonly image_path: string;
  /** Array-axis order (z, y, x) like upstream's SimpleITK reader. */
  readonly shape: [number, number, number];
  readonly spacing: [number, number, number];
  readonly channels: number;
  readonly datatype: string;
  readonly intensity: {
    min: number;
    max: number;
    mean: number;
    std: number;
    nonzero_fraction: number;
    finite: boolean;
  };
}

export async function fingerprintImage(img: IndependentImage): Promise<FingerprintEntry> {
  const v = await readVolume(img.image_path);
  const av = arrayView(v);
  let min = Infinity;
  let max = -Infinity;
  let s = 0;
  let ss = 0;
  let nz = 0;
  let finite = true;
  const d = v.data;
  for (let i = 0; i < d.length; i++) {
    const x = d[i]!;
    if (!Number.isFinite(x)) {
      finite = false;
      continue;
    }
    if (x < min) min = x;
    if (x > max) max = x;
    s += x;
    ss += x * x;
    if (x !== 0) nz++;
  }
  const n = d.length;
  const mean = s / n;
  return {
    unique_id: uniqueId(img),
    image_path: img.image_path,
    shape: [av.shape[0], av.shape[1], av.shape[2]],
    spacing: [av.spacing[0], av.spacing[1], av.spacing[2]],
    channels: v.channels,
    datatype: v.datatype,
    intensity: { min, max, mean, std: Math.sqrt(Math.max(0, ss / n - mean * mean)), nonzero_fraction: nz / n, finite },
  };
}

export interface TaskTypes {
  fingerprint: { input: IndependentImage; output: FingerprintEntry };
  preprocess: { input: ImageTask; output: ImageResult };
}
export type TaskKind = keyof TaskTypes;

export const handlers: { [K in TaskKind]: (input: TaskTypes[K]["input"]) => Promise<TaskTypes[K]["output"]> } = {
  fingerprint: fingerprintImage,
  preprocess: preprocessImage,
};
