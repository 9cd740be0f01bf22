/**
 * SparK-3D (nnssl `SparkMAETrainer`, `src/nnssl/training/nnsslTrainer/masked_image_modeling/SparkTrainer.py`): the MAE
 * block mask (16³ blocks, 75 % masked, `blockMask`), but the input is NOT zeroed: the network's sparse encoder masks
 * every encoder op's output instead, densifies the stage outputs with learnable mask tokens and decodes with the U-Net
 * decoder (models/spark.ts). Loss: MSE over masked voxels (`maskedMse`, upstream `SparkLoss`). CNN only; a plain
 * `resenc-*` architecture is built as its `spark-resenc-*` wrapper.
 */
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { Rng } from "../data/rng.js";
import type { Network } from "../models/architecture.js";
import { isSparkNetwork } from "../models/spark.js";
import { blockMask, maskedImagePreview, maskedMse } from "./mae.js";
import type { MethodBatch, MethodContext, MethodEntry, MethodPreview, PretrainMethod } from "./method.js";

export const SparkOptionsSchema = z
  .object({
    maskRatio: z.number().gt(0).lt(1).default(0.75),
    blockSize: z.number().int().positive().default(16),
  })
  .strict();
export type SparkOptions = z.infer<typeof SparkOptionsSchema>;

export class Spark implements PretrainMethod {
  readonly key = "spark";
  readonly needsAnon = false;
  constructor(readonly o: SparkOptions) {}

  outChannels(inChannels: number): number {
    return inChannels;
  }

  /** [B,X,Y,Z,1] block mask (1 visible), one `blockMask` draw per sample from the step's seed (as CNN MAE). */
  mask(shape: readonly number[], seed: number): tf.Tensor5D {
    const [B, X, Y, Z] = shape as [number, number, number, number];
    const rng = new Rng(seed);
    const n = X * Y * Z;
    const all = new Float32Array(B * n);
    for (let b = 0; b < B; b++) all.set(blockMask(rng, [X, Y, Z], this.o.blockSize, this.o.maskRatio).mask, b * n);
    return tf.tensor5d(all, [B, X, Y, Z, 1]);
  }

  /** The sparse forward pass: the block mask (1 visible) and the reconstruction. */
  forward(net: Network, batch: MethodBatch, ctx: MethodContext): { mask: tf.Tensor5D; reconstruction: tf.Tensor5D } {
    if (!isSparkNetwork(net))
      throw new ConfigError(`architecture ${net.config.name} has no SparK wrapper (use spark-resenc-*)`, {
        field: "architecture",
      });
    const mask = this.mask(batch.x.shape, ctx.seed);
    return {
      mask,
      reconstruction: net.forwardSparse(
        batch.x,
        { mask, blockSize: this.o.blockSize },
        { training: ctx.training, seed: ctx.seed },
      ),
    };
  }

  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar {
    const { mask, reconstruction } = this.forward(net, batch, ctx);
    return maskedMse(reconstruction, batch.x, tf.sub(1, mask));
  }

  preview(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview {
    const { mask, reconstruction } = this.forward(net, batch, ctx);
    return maskedImagePreview(
      batch.x,
      mask,
      reconstruction,
      `SparK: ${Math.round(this.o.maskRatio * 100)} % of the ${this.o.blockSize}³ blocks masked inside the sparse encoder (the masked input shows what it sees); the loss counts the masked voxels.`,
    );
  }
}

export const spark: MethodEntry<typeof SparkOptionsSchema> = {
  key: "spark",
  description:
    "SparK-3D: 16³ block mask, sparse ResEnc encoder (masked convs, sparse instance norm), densify with mask tokens, U-Net decoder; MSE on masked voxels",
  families: ["cnn"],
  optionsSchema: SparkOptionsSchema,
  create(options: SparkOptions): PretrainMethod {
    return new Spark(options);
  },
  architectureFor(key: string, exists: (key: string) => boolean): string {
    return exists(`spark-${key}`) ? `spark-${key}` : key;
  },
};
