/**
 * Models Genesis (`ModelGenesisTrainer` on ResEnc-L, `ModelGenesisEvaTrainer` on Primus; spec 6.5).
 *
 * Each sample of the batch (plain random crops, no spatial augmentation: the trainers set `augment: false`) is
 * corrupted by `data/models-genesis.ts` (flip, local pixel shuffling, non-linear Bézier intensity curve, in- or
 * out-painting) with a generator seeded by the step seed; the network restores the uncorrupted (flipped) crop.
 * Loss: plain MSE over all voxels; `anon: true` (`_ANON`): masked MSE with `1 − anon` (−1, outside the image,
 * counted as 0 like MAE's `_ANON`; the mask is flipped with the sample).
 *
 * The corruption runs on the training step's thread inside `loss` (it reads the batch back with `dataSync`),
 * upstream runs it in its data-loader workers. On Primus the network is the EvaMAE wrapper without a decoder
 * transformer and without token dropping (`eva-mae-*` with `decoderDepth: 0`: encoder + PatchDecode).
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { MODELS_GENESIS_DEFAULTS, modelsGenesisPair, type ModelsGenesisConfig } from "../data/models-genesis.js";
import { Rng } from "../data/rng.js";
import type { ArchitectureFamily, Network } from "../models/architecture.js";
import { maskedMse } from "./mae.js";
import type { MethodBatch, MethodContext, MethodEntry, PretrainMethod } from "./method.js";

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

/** Corrupt every sample of a channels-last batch: inputs, targets and (flipped) anon masks as flat arrays. */
export function modelsGenesisBatch(x: Float32Array, shape: readonly [number, number, number, number, number], seed: number, cfg: ModelsGenesisConfig, anon?: Float32Array): { input: Float32Array; target: Float32Array; anon?: Float32Array } {
  const [B, X, Y, Z, C] = shape;
  const n = X * Y * Z * C;
  const nv = X * Y * Z;
  const rng = new Rng(seed);
  const input = new Float32Array(B * n);
  const target = new Float32Array(B * n);
  const anonOut = anon === undefined ? undefined : new Float32Array(B * nv);
  for (let b = 0; b < B; b++) {
    const p = modelsGenesisPair(x.subarray(b * n, (b + 1) * n), [X, Y, Z, C], rng, cfg, anon?.subarray(b * nv, (b + 1) * nv));
    input.set(p.input, b * n);
    target.set(p.target, b * n);
    if (anonOut !== undefined && p.anon !== undefined) anonOut.set(p.anon, b * nv);
  }
  return { input, target, ...(anonOut === undefined ? {} : { anon: anonOut }) };
}

export class ModelsGenesis implements PretrainMethod {
  readonly key = "models-genesis";
  readonly needsAnon: boolean;
  constructor(readonly o: ModelsGenesisOptions) {
    this.needsAnon = o.anon;
  }
  outChannels(inChannels: number): number {
    return inChannels;
  }
  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const shape = batch.x.shape;
    const [B, X, Y, Z] = shape;
    const pair = modelsGenesisBatch(batch.x.dataSync() as Float32Array, shape, ctx.seed, this.o, batch.anon?.dataSync() as Float32Array | undefined);
    const target = tf.tensor5d(pair.target, shape);
    const pred = net.apply(tf.tensor5d(pair.input, shape), { training: ctx.training, seed: ctx.seed });
    if (pair.anon === undefined) return tf.mean<tf.Scalar>(tf.squaredDifference(pred, target));
    // −1 (outside the image) → 0; 1 anonymised → excluded
    const lossMask = tf.sub(1, tf.relu(tf.tensor5d(pair.anon, [B, X, Y, Z, 1])));
    return maskedMse(pred, target, lossMask);
  }
}

export const modelsGenesis = {
  key: "models-genesis",
  description: "Models Genesis: restore crops corrupted by flips, local shuffling, a Bézier intensity curve and in/out-painting; MSE",
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
