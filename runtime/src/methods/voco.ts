/**
 * VoCo, volume contrast (nnssl `VoCoTrainer`, `src/nnssl/training/nnsslTrainer/volume_contrastive/vocoTrainer.py`).
 *
 * The loaded patch (upstream 256×256×64) is cut into a `baseCrops` grid (4×4×1) of non-overlapping base crops of
 * size patch / grid (64³), ordered x-major (index (i·gy + j)·gz + k); per image `targetCrops` (4) target crops of
 * the same size at uniformly random offsets inside the patch, drawn image by image. The ground truth of each (target,
 * base) pair is their overlap volume / crop volume → [B, T, N]. In training every crop is augmented independently
 * (the `CropAugment` hook; validation: none). All crops (B·N base, then B·T target) go through the network in one
 * pass; the loss is L_pred + L_reg:
 *
 * - s_tb = relu(cos(target_t, stopgrad(base_b))), d = |gt − s|,
 *   pos = Σ(−log(1 − d + 1e-6)·gt) / Σgt, neg = Σ(s²·[gt = 0]) / Σ([gt = 0] + 1e-6), L_pred = pos + neg
 *   (sums over batch, targets and bases; no gradient reaches the bases through L_pred);
 * - c_ij = relu(cos(base_i, base_j)), L_reg = mean over the batch of 2/(N(N−1))·Σ_{i<j} c_ij (with gradient).
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import type { ArchitectureFamily, Network, Vec3 } from "../models/architecture.js";
import { Rng } from "../data/rng.js";
import {
  baseOffsets,
  defaultCropAugment,
  overlapTruth,
  vocoCropSize,
  vocoCrops,
  type CropAugment,
  type VoCoCrops,
} from "../data/contrastive-crops.js";
import { l2Rows, requireEmbeddingNetwork, stopGradient, vec3, vocoArchitectureFor } from "./crops.js";
export { baseOffsets, overlapTruth, vocoCropSize, vocoCrops, type VoCoCrops };
import type {
  MethodBatch,
  MethodContext,
  MethodDataNeeds,
  MethodEntry,
  MethodPreview,
  PretrainMethod,
} from "./method.js";

const PosInt = z.number().int().positive();

export const VoCoOptionsSchema = z
  .object({
    /** Base crop grid over the patch (x, y, z). */
    baseCrops: z.tuple([PosInt, PosInt, PosInt]).default([4, 4, 1]),
    /** Target crops per image. */
    targetCrops: PosInt.default(4),
    /** Per-crop intensity/mirror/rot90 augmentation of training crops. */
    augment: z.boolean().default(true),
  })
  .strict();
export type VoCoOptions = z.infer<typeof VoCoOptionsSchema>;

/**
 * L_pred of nnssl's `VoCoLoss` (`src/nnssl/training/loss/voco_loss.py`) on base [B,N,D], target [B,T,D], truth
 * [B,T,N]; the bases get no gradient.
 */
export function vocoPredLoss(base: tf.Tensor3D, target: tf.Tensor3D, truth: tf.Tensor3D): tf.Scalar {
  return tf.tidy(() => {
    const s = tf.relu(tf.matMul(l2Rows(target), l2Rows(stopGradient(base)), false, true)); // [B,T,N]
    const d = tf.abs(tf.sub(truth, s));
    const pos = tf.div(tf.sum(tf.mul(tf.neg(tf.log(tf.add(tf.sub(1, d), 1e-6))), truth)), tf.sum(truth));
    const isNeg = tf.cast(tf.equal(truth, 0), "float32");
    const neg = tf.div(tf.sum(tf.mul(tf.square(s), isNeg)), tf.sum(tf.add(isNeg, 1e-6)));
    return tf.add<tf.Scalar>(pos, neg);
  });
}

/** L_reg of `VoCoLoss` on base [B,N,D] (with gradient). */
export function vocoRegLoss(base: tf.Tensor3D): tf.Scalar {
  const n = base.shape[1];
  return tf.tidy(() => {
    const bn = l2Rows(base);
    const c = tf.relu(tf.matMul(bn, bn, false, true)); // [B,N,N]
    const upper = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) upper[i * n + j] = 1;
    const perImage = tf.sum(tf.mul(c, tf.tensor2d(upper, [n, n])), [1, 2]);
    return tf.mean<tf.Scalar>(tf.mul(perImage, 2 / (n * (n - 1))));
  });
}

export function vocoLoss(base: tf.Tensor3D, target: tf.Tensor3D, truth: tf.Tensor3D): tf.Scalar {
  return tf.tidy(() => tf.add<tf.Scalar>(vocoPredLoss(base, target, truth), vocoRegLoss(base)));
}

export class VoCo implements PretrainMethod {
  readonly key = "voco";
  readonly needsAnon = false;
  /**
   * The crops and their augmentation are cut in the loader workers (batch transform `voco-crops`, ADR 0040); with a
   * custom `CropAugment` (tests: it cannot cross to the workers) the method cuts them itself from plain patches.
   */
  readonly data: MethodDataNeeds;
  private readonly augment: CropAugment;
  constructor(
    readonly o: VoCoOptions,
    augment?: CropAugment,
  ) {
    this.augment = augment ?? defaultCropAugment();
    this.data =
      augment !== undefined
        ? {}
        : {
            transform: {
              key: "voco-crops",
              options: { baseCrops: o.baseCrops, targetCrops: o.targetCrops, augment: o.augment },
              validation: true,
              validationOptions: { augment: false },
            },
          };
  }

  outChannels(inChannels: number): number {
    return inChannels;
  }

  /** The crops of a batch: [B·N base crops, B·T target crops] and the overlap truth [B, T, N]. */
  crops(
    batch: MethodBatch,
    ctx: MethodContext,
  ): { x: tf.Tensor5D; B: number; nBase: number; nTarget: number; truth: tf.Tensor3D } {
    if (batch.aux !== undefined) {
      // the loader delivered [B·N base crops, B·T target crops] and the truth [B, T, N]
      const [B, nTarget, nBase] = batch.aux.shape as [number, number, number];
      return { x: batch.x, B, nBase, nTarget, truth: batch.aux as tf.Tensor3D };
    }
    // plain patches (direct callers): cut and augment here, seeded by the step
    const shape = batch.x.shape;
    const B = shape[0];
    const grid = vec3(this.o.baseCrops, "trainer.methodOptions.baseCrops");
    const c = vocoCrops(
      new Rng(ctx.seed),
      batch.x.dataSync() as Float32Array,
      shape,
      grid,
      this.o.targetCrops,
      ctx.training && this.o.augment ? this.augment : undefined,
    );
    const m = B * (c.nBase + c.nTarget);
    const x = tf.tensor5d(c.crops, [m, c.cropSize[0], c.cropSize[1], c.cropSize[2], shape[4]]);
    return { x, B, nBase: c.nBase, nTarget: c.nTarget, truth: tf.tensor3d(c.truth, [B, c.nTarget, c.nBase]) };
  }

  /** Base [B, N, D] and target [B, T, D] embeddings of the crops. */
  embeddings(
    net: Network,
    c: { x: tf.Tensor5D; B: number; nBase: number; nTarget: number },
    ctx: MethodContext,
  ): { base: tf.Tensor3D; target: tf.Tensor3D } {
    const emb = requireEmbeddingNetwork(net, "voco");
    const e = emb.embed(c.x, { training: ctx.training, seed: ctx.seed });
    const base = tf.reshape<tf.Rank.R3>(tf.slice(e, [0, 0], [c.B * c.nBase, -1]), [c.B, c.nBase, emb.embedDim]);
    const target = tf.reshape<tf.Rank.R3>(tf.slice(e, [c.B * c.nBase, 0], [c.B * c.nTarget, -1]), [
      c.B,
      c.nTarget,
      emb.embedDim,
    ]);
    return { base, target };
  }

  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const c = this.crops(batch, ctx);
    const { base, target } = this.embeddings(net, c, ctx);
    return vocoLoss(base, target, c.truth);
  }

  /** Each target crop of the first sample beside the base crop it overlaps most, with true overlap and predicted similarity. */
  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const c = this.crops(batch, ctx);
    const { base, target } = this.embeddings(net, c, ctx);
    const sim = tf.relu(tf.matMul(l2Rows(target), l2Rows(base), false, true)).arraySync() as number[][][]; // [B,T,N]
    const truth = c.truth.arraySync();
    const rows: { t: number; k: number }[] = [];
    for (let t = 0; t < c.nTarget; t++) {
      const tr = truth[0]![t]!;
      rows.push({ t, k: tr.indexOf(Math.max(...tr)) });
    }
    const gather = (idx: number[]) => tf.gather<tf.Tensor5D>(c.x, tf.tensor1d(idx, "int32"));
    return {
      caption: `VoCo: ${c.nBase} base crops on a grid and ${c.nTarget} random target crops per patch; the network predicts each target's overlap with every base crop from the cosine similarity of their embeddings.`,
      columns: [
        { label: "target crop", volume: gather(rows.map((r) => c.B * c.nBase + r.t)), kind: "image" },
        { label: "base crop it overlaps most", volume: gather(rows.map((r) => r.k)), kind: "image" },
      ],
      rowLabels: rows.map(
        (r) =>
          `target ${r.t} ↔ base ${r.k}: overlap ${truth[0]![r.t]![r.k]!.toFixed(2)}, predicted ${sim[0]![r.t]![r.k]!.toFixed(2)}`,
      ),
    };
  }
}

export const voco: MethodEntry<typeof VoCoOptionsSchema> = {
  key: "voco",
  description:
    "VoCo: 4×4×1 base crops + 4 random target crops per patch; predict base/target overlap from cosine similarity, keep bases apart",
  families: ["cnn", "vit"],
  optionsSchema: VoCoOptionsSchema,
  create(options: VoCoOptions, _family: ArchitectureFamily): PretrainMethod {
    return new VoCo(options);
  },
  architectureFor: vocoArchitectureFor,
  networkPatchSize(patch: Vec3, options: VoCoOptions): Vec3 {
    return vocoCropSize(patch, vec3(options.baseCrops, "trainer.methodOptions.baseCrops"));
  },
};
