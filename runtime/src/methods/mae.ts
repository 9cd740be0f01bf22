/**
 * Masked auto-encoding (nnssl `src/nnssl/training/nnsslTrainer/masked_image_modeling/BaseMAETrainer.py` /
 * `BaseEvaMAETrainer.py`).
 *
 * - CNN (`BaseMAETrainer`): the patch is cut into `blockSize`³ blocks; `int(maskRatio · nBlocks)` blocks chosen
 *   uniformly without replacement per sample are zeroed (mask 1 = visible, 0 = masked); input = x · mask; loss =
 *   MSE over masked voxels only, `Σ((ŷ−x)²·(1−m)) / Σ(1−m)`.
 * - ViT (`BaseEvaMAETrainer`): token dropping through the network's `forwardMasked` (keep `1 − maskRatio`), the loss
 *   mask marks voxels of dropped tokens. It is built with the network's own `tokenIndex`, i.e. in the same order
 *   the wrapper flattens tokens, so it is NOT transposed as upstream's (a quirk of `BaseEvaMAETrainer.create_mask`).
 * - `anon: true` (`*_ANON` trainers, e.g. `BaseMAETrainer_ANON`): `loss_mask = (1 − mae_mask) · (1 − anon)` with −1
 *   (outside the image) treated as 0, i.e. such voxels are not excluded.
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { isMaskedNetwork, type ArchitectureFamily, type MaskedNetwork, type Network } from "../models/architecture.js";
import { Rng } from "../data/rng.js";
import type { MethodBatch, MethodContext, MethodEntry, MethodPreview, PretrainMethod } from "./method.js";

export const MaeOptionsSchema = z
  .object({
    maskRatio: z.number().gt(0).lt(1).default(0.75),
    blockSize: z.number().int().positive().default(16),
    anon: z.boolean().default(false),
  })
  .strict();
export type MaeOptions = z.infer<typeof MaeOptionsSchema>;

/**
 * Block mask for one sample, C-order over the patch (X, Y, Z): 1 visible, 0 masked. Blocks at the upper border are
 * partial when the patch is not a multiple of the block size. Returns the mask and the masked block indices.
 */
export function blockMask(
  rng: Rng,
  patch: readonly [number, number, number],
  blockSize: number,
  maskRatio: number,
): { mask: Float32Array; grid: [number, number, number]; masked: number[] } {
  const grid = patch.map((p) => Math.ceil(p / blockSize)) as [number, number, number];
  const nBlocks = grid[0] * grid[1] * grid[2];
  const nMasked = Math.trunc(maskRatio * nBlocks);
  const masked = rng.sample(nBlocks, nMasked);
  const isMasked = new Uint8Array(nBlocks);
  for (const m of masked) isMasked[m] = 1;
  const mask = new Float32Array(patch[0] * patch[1] * patch[2]);
  let o = 0;
  for (let x = 0; x < patch[0]; x++) {
    const bx = Math.floor(x / blockSize);
    for (let y = 0; y < patch[1]; y++) {
      const by = Math.floor(y / blockSize);
      for (let z = 0; z < patch[2]; z++, o++) {
        const b = (bx * grid[1] + by) * grid[2] + Math.floor(z / blockSize);
        mask[o] = isMasked[b] === 1 ? 0 : 1;
      }
    }
  }
  return { mask, grid, masked };
}

/** Loss mask (1 = dropped token → loss) over [X, Y, Z] for one sample, from kept token indices in the wrapper's order. */
export function tokenLossMask(
  net: Pick<MaskedNetwork, "tokenGrid" | "tokenPatch" | "tokenIndex">,
  keep: readonly number[],
): Float32Array {
  const [g0, g1, g2] = net.tokenGrid;
  const [p0, p1, p2] = net.tokenPatch;
  const kept = new Set(keep);
  const X = g0 * p0;
  const Y = g1 * p1;
  const Z = g2 * p2;
  const out = new Float32Array(X * Y * Z);
  for (let x = 0; x < X; x++)
    for (let y = 0; y < Y; y++)
      for (let z = 0; z < Z; z++) {
        const t = net.tokenIndex(Math.floor(x / p0), Math.floor(y / p1), Math.floor(z / p2));
        out[(x * Y + y) * Z + z] = kept.has(t) ? 0 : 1;
      }
  return out;
}

/** Σ((pred − target)² · lossMask) / Σ lossMask over all elements (mask broadcast over channels); 0 if the mask is empty. */
export function maskedMse(pred: tf.Tensor, target: tf.Tensor, lossMask: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const m =
      lossMask.shape[lossMask.rank - 1] === target.shape[target.rank - 1]
        ? lossMask
        : tf.mul(lossMask, tf.onesLike(target));
    const num = tf.sum(tf.mul(tf.squaredDifference(pred, target), m));
    const den = tf.sum(m);
    return tf.div<tf.Scalar>(num, tf.maximum(den, 1e-8));
  });
}

function withAnon(lossMask: tf.Tensor, anon: tf.Tensor5D | undefined): tf.Tensor {
  if (anon === undefined) return lossMask;
  // −1 (outside the image) → 0; 1 anonymised → excluded
  return tf.mul(lossMask, tf.sub(1, tf.relu(anon)));
}

/** The columns every masked-image method shows: input, mask (1 visible), masked input, reconstruction. */
export function maskedImagePreview(
  x: tf.Tensor5D,
  visible: tf.Tensor5D,
  reconstruction: tf.Tensor5D,
  caption: string,
): MethodPreview {
  return {
    caption,
    columns: [
      { label: "input", volume: x, kind: "image" },
      { label: "mask (white: visible)", volume: visible, kind: "map" },
      { label: "masked input", volume: tf.mul<tf.Tensor5D>(x, visible), kind: "image" },
      { label: "reconstruction", volume: reconstruction, kind: "image" },
    ],
  };
}

/** What both MAE variants share: the registry key, the anonymisation-mask need, reconstruction of the input. */
abstract class MaeBase implements PretrainMethod {
  readonly key = "mae";
  readonly needsAnon: boolean;
  constructor(readonly o: MaeOptions) {
    this.needsAnon = o.anon;
  }
  outChannels(inChannels: number): number {
    return inChannels;
  }
  /** The masked forward pass: visible-voxel mask [B,X,Y,Z,1], loss mask and reconstruction. */
  abstract forward(
    net: Network,
    batch: MethodBatch,
    ctx: MethodContext,
  ): { visible: tf.Tensor5D; lossMask: tf.Tensor; reconstruction: tf.Tensor5D };
  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const f = this.forward(net, batch, ctx);
    return maskedMse(f.reconstruction, batch.x, withAnon(f.lossMask, batch.anon));
  }
  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const f = this.forward(net, batch, ctx);
    return maskedImagePreview(
      batch.x,
      f.visible,
      f.reconstruction,
      `MAE: ${this.kindOfBlocks(Math.round(this.o.maskRatio * 100))}; the network reconstructs the whole patch, the loss counts the masked voxels.`,
    );
  }
  protected abstract kindOfBlocks(percent: number): string;
}

/**
 * The block masks of one CNN MAE step, `[B, X, Y, Z]` C-order (1 visible, 0 masked): `blockMask` per sample from one
 * generator seeded by the step seed. Exported so that a caller can know the masks a seeded step used
 * (bench/trajectory.ts hands them to the PyTorch reference).
 */
export function stepBlockMasks(
  seed: number,
  batch: number,
  patch: readonly [number, number, number],
  blockSize: number,
  maskRatio: number,
): Float32Array {
  const rng = new Rng(seed);
  const n = patch[0] * patch[1] * patch[2];
  const all = new Float32Array(batch * n);
  for (let b = 0; b < batch; b++) all.set(blockMask(rng, patch, blockSize, maskRatio).mask, b * n);
  return all;
}

export class CnnMae extends MaeBase {
  forward(
    net: Network,
    batch: MethodBatch,
    ctx: MethodContext,
  ): { visible: tf.Tensor5D; lossMask: tf.Tensor; reconstruction: tf.Tensor5D } {
    const [B, X, Y, Z] = batch.x.shape;
    const mask = tf.tensor5d(stepBlockMasks(ctx.seed, B, [X, Y, Z], this.o.blockSize, this.o.maskRatio), [
      B,
      X,
      Y,
      Z,
      1,
    ]);
    const pred = net.apply(tf.mul<tf.Tensor5D>(batch.x, mask), { training: ctx.training, seed: ctx.seed });
    return { visible: mask, lossMask: tf.sub(1, mask), reconstruction: pred };
  }
  protected kindOfBlocks(percent: number): string {
    return `${percent} % of the ${this.o.blockSize}³ blocks of the input are zeroed`;
  }
}

export class VitMae extends MaeBase {
  forward(
    net: Network,
    batch: MethodBatch,
    ctx: MethodContext,
  ): { visible: tf.Tensor5D; lossMask: tf.Tensor; reconstruction: tf.Tensor5D } {
    if (!isMaskedNetwork(net))
      throw new ConfigError(`architecture ${net.config.name} has no token-dropping MAE wrapper (forwardMasked)`, {
        field: "architecture",
      });
    const [B, X, Y, Z] = batch.x.shape;
    // upstream keeps the network in train mode during validation (patch dropout active),
    // `BaseEvaMAETrainer.validation_step`
    const { reconstruction, keepIndices } = net.forwardMasked(
      batch.x,
      { keepRatio: 1 - this.o.maskRatio, rngSeed: ctx.seed },
      { training: true, seed: ctx.seed },
    );
    const n = X * Y * Z;
    const all = new Float32Array(B * n);
    for (let b = 0; b < B; b++) all.set(tokenLossMask(net, keepIndices[b] ?? []), b * n);
    const lossMask = tf.tensor5d(all, [B, X, Y, Z, 1]);
    return { visible: tf.sub<tf.Tensor5D>(1, lossMask), lossMask, reconstruction };
  }
  protected kindOfBlocks(percent: number): string {
    return `${percent} % of the tokens are dropped before the encoder`;
  }
}

export const mae: MethodEntry<typeof MaeOptionsSchema> = {
  key: "mae",
  description:
    "Masked auto-encoder: 16³ block masking (CNN) / token dropping with a 2-block decoder (Primus); MSE on masked voxels",
  families: ["cnn", "vit"],
  optionsSchema: MaeOptionsSchema,
  create(options: MaeOptions, family: ArchitectureFamily): PretrainMethod {
    return family === "cnn" ? new CnnMae(options) : new VitMae(options);
  },
  architectureFor(key: string, exists: (key: string) => boolean): string {
    // Primus presets need the EvaMAE wrapper (token dropping + decoder) for MAE
    const m = /^primus-(.+)$/.exec(key);
    return m !== null && exists(`eva-mae-${m[1]!}`) ? `eva-mae-${m[1]!}` : key;
  },
};
