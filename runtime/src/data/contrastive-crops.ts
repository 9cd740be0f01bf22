/**
 * Sub-crops of a loaded patch for the crop-based contrastive methods (nnssl's VoCo and SimCLR trainers), pure functions
 * over channels-last arrays: they run in the loader workers as the batch transforms `voco-crops` / `simclr-crops`
 * (data/batch-transforms.ts, ADR 0040), and the methods re-export them.
 *
 * The per-crop training augmentation (nnssl's `VocoTransform` / `SimCLRTransform` list):
 * Gaussian noise p 0.1, blur p 0.2, brightness p 0.15, contrast p 0.15, low-resolution simulation p 0.1, inverted
 * gamma p 0.1, gamma p 0.3, mirror on each axis p 0.5, rot90 in the (0,1) plane p 0.3 with k ∈ {1,2,3} —
 * `augmentIntensity(…, VOCO_RECIPE)` of `data/intensity.ts` (its deviations, e.g. the linear low-resolution upsample,
 * are documented there). A crop whose X and Y sizes differ is not rotated (rot90 would change its shape; upstream's
 * crops are always square in that plane).
 */
import { ConfigError } from "../errors.js";
import type { Vec3 } from "../models/architecture.js";
import { augmentIntensity, VOCO_RECIPE, type IntensityRecipe } from "./intensity.js";
import type { Rng } from "./rng.js";

export function vec3(v: readonly number[], field: string): Vec3 {
  if (v.length !== 3) throw new ConfigError(`needs 3 entries, got ${JSON.stringify(v)}`, { field });
  return [v[0]!, v[1]!, v[2]!];
}

/** Copy the box [off, off + size) of sample `b` of a channels-last batch [B,X,Y,Z,C] into `out` at `outOffset`. */
export function copyCrop(
  src: Float32Array,
  dims: Vec3,
  channels: number,
  b: number,
  off: Vec3,
  size: Vec3,
  out: Float32Array,
  outOffset: number,
): void {
  const [X, Y, Z] = dims;
  const [sx, sy, sz] = size;
  if (off.some((o, i) => o < 0 || o + size[i]! > dims[i]!))
    throw new RangeError(`crop at [${off.join(",")}] of size [${size.join(",")}] leaves the patch [${dims.join(",")}]`);
  const row = sz * channels;
  let o = outOffset;
  for (let x = 0; x < sx; x++) {
    for (let y = 0; y < sy; y++) {
      const start = (((b * X + off[0] + x) * Y + off[1] + y) * Z + off[2]) * channels;
      out.set(src.subarray(start, start + row), o);
      o += row;
    }
  }
}

/** Voxels shared by two boxes of the same size. */
export function boxOverlap(a: Vec3, b: Vec3, size: Vec3): number {
  let v = 1;
  for (let i = 0; i < 3; i++) v *= Math.max(0, Math.min(a[i]! + size[i]!, b[i]! + size[i]!) - Math.max(a[i]!, b[i]!));
  return v;
}

/**
 * Per-crop training augmentation (`VocoTransform`'s list: noise, blur, brightness, contrast, low resolution, gammas,
 * three mirrors, rot90 in the (0,1) plane): one crop [X,Y,Z,C] in, the augmented crop of the same size out.
 */
export type CropAugment = (rng: Rng, crop: Float32Array, dims: Vec3, channels: number) => Float32Array;

const NO_ROT90: IntensityRecipe = { ...VOCO_RECIPE, rot90: { ...VOCO_RECIPE.rot90, p: 0 } };

export function defaultCropAugment(): CropAugment {
  return (rng, crop, dims, channels) =>
    augmentIntensity(rng, crop, dims, channels, dims[0] === dims[1] ? VOCO_RECIPE : NO_ROT90);
}

/** Crop size = patch / grid (each axis must divide). */
export function vocoCropSize(patch: Vec3, grid: Vec3): Vec3 {
  if (grid[0] * grid[1] * grid[2] < 2)
    throw new ConfigError(`needs at least 2 base crops (L_reg compares pairs), got ${grid.join("x")}`, {
      field: "trainer.methodOptions.baseCrops",
    });
  patch.forEach((p, i) => {
    if (p % grid[i]! !== 0)
      throw new ConfigError(`patch size ${patch.join("x")} is not divisible by the base crop grid ${grid.join("x")}`, {
        field: "trainer.patchSize",
      });
  });
  return [patch[0] / grid[0], patch[1] / grid[1], patch[2] / grid[2]];
}

/** Lower corners of the base crops, x-major (upstream's i, j, k loops). */
export function baseOffsets(grid: Vec3, crop: Vec3): Vec3[] {
  const out: Vec3[] = [];
  for (let i = 0; i < grid[0]; i++)
    for (let j = 0; j < grid[1]; j++)
      for (let k = 0; k < grid[2]; k++) out.push([i * crop[0], j * crop[1], k * crop[2]]);
  return out;
}

/** Overlap ground truth of targets × bases: overlap volume / crop volume, [T·N] row-major. */
export function overlapTruth(targets: readonly Vec3[], bases: readonly Vec3[], crop: Vec3): Float32Array {
  const vol = crop[0] * crop[1] * crop[2];
  const out = new Float32Array(targets.length * bases.length);
  targets.forEach((t, ti) => {
    bases.forEach((b, bi) => {
      out[ti * bases.length + bi] = boxOverlap(t, b, crop) / vol;
    });
  });
  return out;
}

export interface VoCoCrops {
  /** [B·N + B·T, cx, cy, cz, C]: base crops (image-major), then target crops (image-major). */
  readonly crops: Float32Array;
  readonly cropSize: Vec3;
  readonly nBase: number;
  readonly nTarget: number;
  /** [B, T, N] */
  readonly truth: Float32Array;
  /** Target offsets per image. */
  readonly targets: Vec3[][];
}

/** Cut the crops of a batch [B,X,Y,Z,C] (channels-last), draw target positions from `rng`, augment when given. */
export function vocoCrops(
  rng: Rng,
  data: Float32Array,
  shape: readonly number[],
  grid: Vec3,
  nTarget: number,
  augment?: CropAugment,
): VoCoCrops {
  const [B, X, Y, Z, C] = shape as [number, number, number, number, number];
  const dims: Vec3 = [X, Y, Z];
  const crop = vocoCropSize(dims, grid);
  const bases = baseOffsets(grid, crop);
  const nBase = bases.length;
  const cropLen = crop[0] * crop[1] * crop[2] * C;
  const crops = new Float32Array((B * nBase + B * nTarget) * cropLen);
  for (let b = 0; b < B; b++) {
    bases.forEach((o, n) => {
      copyCrop(data, dims, C, b, o, crop, crops, (b * nBase + n) * cropLen);
    });
  }
  const targets: Vec3[][] = [];
  const truth = new Float32Array(B * nTarget * nBase);
  for (let b = 0; b < B; b++) {
    const ts: Vec3[] = [];
    for (let t = 0; t < nTarget; t++) {
      const o: Vec3 = [rng.int(0, X - crop[0]), rng.int(0, Y - crop[1]), rng.int(0, Z - crop[2])];
      ts.push(o);
      copyCrop(data, dims, C, b, o, crop, crops, (B * nBase + b * nTarget + t) * cropLen);
    }
    targets.push(ts);
    truth.set(overlapTruth(ts, bases, crop), b * nTarget * nBase);
  }
  if (augment !== undefined) {
    for (let i = 0; i < B * (nBase + nTarget); i++) {
      const view = crops.subarray(i * cropLen, (i + 1) * cropLen);
      const aug = augment(rng, view, crop, C);
      if (aug !== view) view.set(aug);
    }
  }
  return { crops, cropSize: crop, nBase, nTarget, truth, targets };
}

export function simclrCropSize(patch: Vec3, o: { readonly cropSize?: readonly number[] | undefined }): Vec3 {
  const side = Math.min(...patch);
  const crop =
    o.cropSize === undefined ? ([side, side, side] as Vec3) : vec3(o.cropSize, "trainer.methodOptions.cropSize");
  if (crop.some((c, i) => c > patch[i]!))
    throw new ConfigError(`crop size ${crop.join("x")} does not fit the patch ${patch.join("x")}`, {
      field: "trainer.methodOptions.cropSize",
    });
  return crop;
}

export interface SimClrCrops {
  /** [2N, cx, cy, cz, C]: N references (image-major), then their N partners in the same order. */
  readonly crops: Float32Array;
  readonly cropSize: Vec3;
  readonly n: number;
  readonly references: Vec3[];
  readonly partners: Vec3[];
}

export function simclrCrops(
  rng: Rng,
  data: Float32Array,
  shape: readonly number[],
  o: { readonly cropSize?: readonly number[] | undefined; readonly cropsPerImage: number; readonly minOverlap: number },
  augment?: CropAugment,
): SimClrCrops {
  const [B, X, Y, Z, C] = shape as [number, number, number, number, number];
  const dims: Vec3 = [X, Y, Z];
  const crop = simclrCropSize(dims, o);
  const n = B * o.cropsPerImage;
  const cropLen = crop[0] * crop[1] * crop[2] * C;
  const crops = new Float32Array(2 * n * cropLen);
  const references: Vec3[] = [];
  for (let i = 0; i < n; i++) {
    const r: Vec3 = [rng.int(0, X - crop[0]), rng.int(0, Y - crop[1]), rng.int(0, Z - crop[2])];
    references.push(r);
    copyCrop(data, dims, C, Math.floor(i / o.cropsPerImage), r, crop, crops, i * cropLen);
  }
  const m = crop.map((c) => Math.trunc(c * o.minOverlap));
  const partners: Vec3[] = references.map((r, i) => {
    const p = [0, 1, 2].map((a) =>
      rng.int(Math.max(0, r[a]! - m[a]!), Math.min(dims[a]! - crop[a]!, r[a]! + m[a]!)),
    ) as unknown as Vec3;
    copyCrop(data, dims, C, Math.floor(i / o.cropsPerImage), p, crop, crops, (n + i) * cropLen);
    return p;
  });
  if (augment !== undefined) {
    for (let i = 0; i < 2 * n; i++) {
      const view = crops.subarray(i * cropLen, (i + 1) * cropLen);
      const aug = augment(rng, view, crop, C);
      if (aug !== view) view.set(aug);
    }
  }
  return { crops, cropSize: crop, n, references, partners };
}
