/**
 * The per-crop training augmentation of VoCo and SimCLR (spec 6.7, nnssl's VocoTransform / SimCLRTransform list):
 * Gaussian noise p 0.1, blur p 0.2, brightness p 0.15, contrast p 0.15, low-resolution simulation p 0.1, inverted
 * gamma p 0.1, gamma p 0.3, mirror on each axis p 0.5, rot90 in the (0,1) plane p 0.3 with k ∈ {1,2,3} —
 * `augmentIntensity(…, VOCO_RECIPE)` of `data/intensity.ts` (its deviations, e.g. the linear low-resolution upsample,
 * are documented there). A crop whose X and Y sizes differ is not rotated (rot90 would change its shape; upstream's
 * crops are always square in that plane).
 */
import { augmentIntensity, VOCO_RECIPE, type IntensityRecipe } from "../data/intensity.js";
import type { CropAugment } from "./crops.js";

const NO_ROT90: IntensityRecipe = { ...VOCO_RECIPE, rot90: { ...VOCO_RECIPE.rot90, p: 0 } };

export function defaultCropAugment(): CropAugment {
  return (rng, crop, dims, channels) => augmentIntensity(rng, crop, dims, channels, dims[0] === dims[1] ? VOCO_RECIPE : NO_ROT90);
}
