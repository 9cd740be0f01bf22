/**
 * Building one batch: a pure function of (images, options, batch seed), so the same batch index gives the same
 * batch whichever worker builds it and whenever.
 */
import { ConfigError, DataError } from "../errors.js";
import { augmentSample, type AugmentOptions } from "./augment.js";
import { applyBatchTransform, type AuxArray, type BatchTransformSpec } from "./batch-transforms.js";
import { augmentIntensity, type IntensityRecipe } from "./intensity.js";
import { centreCorner, sampleCorner, type Shape3 } from "./patch.js";
import { deriveSeed, Rng } from "./rng.js";
import type { TrainingImage, VolumeReader } from "./source.js";

export interface BatchOptions {
  readonly batchSize: number;
  /** Network patch F (X, Y, Z). */
  readonly patchSize: Shape3;
  /** Loader patch P ≥ F (room for rotation/scaling); equal to F without spatial augmentation. */
  readonly loaderPatchSize: Shape3;
  readonly augment: AugmentOptions;
  /** Return the anonymisation mask (zeros where an image has none). */
  readonly withAnon: boolean;
  /** "center": the deterministic centre crop of nnssl's `nnsslCenterCropDataLoader3D`; default "random". */
  readonly crop?: "random" | "center";
  /**
   * Intensity augmentation per patch after the spatial augmentation (data/intensity.ts), seeded by
   * `deriveSeed(batch seed, "intensity", b)` so it does not shift the crop draws.
   */
  readonly intensity?: IntensityRecipe;
  /**
   * A method's batch transform (data/batch-transforms.ts, ADR 0040) applied last, seeded by
   * `deriveSeed(batch seed, "transform")`. The loader passes it only to the streams it applies to.
   */
  readonly transform?: BatchTransformSpec;
}

export interface Batch {
  readonly index: number;
  /** NDHWC [B, X, Y, Z, C] */
  readonly data: Float32Array;
  readonly shape: [number, number, number, number, number];
  /** NDHWC [B, X, Y, Z, 1]; 1 anonymised, 0 kept, −1 outside the image */
  readonly anon: Float32Array | undefined;
  /** NDHWC like `data`: the regression target a batch transform produced (Models Genesis: the clean crop). */
  readonly target?: Float32Array;
  /** A method-specific array the batch transform added (VoCo: overlap truth). */
  readonly aux?: AuxArray;
  /** uniqueId of every loaded patch (its length = patches loaded, whatever shape a transform gives `data`). */
  readonly keys: string[];
}

export type OpenReader = (dir: string) => Promise<VolumeReader>;

export async function buildBatch(
  images: readonly TrainingImage[],
  open: OpenReader,
  o: BatchOptions,
  index: number,
  seed: number,
): Promise<Batch> {
  if (images.length === 0) throw new DataError("no images to sample from (check the split and the modality filter)");
  if (o.withAnon && o.intensity !== undefined && (o.intensity.mirror.pPerAxis > 0 || o.intensity.rot90.p > 0)) {
    throw new ConfigError(
      "intensity recipes with mirror/rot90 cannot be combined with the anonymisation mask (the mask would not follow)",
      { field: "intensity" },
    );
  }
  const rng = new Rng(seed);
  const F = o.patchSize;
  const P = o.loaderPatchSize;
  const n = F[0] * F[1] * F[2];
  let channels = -1;
  const parts: Float32Array[] = [];
  const masks: (Float32Array | undefined)[] = [];
  const keys: string[] = [];
  for (let b = 0; b < o.batchSize; b++) {
    const im = images[rng.int(0, images.length - 1)]!;
    keys.push(im.uniqueId);
    const vol = await open(im.image);
    if (vol.shape.length !== 4)
      throw new DataError(`expected a 4-D (C,X,Y,Z) array, got shape [${vol.shape.join(",")}]`, {
        file: im.image,
        field: "shape",
      });
    const C = vol.shape[0]!;
    if (channels === -1) channels = C;
    else if (channels !== C)
      throw new DataError(`channel count ${C} differs from ${channels} of other images`, {
        file: im.image,
        field: "shape[0]",
      });
    const shape = [vol.shape[1]!, vol.shape[2]!, vol.shape[3]!] as const;
    const corner = o.crop === "center" ? centreCorner(shape, P, F) : sampleCorner(rng, shape, P, F);
    const data = await vol.readRegion([0, ...corner], [C, ...P]);
    let mask: Float32Array | undefined;
    if (o.withAnon) {
      if (im.anonMask !== undefined) {
        const mv = await open(im.anonMask);
        mask = await mv.readRegion([0, ...corner], [1, ...P]);
      } else {
        mask = new Float32Array(P[0] * P[1] * P[2]);
      }
    }
    const { sample } = augmentSample(rng, { data, mask }, C, P, F, o.augment);
    parts.push(sample.data);
    masks.push(sample.mask);
  }
  const C = channels;
  const data = new Float32Array(o.batchSize * n * C);
  for (let b = 0; b < o.batchSize; b++) {
    const src = parts[b]!;
    let cl: Float32Array;
    if (C === 1) cl = src;
    else {
      cl = new Float32Array(n * C);
      for (let v = 0; v < n; v++) for (let c = 0; c < C; c++) cl[v * C + c] = src[c * n + v]!;
    }
    if (o.intensity !== undefined)
      cl = augmentIntensity(new Rng(deriveSeed(seed, "intensity", b)), cl, F, C, o.intensity);
    data.set(cl, b * n * C);
  }
  let anon: Float32Array | undefined;
  if (o.withAnon) {
    anon = new Float32Array(o.batchSize * n);
    masks.forEach((m, b) => {
      if (m !== undefined) anon!.set(m, b * n);
    });
  }
  const shape: [number, number, number, number, number] = [o.batchSize, F[0], F[1], F[2], C];
  if (o.transform === undefined) return { index, data, shape, anon, keys };
  const t = applyBatchTransform(o.transform, { data, shape, anon }, deriveSeed(seed, "transform"));
  return {
    index,
    data: t.data,
    shape: t.shape,
    anon: t.anon,
    ...(t.target === undefined ? {} : { target: t.target }),
    ...(t.aux === undefined ? {} : { aux: t.aux }),
    keys,
  };
}
