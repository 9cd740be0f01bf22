/**
 * The per-crop training augmentation of VoCo and SimCLR (spec 6.7: Gaussian noise, blur, brightness, contrast,
 * low-resolution simulation, inverted and plain gamma, mirrors on each axis, rot90 in the (0,1) plane).
 *
 * PENDING: the augmentation itself (`runtime/src/data/intensity.ts`, `VOCO_RECIPE`) is being written separately; until
 * it is merged this returns undefined and training crops are NOT augmented (documented in docs/training.md).
 */
import type { CropAugment } from "./crops.js";

export function defaultCropAugment(): CropAugment | undefined {
  return undefined;
}
