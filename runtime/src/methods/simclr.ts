/**
 * SimCLR (spec 6.9, nnssl `SimCLRTrainer`).
 *
 * From the loaded patch (upstream 192×192×64) `cropsPerImage` (2) reference crops of `cropSize` (64³; default here:
 * a cube of the patch's smallest side, which is 64³ for the upstream patch) at uniformly random offsets, all images'
 * references first; then for each reference one overlapping partner whose offset per axis is
 * Uint[max(0, o − m), min(dim − crop, o + m)] with m = int(crop · minOverlap) (minOverlap 0.5: at least half of every
 * axis shared). In training every crop is augmented independently (the VoCo list, `CropAugment`). All 2N crops
 * (N = B · cropsPerImage; references, then partners) go through the VoCo network in one pass; the loss is NT-Xent
 * with τ = 0.5 over the 2N embeddings (`ntXent`): reference k of image b is paired with its own partner, every other
 * crop (including other crops of the same image) is a negative.
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import type { ArchitectureFamily, Network, Vec3 } from "../models/architecture.js";
import { Rng } from "../data/rng.js";
import { copyCrop, requireEmbeddingNetwork, vec3, vocoArchitectureFor, type CropAugment } from "./crops.js";
import { defaultCropAugment } from "./crop-augment.js";
import type { MethodBatch, MethodContext, MethodEntry, PretrainMethod } from "./method.js";
import { ntXent } from "./nt-xent.js";

const PosInt = z.number().int().positive();

export const SimClrOptionsSchema = z
  .object({
    /** Crop size; default a cube of the patch's smallest side (64³ for the upstream 192×192×64 patch). */
    cropSize: z.tuple([PosInt, PosInt, PosInt]).optional(),
    cropsPerImage: PosInt.default(2),
    /** Fraction of each axis a partner crop shares at least with its reference. */
    minOverlap: z.number().min(0).max(1).default(0.5),
    temperature: z.number().positive().default(0.5),
    /** Per-crop intensity/mirror/rot90 augmentation of training crops. */
    augment: z.boolean().default(true),
  })
  .strict();
export type SimClrOptions = z.infer<typeof SimClrOptionsSchema>;

export function simclrCropSize(patch: Vec3, o: Pick<SimClrOptions, "cropSize">): Vec3 {
  const side = Math.min(...patch);
  const crop = o.cropSize === undefined ? ([side, side, side] as Vec3) : vec3(o.cropSize, "trainer.methodOptions.cropSize");
  if (crop.some((c, i) => c > patch[i]!)) throw new ConfigError(`crop size ${crop.join("x")} does not fit the patch ${patch.join("x")}`, { field: "trainer.methodOptions.cropSize" });
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

export function simclrCrops(rng: Rng, data: Float32Array, shape: readonly number[], o: Pick<SimClrOptions, "cropSize" | "cropsPerImage" | "minOverlap">, augment?: CropAugment): SimClrCrops {
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
    const p = [0, 1, 2].map((a) => rng.int(Math.max(0, r[a]! - m[a]!), Math.min(dims[a]! - crop[a]!, r[a]! + m[a]!))) as unknown as Vec3;
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

export class SimClr implements PretrainMethod {
  readonly key = "simclr";
  readonly needsAnon = false;
  constructor(readonly o: SimClrOptions, private readonly augment: CropAugment | undefined = defaultCropAugment()) {}

  outChannels(inChannels: number): number {
    return inChannels;
  }

  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const emb = requireEmbeddingNetwork(net, "simclr");
    const shape = batch.x.shape;
    const c = simclrCrops(new Rng(ctx.seed), batch.x.dataSync() as Float32Array, shape, this.o, ctx.training && this.o.augment ? this.augment : undefined);
    const x = tf.tensor5d(c.crops, [2 * c.n, c.cropSize[0], c.cropSize[1], c.cropSize[2], shape[4]]);
    const e = emb.embed(x, { training: ctx.training, seed: ctx.seed });
    return ntXent(tf.slice(e, [0, 0], [c.n, -1]), tf.slice(e, [c.n, 0], [c.n, -1]), this.o.temperature);
  }
}

export const simclr: MethodEntry<typeof SimClrOptionsSchema> = {
  key: "simclr",
  description: "SimCLR: 2 reference crops per patch, each with an overlapping partner crop; NT-Xent (τ 0.5) over the 2N embeddings",
  families: ["cnn", "vit"],
  optionsSchema: SimClrOptionsSchema,
  create(options: SimClrOptions, _family: ArchitectureFamily): PretrainMethod {
    return new SimClr(options);
  },
  architectureFor: vocoArchitectureFor,
  networkPatchSize(patch: Vec3, options: SimClrOptions): Vec3 {
    return simclrCropSize(patch, options);
  },
};
