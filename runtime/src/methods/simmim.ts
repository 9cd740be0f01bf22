/**
 * SimMIM on Primus (nnssl `SimMIMEvaTrainer`,
 * `src/nnssl/training/nnsslTrainer/masked_image_modeling/SimMIMEvaTrainer.py`).
 *
 * Per sample, the patch is cut into token-sized blocks (8³ → a 20³ grid for 160³); `int(maskRatio · tokens)` of them
 * (6000 of 8000) are chosen uniformly without replacement from the step seed. The network (EvaSimMIM,
 * `models/eva-simmim.ts`) gets the token mask and replaces masked tokens by its learnable mask token before the
 * encoder (no token dropping); the loss is MSE on the voxels of masked tokens, `Σ((ŷ−x)²·(1−m)) / Σ(1−m)`.
 * The token mask is built with the network's `tokenIndex`, so the sparse mask the network sees and the dense mask
 * of the loss describe the same blocks. `anon: true` (`_ANON` suffix): `loss_mask · (1 − anon)`, −1 counted as 0,
 * as for MAE.
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { Rng } from "../data/rng.js";
import {
  isTokenMaskNetwork,
  type ArchitectureFamily,
  type Network,
  type TokenMaskNetwork,
} from "../models/architecture.js";
import { blockMask, maskedImagePreview, maskedMse } from "./mae.js";
import type { MethodBatch, MethodContext, MethodEntry, MethodPreview, PretrainMethod } from "./method.js";

export const SimMimOptionsSchema = z
  .object({
    maskRatio: z.number().gt(0).lt(1).default(0.75),
    anon: z.boolean().default(false),
  })
  .strict();
export type SimMimOptions = z.infer<typeof SimMimOptionsSchema>;

/**
 * One sample's masks: `dense` over the patch (C-order X,Y,Z; 1 visible, 0 masked) and `tokens` (length T, the
 * network's token order). Exactly `int(maskRatio · T)` tokens are masked.
 */
export function simmimMask(
  rng: Rng,
  net: Pick<TokenMaskNetwork, "tokenGrid" | "tokenPatch" | "tokenIndex">,
  maskRatio: number,
): { dense: Float32Array; tokens: Float32Array; masked: number } {
  const [g0, g1, g2] = net.tokenGrid;
  const p = net.tokenPatch[0];
  if (net.tokenPatch.some((v) => v !== p))
    throw new ConfigError(`SimMIM needs cubic token patches, got ${net.tokenPatch.join("x")}`, {
      field: "architecture",
    });
  const { mask, masked } = blockMask(rng, [g0 * p, g1 * p, g2 * p], p, maskRatio);
  const tokens = new Float32Array(g0 * g1 * g2).fill(1);
  // blockMask numbers blocks C-order over the grid; the network may flatten differently
  for (const b of masked) tokens[net.tokenIndex(Math.floor(b / (g1 * g2)), Math.floor(b / g2) % g1, b % g2)] = 0;
  return { dense: mask, tokens, masked: masked.length };
}

export class SimMim implements PretrainMethod {
  readonly key = "simmim";
  readonly needsAnon: boolean;
  constructor(readonly o: SimMimOptions) {
    this.needsAnon = o.anon;
  }
  outChannels(inChannels: number): number {
    return inChannels;
  }
  /** The masked forward pass: the dense visible mask [B,X,Y,Z,1] and the reconstruction. */
  forward(net: Network, batch: MethodBatch, ctx: MethodContext): { visible: tf.Tensor5D; reconstruction: tf.Tensor5D } {
    if (!isTokenMaskNetwork(net))
      throw new ConfigError(
        `architecture ${net.config.name} has no mask-token input (forwardTokenMask); use an eva-simmim-* architecture`,
        { field: "architecture" },
      );
    const [B, X, Y, Z] = batch.x.shape;
    const T = net.tokenGrid[0] * net.tokenGrid[1] * net.tokenGrid[2];
    const rng = new Rng(ctx.seed);
    const n = X * Y * Z;
    const dense = new Float32Array(B * n);
    const tokens = new Float32Array(B * T);
    for (let b = 0; b < B; b++) {
      const m = simmimMask(rng, net, this.o.maskRatio);
      dense.set(m.dense, b * n);
      tokens.set(m.tokens, b * T);
    }
    const reconstruction = net.forwardTokenMask(batch.x, tf.tensor2d(tokens, [B, T]), {
      training: ctx.training,
      seed: ctx.seed,
    });
    return { visible: tf.tensor5d(dense, [B, X, Y, Z, 1]), reconstruction };
  }
  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const { visible, reconstruction } = this.forward(net, batch, ctx);
    let lossMask: tf.Tensor = tf.sub(1, visible);
    // −1 (outside the image) → 0; 1 anonymised → excluded
    if (batch.anon !== undefined) lossMask = tf.mul(lossMask, tf.sub(1, tf.relu(batch.anon)));
    return maskedMse(reconstruction, batch.x, lossMask);
  }
  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const { visible, reconstruction } = this.forward(net, batch, ctx);
    return maskedImagePreview(
      batch.x,
      visible,
      reconstruction,
      `SimMIM: ${Math.round(this.o.maskRatio * 100)} % of the tokens replaced by the mask token before the encoder; the loss counts the masked voxels.`,
    );
  }
}

export const simmim = {
  key: "simmim",
  description:
    "SimMIM: 75 % of the 8³ tokens replaced by a learnable mask token before the Primus encoder; MSE on masked voxels",
  families: ["vit"],
  optionsSchema: SimMimOptionsSchema,
  create(options: SimMimOptions, family: ArchitectureFamily): PretrainMethod {
    if (family !== "vit")
      throw new ConfigError("SimMIM exists for Primus only (nnssl's SimMIMEvaTrainer)", { field: "trainer.method" });
    return new SimMim(options);
  },
  architectureFor(key: string, exists: (key: string) => boolean): string {
    // Primus presets need the EvaSimMIM wrapper (mask token)
    const m = /^primus-(.+)$/.exec(key);
    return m !== null && exists(`eva-simmim-${m[1]!}`) ? `eva-simmim-${m[1]!}` : key;
  },
} satisfies MethodEntry<typeof SimMimOptionsSchema>;
