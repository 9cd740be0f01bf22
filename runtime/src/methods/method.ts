/**
 * The pre-training method contract. A method turns a batch into a scalar loss using a network from the model
 * registry; the training loop owns optimisation, data and checkpoints. A new method is one file exporting a
 * `MethodEntry` plus one line in `registry.ts`.
 */
import type * as tf from "@tensorflow/tfjs";
import type { z } from "zod";
import type { BatchTransformSpec } from "../data/batch-transforms.js";
import type { IntensityRecipe } from "../data/intensity.js";
import type { ArchitectureFamily, Network, Vec3 } from "../models/architecture.js";

export interface MethodBatch {
  /** [B, X, Y, Z, C] */
  readonly x: tf.Tensor5D;
  /** [B, X, Y, Z, 1] anonymisation mask (1 anonymised, 0 kept, −1 outside), when the method asked for it. */
  readonly anon?: tf.Tensor5D | undefined;
  /** [B, X, Y, Z, C] regression target built by the method's batch transform in the loader (`MethodDataNeeds.transform`). */
  readonly target?: tf.Tensor5D | undefined;
  /** A method-specific tensor the batch transform added (VoCo: the overlap truth [B, T, N]). */
  readonly aux?: tf.Tensor | undefined;
}

export interface MethodContext {
  readonly training: boolean;
  /** Seed of this step's random choices (masks); derived from (run seed, stream, step) by the loop. */
  readonly seed: number;
}

/**
 * What a method asks of the data loaders beyond the trainer options (ADR 0040). All optional; the defaults are the
 * MAE pipeline's (one patch per network sample, random crops, no intensity augmentation).
 */
export interface MethodDataNeeds {
  /**
   * Loaded patches per network sample: each step the loaders draw `batchSize × imagesPerSample` patches and `loss`
   * receives all of them in `batch.x` (VolumeFusion: 2, the first half foreground, the second half background).
   */
  readonly imagesPerSample?: number;
  /** "center": nnssl's centre-crop loader (`nnsslCenterCropDataLoader3D` in `data_loader_3d.py`) instead of random crops. */
  readonly crop?: "random" | "center";
  /** Per-patch intensity augmentation of training batches, applied in the loader workers (validation: none). */
  readonly trainIntensity?: IntensityRecipe;
  /**
   * Per-sample CPU work (corruptions, views) done in the loader workers after the batch is built: a key of
   * `data/batch-transforms.ts` with JSON options, on training batches and, when `validation`, on validation batches
   * (with `validationOptions` merged over the options). It may replace `batch.x` (also its shape: VoCo's crops) and
   * `batch.anon`, and add `batch.target` / `batch.aux`.
   */
  readonly transform?: BatchTransformSpec;
}

/** One column of a method's preview: a volume per row, [R, X, Y, Z, C] (channel 0 is shown). */
export interface PreviewColumn {
  readonly label: string;
  readonly volume: tf.Tensor5D;
  /** `image`: intensities windowed per row like the input; `map`: values in [0, 1] shown as they are (masks, label maps). */
  readonly kind: "image" | "map";
}

/** What a method does to a validation batch, as pictures for the run report (`ssl3d report`). */
export interface MethodPreview {
  /** One sentence on what the columns show. */
  readonly caption: string;
  readonly columns: readonly PreviewColumn[];
  /** A label per row (default: "sample i"). */
  readonly rowLabels?: readonly string[];
}

export interface PretrainMethod {
  readonly key: string;
  /** Whether batches must carry the anonymisation mask. */
  readonly needsAnon: boolean;
  /** Loader requirements (ADR 0040); absent = MAE's pipeline. */
  readonly data?: MethodDataNeeds;
  /** Output channels the network needs for `inChannels` input channels. */
  outChannels(inChannels: number): number;
  /**
   * The loss of one batch. Called inside `valueAndGrads` (training, training/backprop.ts) or `tf.tidy` (validation): allocate freely,
   * return a scalar; the caller disposes.
   */
  loss(net: Network, batch: MethodBatch, ctx: MethodContext): tf.Scalar;
  /**
   * Pictures of one validation batch for the run report, computed with the same forward pass as `loss` (masks,
   * corrupted inputs, reconstructions, crops). Called inside `tf.tidy`: allocate freely; the caller disposes the
   * returned volumes.
   */
  preview?(net: Network, batch: MethodBatch, ctx: MethodContext): MethodPreview;
}

export interface MethodEntry<S extends z.ZodType = z.ZodType> {
  readonly key: string;
  readonly description: string;
  /** Architecture families the method supports. */
  readonly families: readonly ArchitectureFamily[];
  readonly optionsSchema: S;
  create(options: z.infer<S>, family: ArchitectureFamily): PretrainMethod;
  /**
   * The registry key to build for a requested architecture, when the method needs a pre-training wrapper (MAE on
   * Primus: `primus-xs` → `eva-mae-xs`). `exists` tells whether a key is registered. Default: the key itself.
   */
  architectureFor?(key: string, exists: (key: string) => boolean): string;
  /**
   * Extra options for `createNetwork` of the key chosen by `architectureFor` (Models Genesis on Primus: the EvaMAE
   * wrapper with `decoderDepth: 0`). Default: none.
   */
  architectureOptions?(key: string): Readonly<Record<string, unknown>>;
  /**
   * The network's input size when the method feeds it sub-crops of the loaded patch (VoCo, SimCLR: the crop size,
   * which the adaptation plan records as the pre-training patch size, nnssl `adaptation_plan.py`). Throws a ConfigError
   * for a patch the method cannot cut. Default: the patch itself.
   */
  networkPatchSize?(patch: Vec3, options: z.infer<S>): Vec3;
}
