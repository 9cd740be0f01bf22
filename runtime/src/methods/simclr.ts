/**
 * SimCLR (nnssl `SimCLRTrainer`, `src/nnssl/training/nnsslTrainer/simCLR/simCLRTrainer.py`).
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
import type { ArchitectureFamily, Network, Vec3 } from "../models/architecture.js";
import { Rng } from "../data/rng.js";
import {
  defaultCropAugment,
  simclrCropSize,
  simclrCrops,
  type CropAugment,
  type SimClrCrops,
} from "../data/contrastive-crops.js";
import { l2Rows, requireEmbeddingNetwork, vocoArchitectureFor } from "./crops.js";
export { simclrCropSize, simclrCrops, type SimClrCrops };
import type {
  MethodBatch,
  MethodContext,
  MethodDataNeeds,
  MethodEntry,
  MethodPreview,
  PretrainMethod,
} from "./method.js";
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

export class SimClr implements PretrainMethod {
  readonly key = "simclr";
  readonly needsAnon = false;
  /** Crops cut and augmented in the loader workers (batch transform `simclr-crops`); a custom `CropAugment`: in the method. */
  readonly data: MethodDataNeeds;
  private readonly augment: CropAugment;
  constructor(
    readonly o: SimClrOptions,
    augment?: CropAugment,
  ) {
    this.augment = augment ?? defaultCropAugment();
    const options = {
      ...(o.cropSize === undefined ? {} : { cropSize: o.cropSize }),
      cropsPerImage: o.cropsPerImage,
      minOverlap: o.minOverlap,
      augment: o.augment,
    };
    this.data =
      augment !== undefined
        ? {}
        : { transform: { key: "simclr-crops", options, validation: true, validationOptions: { augment: false } } };
  }

  outChannels(inChannels: number): number {
    return inChannels;
  }

  /** The 2n crops (n references, then their n partners) and their embeddings [2n, D]. */
  forward(net: Network, batch: MethodBatch, ctx: MethodContext): { x: tf.Tensor5D; e: tf.Tensor2D } {
    const emb = requireEmbeddingNetwork(net, "simclr");
    let x = batch.x;
    if (batch.aux === undefined) {
      // plain patches (direct callers): cut and augment here, seeded by the step
      const shape = batch.x.shape;
      const c = simclrCrops(
        new Rng(ctx.seed),
        batch.x.dataSync() as Float32Array,
        shape,
        this.o,
        ctx.training && this.o.augment ? this.augment : undefined,
      );
      x = tf.tensor5d(c.crops, [2 * c.n, c.cropSize[0], c.cropSize[1], c.cropSize[2], shape[4]]);
    }
    return { x, e: emb.embed(x, { training: ctx.training, seed: ctx.seed }) };
  }

  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const { x, e } = this.forward(net, batch, ctx);
    const n = x.shape[0] / 2;
    return ntXent(tf.slice(e, [0, 0], [n, -1]), tf.slice(e, [n, 0], [n, -1]), this.o.temperature);
  }

  /** Each reference crop beside its partner, with their cosine similarity and the mean similarity to the other crops. */
  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const { x, e } = this.forward(net, batch, ctx);
    const n = x.shape[0] / 2;
    const unit = l2Rows(e);
    const sim = tf.matMul(unit, unit, false, true).arraySync() as number[][];
    const others = (i: number) => {
      const v = sim[i]!.filter((_, j) => j !== i && j !== i + n);
      return v.length === 0 ? NaN : v.reduce((a, b) => a + b, 0) / v.length;
    };
    return {
      caption:
        "SimCLR: pairs of overlapping crops of one patch; NT-Xent pulls each pair's embeddings together and pushes the other crops of the batch away.",
      columns: [
        { label: "reference crop", volume: tf.slice(x, [0, 0, 0, 0, 0], [n, -1, -1, -1, -1]), kind: "image" },
        { label: "partner crop", volume: tf.slice(x, [n, 0, 0, 0, 0], [n, -1, -1, -1, -1]), kind: "image" },
      ],
      rowLabels: Array.from(
        { length: n },
        (_, i) =>
          `pair ${i}: cosine similarity ${sim[i]![i + n]!.toFixed(2)}, to the other crops ${others(i).toFixed(2)} on average`,
      ),
    };
  }
}

export const simclr: MethodEntry<typeof SimClrOptionsSchema> = {
  key: "simclr",
  description:
    "SimCLR: 2 reference crops per patch, each with an overlapping partner crop; NT-Xent (τ 0.5) over the 2N embeddings",
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
