/**
 * Models Genesis (`ModelGenesisTrainer` on ResEnc-L, `ModelGenesisEvaTrainer` on Primus; nnssl
 * `src/nnssl/training/nnsslTrainer/models_genesis/`).
 *
 * Each sample of the batch (plain random crops, no spatial augmentation: the trainers set `augment: false`) is
 * corrupted by `data/models-genesis.ts` (flip, local pixel shuffling, non-linear Bézier intensity curve, in- or
 * out-painting) with a generator seeded by the step seed; the network restores the uncorrupted (flipped) crop.
 * Loss: plain MSE over all voxels; `anon: true` (`_ANON`): masked MSE with `1 − anon` (−1, outside the image,
 * counted as 0 like MAE's `_ANON`; the mask is flipped with the sample).
 *
 * The corruption runs in the loader workers (the batch transform `models-genesis` of `data/batch-transforms.ts`,
 * ADR 0040), on training and validation batches, as upstream's data-loader workers do: `loss` receives the corrupted
 * input as `batch.x`, the clean target as `batch.target` and the flipped mask as `batch.anon`. On Primus the network is the EvaMAE wrapper without a decoder
 * transformer and without token dropping (`eva-mae-*` with `decoderDepth: 0`: encoder + PatchDecode).
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { MODELS_GENESIS_DEFAULTS } from "../data/models-genesis.js";
import { TrainingError } from "../errors.js";
import type { ArchitectureFamily, Network } from "../models/architecture.js";
import { maskedMse } from "./mae.js";
import type {
  MethodBatch,
  MethodContext,
  MethodDataNeeds,
  MethodEntry,
  MethodPreview,
  PretrainMethod,
} from "./method.js";

const rate = z.number().min(0).max(1);
export const ModelsGenesisOptionsSchema = z
  .object({
    anon: z.boolean().default(false),
    flipRate: rate.default(MODELS_GENESIS_DEFAULTS.flipRate),
    localRate: rate.default(MODELS_GENESIS_DEFAULTS.localRate),
    nonlinearRate: rate.default(MODELS_GENESIS_DEFAULTS.nonlinearRate),
    paintRate: rate.default(MODELS_GENESIS_DEFAULTS.paintRate),
    inpaintRate: rate.default(MODELS_GENESIS_DEFAULTS.inpaintRate),
    shuffleBlocks: z.number().int().nonnegative().default(MODELS_GENESIS_DEFAULTS.shuffleBlocks),
    bezierPoints: z.number().int().min(2).default(MODELS_GENESIS_DEFAULTS.bezierPoints),
  })
  .strict();
export type ModelsGenesisOptions = z.infer<typeof ModelsGenesisOptionsSchema>;

export class ModelsGenesis implements PretrainMethod {
  readonly key = "models-genesis";
  readonly needsAnon: boolean;
  readonly data: MethodDataNeeds;
  constructor(readonly o: ModelsGenesisOptions) {
    this.needsAnon = o.anon;
    const { anon: _anon, ...corruption } = o;
    this.data = { transform: { key: "models-genesis", options: corruption, validation: true } };
  }
  outChannels(inChannels: number): number {
    return inChannels;
  }
  /** The restoration of the corrupted input `batch.x` and the clean target. */
  forward(net: Network, batch: MethodBatch, ctx: MethodContext): { pred: tf.Tensor5D; target: tf.Tensor5D } {
    const target = batch.target;
    if (target === undefined)
      throw new TrainingError(
        "models-genesis: the batch has no target (the loader's models-genesis transform did not run)",
      );
    return { pred: net.apply(batch.x, { training: ctx.training, seed: ctx.seed }), target };
  }
  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const { pred, target } = this.forward(net, batch, ctx);
    return {
      caption:
        "Models Genesis: each crop is flipped and corrupted (local shuffling, a Bézier intensity curve, in- or out-painting); the network restores the clean crop.",
      columns: [
        { label: "original (target)", volume: target, kind: "image" },
        { label: "corrupted input", volume: batch.x, kind: "image" },
        { label: "restoration", volume: pred, kind: "image" },
      ],
    };
  }
  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const { pred, target } = this.forward(net, batch, ctx);
    if (!this.needsAnon) return tf.mean<tf.Scalar>(tf.squaredDifference(pred, target));
    if (batch.anon === undefined) throw new TrainingError("models-genesis (anon): the batch has no anonymisation mask");
    // −1 (outside the image) → 0; 1 anonymised → excluded
    const lossMask = tf.sub(1, tf.relu(batch.anon));
    return maskedMse(pred, target, lossMask);
  }
}

export const modelsGenesis = {
  key: "models-genesis",
  description:
    "Models Genesis: restore crops corrupted by flips, local shuffling, a Bézier intensity curve and in/out-painting; MSE",
  families: ["cnn", "vit"],
  optionsSchema: ModelsGenesisOptionsSchema,
  create(options: ModelsGenesisOptions, _family: ArchitectureFamily): PretrainMethod {
    return new ModelsGenesis(options);
  },
  architectureFor(key: string, exists: (key: string) => boolean): string {
    // Primus presets: the EvaMAE wrapper, built without decoder (architectureOptions)
    const m = /^primus-(.+)$/.exec(key);
    return m !== null && exists(`eva-mae-${m[1]!}`) ? `eva-mae-${m[1]!}` : key;
  },
  architectureOptions(key: string): Record<string, unknown> {
    return key.startsWith("eva-mae-") ? { decoderDepth: 0 } : {};
  },
} satisfies MethodEntry<typeof ModelsGenesisOptionsSchema>;
