/**
 * VolumeFusion (nnssl `src/nnssl/training/nnsslTrainer/volume_fusion/`: `VolumeFusionTrainer` /
 * `VolumeFusionEvaTrainer`, after Mis-FM).
 *
 * Data (ADR 0040): the loaders draw `2·B` patches per step (`imagesPerSample: 2`), as nnssl's loader with its doubled
 * batch: nnssl's deterministic centre crops by default (`centerCrop`), training patches intensity-augmented one by
 * one in the loader workers with `VOLUME_FUSION_RECIPE` (data/intensity.ts), validation patches not augmented. The
 * first B patches of a batch are the foregrounds `I_f`, the last B the backgrounds `I_b`.
 *
 * Fusion, per fused sample (seeded by the step seed): `M ~ Uint[minBoxes, maxBoxes]` boxes; each box a class
 * `k ~ Uint[0, K−1]`, per-axis side `Uint[lo, hi]` with `hi = int(maxSideFraction·dim)` and `lo = min(minSide, hi)`
 * (upstream's `lo = 8` for every dim ≥ 13; smaller test patches clamp `lo` instead of failing), start
 * `Uint[0, dim − side]`; boxes painted in order (later overwrite earlier) into an α-map (`V[k]`, `V = linspace(0,1,K)`)
 * and a label map (`k`); α = 0 and label 0 elsewhere. Input `X = α·I_f + (1 − α)·I_b` (all channels), target = label map.
 *
 * Loss: nnU-Net's `DC_and_CE_loss` as nnssl configures it: cross-entropy of the K logits (mean over voxels) plus the
 * memory-efficient soft Dice on the softmax with background included and `batch_dice = false`: per sample and class
 * `dc = (2·Σ p·y + 1e-5) / max(Σ y + Σ p + 1e-5, 1e-8)`, Dice term = −mean over samples and classes. The loss can be
 * negative (its minimum is −1).
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { VOLUME_FUSION_RECIPE } from "../data/intensity.js";
import { Rng } from "../data/rng.js";
import type { ArchitectureFamily, Network } from "../models/architecture.js";
import type {
  MethodBatch,
  MethodContext,
  MethodDataNeeds,
  MethodEntry,
  MethodPreview,
  PretrainMethod,
} from "./method.js";

export const VolumeFusionOptionsSchema = z
  .object({
    /** Mixing classes K (coefficients linspace(0, 1, K)); nnssl variants use 3, 5, 9. */
    numClasses: z.number().int().min(2).default(5),
    minBoxes: z.number().int().positive().default(10),
    /** Inclusive (upstream `randint(10, 40)`). */
    maxBoxes: z.number().int().positive().default(39),
    minSide: z.number().int().positive().default(8),
    maxSideFraction: z.number().gt(0).max(1).default(0.625),
    /** nnssl's centre-crop loader; false = random crops like the other methods. */
    centerCrop: z.boolean().default(true),
    /** The intensity + mirror augmentation of training patches before fusion. */
    intensityAugmentation: z.boolean().default(true),
  })
  .strict()
  .refine((o) => o.minBoxes <= o.maxBoxes, { error: "minBoxes must not exceed maxBoxes", path: ["minBoxes"] });
export type VolumeFusionOptions = z.infer<typeof VolumeFusionOptionsSchema>;

export type Dims = readonly [number, number, number];

export interface FusionBox {
  readonly k: number;
  readonly start: readonly [number, number, number];
  readonly size: readonly [number, number, number];
}

/** Inclusive per-axis side range for a patch axis of length `dim`. */
export function sideRange(dim: number, o: Pick<VolumeFusionOptions, "minSide" | "maxSideFraction">): [number, number] {
  const hi = Math.max(1, Math.trunc(o.maxSideFraction * dim));
  return [Math.min(o.minSide, hi), hi];
}

/** The boxes of one fused sample, in painting order. */
export function drawBoxes(
  rng: Rng,
  dims: Dims,
  o: Pick<VolumeFusionOptions, "numClasses" | "minBoxes" | "maxBoxes" | "minSide" | "maxSideFraction">,
): FusionBox[] {
  const m = rng.int(o.minBoxes, o.maxBoxes);
  const ranges = dims.map((d) => sideRange(d, o));
  const boxes: FusionBox[] = [];
  for (let i = 0; i < m; i++) {
    const k = rng.int(0, o.numClasses - 1);
    const size = ranges.map(([lo, hi]) => rng.int(lo, hi)) as unknown as [number, number, number];
    const start = size.map((s, a) => rng.int(0, dims[a]! - s)) as unknown as [number, number, number];
    boxes.push({ k, start, size });
  }
  return boxes;
}

/** Paint boxes in order into the α-map (`V[k]`) and label map (`k`) over [X, Y, Z] (C-order). */
export function paintBoxes(
  dims: Dims,
  boxes: readonly FusionBox[],
  numClasses: number,
): { alpha: Float32Array; labels: Uint8Array } {
  const [X, Y, Z] = dims;
  const alpha = new Float32Array(X * Y * Z);
  const labels = new Uint8Array(X * Y * Z);
  for (const b of boxes) {
    const v = b.k / (numClasses - 1);
    for (let x = b.start[0]; x < b.start[0] + b.size[0]; x++)
      for (let y = b.start[1]; y < b.start[1] + b.size[1]; y++) {
        const o = (x * Y + y) * Z;
        alpha.fill(v, o + b.start[2], o + b.start[2] + b.size[2]);
        labels.fill(b.k, o + b.start[2], o + b.start[2] + b.size[2]);
      }
  }
  return { alpha, labels };
}

/**
 * Fuse a batch of 2·B channels-last patches [2B, X, Y, Z, C] (first half foreground, second half background) into B
 * inputs and their label maps.
 */
export function fuseBatch(
  data: Float32Array,
  shape: readonly [number, number, number, number, number],
  rng: Rng,
  o: VolumeFusionOptions,
): { x: Float32Array; labels: Uint8Array; boxes: FusionBox[][] } {
  const [B2, X, Y, Z, C] = shape;
  if (B2 % 2 !== 0)
    throw new ConfigError(
      `volume fusion needs an even number of loaded patches (foreground + background halves), got ${B2}`,
      { field: "batchSize" },
    );
  const B = B2 / 2;
  const n = X * Y * Z;
  const x = new Float32Array(B * n * C);
  const labels = new Uint8Array(B * n);
  const boxes: FusionBox[][] = [];
  for (let b = 0; b < B; b++) {
    const bx = drawBoxes(rng, [X, Y, Z], o);
    boxes.push(bx);
    const { alpha, labels: lab } = paintBoxes([X, Y, Z], bx, o.numClasses);
    labels.set(lab, b * n);
    const fg = b * n * C;
    const bg = (B + b) * n * C;
    for (let v = 0; v < n; v++) {
      const a = alpha[v]!;
      for (let c = 0; c < C; c++) {
        const i = v * C + c;
        x[fg + i] = a * data[fg + i]! + (1 - a) * data[bg + i]!;
      }
    }
  }
  return { x, labels, boxes };
}

/** One-hot [N, K] of labels (channels-last). */
function oneHot(labels: Uint8Array, k: number): Float32Array {
  const out = new Float32Array(labels.length * k);
  for (let i = 0; i < labels.length; i++) out[i * k + labels[i]!] = 1;
  return out;
}

/**
 * nnU-Net `DC_and_CE_loss({batch_dice: false, smooth: 1e-5, do_bg: true}, {}, 1, 1)` with
 * `MemoryEfficientSoftDiceLoss`: logits [B, X, Y, Z, K] (channels-last), target one-hot of the same shape.
 */
export function diceCeLoss(logits: tf.Tensor5D, target: tf.Tensor5D, smooth = 1e-5): tf.Scalar {
  return tf.tidy(() => {
    const K = logits.shape[4];
    const logp = tf.logSoftmax(logits);
    const ce = tf.neg(tf.div(tf.sum(tf.mul(target, logp)), logits.size / K));
    const p = tf.exp(logp);
    const axes = [1, 2, 3];
    const intersect = tf.sum(tf.mul(p, target), axes);
    const sumPred = tf.sum(p, axes);
    const sumGt = tf.sum(target, axes);
    const dc = tf.div(tf.add(tf.mul(intersect, 2), smooth), tf.maximum(tf.add(tf.add(sumGt, sumPred), smooth), 1e-8));
    return tf.sub<tf.Scalar>(ce, tf.mean(dc));
  });
}

export class VolumeFusion implements PretrainMethod {
  readonly key = "volume-fusion";
  readonly needsAnon = false;
  readonly data: MethodDataNeeds;
  constructor(readonly o: VolumeFusionOptions) {
    this.data = {
      imagesPerSample: 2,
      crop: o.centerCrop ? "center" : "random",
      ...(o.intensityAugmentation ? { trainIntensity: VOLUME_FUSION_RECIPE } : {}),
    };
  }
  outChannels(): number {
    return this.o.numClasses;
  }
  /** The fused inputs [B, X, Y, Z, C] and one-hot targets [B, X, Y, Z, K] of a batch of 2·B patches. */
  fuse(batch: MethodBatch, seed: number): { x: tf.Tensor5D; target: tf.Tensor5D; boxes: FusionBox[][] } {
    const shape = batch.x.shape;
    const { x, labels, boxes } = fuseBatch(batch.x.dataSync() as Float32Array, shape, new Rng(seed), this.o);
    const B = shape[0] / 2;
    return {
      x: tf.tensor5d(x, [B, shape[1], shape[2], shape[3], shape[4]]),
      target: tf.tensor5d(oneHot(labels, this.o.numClasses), [B, shape[1], shape[2], shape[3], this.o.numClasses]),
      boxes,
    };
  }
  /** Fused inputs, one-hot targets and the network's logits [B, X, Y, Z, K]. */
  forward(
    net: Network,
    batch: MethodBatch,
    ctx: MethodContext,
  ): { x: tf.Tensor5D; target: tf.Tensor5D; logits: tf.Tensor5D } {
    const { x, target } = this.fuse(batch, ctx.seed);
    const logits = net.apply(x, { training: ctx.training, seed: ctx.seed });
    if (logits.shape[4] !== this.o.numClasses)
      throw new ConfigError(
        `network has ${logits.shape[4]} output channels, volume fusion needs ${this.o.numClasses}`,
        { field: "outChannels" },
      );
    return { x, target, logits };
  }
  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const { target, logits } = this.forward(net, batch, ctx);
    return diceCeLoss(logits, target);
  }
  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const { x, target, logits } = this.forward(net, batch, ctx);
    const B = x.shape[0];
    const K = this.o.numClasses;
    // class k ↔ mixing coefficient k / (K − 1): the foreground share of the fused voxel
    const asAlpha = (onehotOrLogits: tf.Tensor5D) =>
      tf.expandDims<tf.Tensor5D>(tf.div(tf.cast(tf.argMax(onehotOrLogits, 4), "float32"), K - 1), 4);
    return {
      caption: `VolumeFusion: two patches are fused box by box with mixing coefficients k/${K - 1}; the network segments the coefficient map (white: all foreground).`,
      columns: [
        { label: "foreground patch", volume: tf.slice(batch.x, [0, 0, 0, 0, 0], [B, -1, -1, -1, -1]), kind: "image" },
        { label: "background patch", volume: tf.slice(batch.x, [B, 0, 0, 0, 0], [B, -1, -1, -1, -1]), kind: "image" },
        { label: "fused input", volume: x, kind: "image" },
        { label: "true coefficients", volume: asAlpha(target), kind: "map" },
        { label: "predicted coefficients", volume: asAlpha(logits), kind: "map" },
      ],
    };
  }
}

export const volumeFusion: MethodEntry<typeof VolumeFusionOptionsSchema> = {
  key: "volume-fusion",
  description:
    "VolumeFusion: fuse two patches with box-wise mixing coefficients (5 classes); CE + soft Dice on the coefficient map",
  families: ["cnn", "vit"],
  optionsSchema: VolumeFusionOptionsSchema,
  create(options: VolumeFusionOptions, _family: ArchitectureFamily): PretrainMethod {
    return new VolumeFusion(options);
  },
  architectureFor(key: string, exists: (key: string) => boolean): string {
    // Primus presets: nnssl's EvaMAE without decoder transformer (encoder + PatchDecode), see architectureOptions
    const m = /^primus-(.+)$/.exec(key);
    return m !== null && exists(`eva-mae-${m[1]!}`) ? `eva-mae-${m[1]!}` : key;
  },
  architectureOptions(key: string): Record<string, unknown> {
    return key.startsWith("eva-mae-") ? { decoderDepth: 0 } : {};
  },
};
