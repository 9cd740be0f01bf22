/**
 * SwinUNETR pre-text tasks (nnssl `SwinUNETRTrainer` / `SwinUNETREvaTrainer`,
 * `src/nnssl/training/nnsslTrainer/swinunetr_pretrain/`): rotation prediction, contrastive coding and reconstruction of
 * cut-out regions, on a network with the three heads (`models/swin-pretext.ts`, on ResEnc or on the Primus/EvaMAE
 * encoder).
 *
 * Per batch (training and validation alike, as upstream, whose validation transform is the training one), in the
 * loader workers (batch transform `swin-pretext-views`, ADR 0040; seeded by the batch's transform seed): two views of
 * the batch (`data/swin-pretext.ts`: rotation k·90° in the (Y, Z) plane, then the
 * two-stage cut-out), concatenated view 1 then view 2 into one 2B batch and passed through the network once:
 *
 *   L = w_rec · L1(reconstruction, rotated un-cut image)          (mean over all voxels of both views)
 *     + w_con · NT-Xent(contrast[view 1], contrast[view 2], τ)    (positives: the same sample in the other view)
 *     + w_rot · CE(rotation logits, k)                            (mean over the 2B samples)
 *
 * with w = 1/1/1 and τ = 0.5 by default.
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { Rng } from "../data/rng.js";
import { swinPretextViews, type SwinView } from "../data/swin-pretext.js";
import type { ArchitectureFamily, Network } from "../models/architecture.js";
import { isPretextNetwork, ROTATION_CLASSES, type PretextOutputs } from "../models/swin-pretext.js";
import type {
  MethodBatch,
  MethodContext,
  MethodDataNeeds,
  MethodEntry,
  MethodPreview,
  PretrainMethod,
} from "./method.js";
import { ntXent } from "./nt-xent.js";

export const SwinPretextOptionsSchema = z
  .object({
    recWeight: z.number().min(0).default(1),
    contrastWeight: z.number().min(0).default(1),
    rotWeight: z.number().min(0).default(1),
    temperature: z.number().positive().default(0.5),
  })
  .strict();
export type SwinPretextOptions = z.infer<typeof SwinPretextOptionsSchema>;

/** The three loss terms and their weighted sum (scalars; the caller disposes). */
export interface SwinPretextTerms {
  readonly rec: tf.Scalar;
  readonly contrast: tf.Scalar;
  readonly rot: tf.Scalar;
  readonly total: tf.Scalar;
}

/** Inputs of one step: the 2B network input, the reconstruction target and the rotation labels (view 1, view 2). */
export function pretextBatch(
  views: readonly [SwinView, SwinView],
  B: number,
  shape: readonly [number, number, number, number],
): { input: tf.Tensor5D; target: tf.Tensor5D; labels: tf.Tensor1D } {
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  const input = new Float32Array(2 * B * n);
  const target = new Float32Array(2 * B * n);
  views.forEach((v, i) => {
    input.set(v.cutout, i * B * n);
    target.set(v.rotated, i * B * n);
  });
  const s: [number, number, number, number, number] = [2 * B, ...shape];
  return {
    input: tf.tensor5d(input, s),
    target: tf.tensor5d(target, s),
    labels: tf.tensor1d(Int32Array.from([...views[0].rotations, ...views[1].rotations]), "int32"),
  };
}

/** The loss terms from the network outputs (rows: view 1 then view 2). */
export function pretextLoss(
  o: SwinPretextOptions,
  out: { rotation: tf.Tensor2D; contrast: tf.Tensor2D; reconstruction: tf.Tensor5D },
  target: tf.Tensor5D,
  labels: tf.Tensor1D,
): SwinPretextTerms {
  const B2 = out.contrast.shape[0];
  if (B2 % 2 !== 0) throw new Error("pretextLoss: needs two views (an even number of rows)");
  const B = B2 / 2;
  const rec = tf.mean<tf.Scalar>(tf.abs<tf.Tensor>(tf.sub(out.reconstruction, target)));
  const d = out.contrast.shape[1];
  const contrast = ntXent(
    tf.slice(out.contrast, [0, 0], [B, d]),
    tf.slice(out.contrast, [B, 0], [B, d]),
    o.temperature,
  );
  const rot = tf.neg(
    tf.mean(tf.sum(tf.mul(tf.oneHot(labels, ROTATION_CLASSES), tf.logSoftmax(out.rotation, 1)), 1)),
  ) as tf.Scalar;
  const total = tf.addN([
    tf.mul(rec, o.recWeight),
    tf.mul(contrast, o.contrastWeight),
    tf.mul(rot, o.rotWeight),
  ]) as tf.Scalar;
  return { rec, contrast, rot, total };
}

export class SwinPretext implements PretrainMethod {
  readonly key = "swin-pretext";
  readonly needsAnon = false;
  /** The views are made in the loader workers; `loss` then receives inputs, targets and labels (`aux`). */
  readonly data: MethodDataNeeds = { transform: { key: "swin-pretext-views", options: {}, validation: true } };
  constructor(readonly o: SwinPretextOptions) {}

  outChannels(inChannels: number): number {
    return inChannels;
  }

  /** The two views of this step (seeded by the step seed). */
  views(x: tf.Tensor5D, seed: number): [SwinView, SwinView] {
    const [B, X, Y, Z, C] = x.shape;
    return swinPretextViews(new Rng(seed), x.dataSync() as Float32Array, B, [X, Y, Z, C]);
  }

  /** The network outputs on the two views, with the views' reconstruction targets and rotation labels. */
  forward(
    net: Network,
    batch: MethodBatch,
    ctx: MethodContext,
  ): { input: tf.Tensor5D; target: tf.Tensor5D; labels: tf.Tensor1D; out: PretextOutputs } {
    if (!isPretextNetwork(net))
      throw new ConfigError(
        `architecture ${net.config.name} has no SwinUNETR pre-text heads (use swin-pretext-<preset>, e.g. swin-pretext-resenc-l)`,
        { field: "architecture" },
      );
    let input = batch.x;
    let target = batch.target;
    let labels = batch.aux === undefined ? undefined : (tf.cast(batch.aux, "int32") as tf.Tensor1D);
    if (target === undefined || labels === undefined) {
      // plain patches (direct callers): make the views here, seeded by the step
      const [B, X, Y, Z, C] = batch.x.shape;
      ({ input, target, labels } = pretextBatch(this.views(batch.x, ctx.seed), B, [X, Y, Z, C]));
    }
    return { input, target, labels, out: net.forwardPretext(input, { training: ctx.training, seed: ctx.seed }) };
  }

  terms(net: Network, batch: MethodBatch, ctx: MethodContext): SwinPretextTerms {
    const { target, labels, out } = this.forward(net, batch, ctx);
    return pretextLoss(this.o, out, target, labels);
  }

  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const { input, target, labels, out } = this.forward(net, batch, ctx);
    const truth = labels.dataSync();
    const predicted = tf.argMax(out.rotation, 1).dataSync();
    const B = input.shape[0] / 2;
    return {
      caption:
        "SwinUNETR pre-text tasks: two views per patch, each rotated by k·90° and cut out; the network reconstructs the rotated view, classifies the rotation and contrasts the two views.",
      columns: [
        { label: "rotated view (target)", volume: target, kind: "image" },
        { label: "cut-out input", volume: input, kind: "image" },
        { label: "reconstruction", volume: out.reconstruction, kind: "image" },
      ],
      rowLabels: Array.from(
        truth,
        (t, i) =>
          `sample ${i % B}, view ${Math.floor(i / B) + 1}: rotation ${t * 90}°, predicted ${(predicted[i] ?? NaN) * 90}°`,
      ),
    };
  }

  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    return this.terms(net, batch, ctx).total;
  }
}

export const swinPretext: MethodEntry<typeof SwinPretextOptionsSchema> = {
  key: "swin-pretext",
  description:
    "SwinUNETR pre-text tasks: two rotated (k·90°) and cut-out views; L1 reconstruction + NT-Xent (τ 0.5) + rotation cross-entropy",
  families: ["cnn", "vit"],
  optionsSchema: SwinPretextOptionsSchema,
  create(options: SwinPretextOptions, _family: ArchitectureFamily): PretrainMethod {
    return new SwinPretext(options);
  },
  architectureFor(key: string, exists: (key: string) => boolean): string {
    // a plain backbone preset (resenc-l, primus-xs, ...) gets the pre-text heads: swin-pretext-<preset>
    return !key.startsWith("swin-pretext-") && exists(`swin-pretext-${key}`) ? `swin-pretext-${key}` : key;
  },
};
