/**
 * Batch transforms (ADR 0040): per-sample CPU work a method asks the loader workers to do after the batch is built
 * (crops, spatial and intensity augmentation), so the training step's thread only runs tensor work. A method names a
 * transform by key with JSON-serialisable options (`MethodDataNeeds.transform`): functions cannot cross the worker
 * boundary, so the code lives here, in one registry that both the workers and the main thread (`numWorkers: 0`) use.
 *
 * A transform is a pure function of (batch arrays, options, seed); the seed is `deriveSeed(batch seed, "transform")`,
 * so batch `i` stays a pure function of (seed, stream, i) whatever the number of workers.
 */
import { ConfigError } from "../errors.js";
import { MODELS_GENESIS_DEFAULTS, modelsGenesisBatch, type ModelsGenesisConfig } from "./models-genesis.js";

export interface BatchTransformSpec {
  /** Key in `BATCH_TRANSFORMS`. */
  readonly key: string;
  /** JSON-serialisable options of the transform (structured-cloned to the workers). */
  readonly options: Readonly<Record<string, unknown>>;
  /** Also transform validation batches (Models Genesis: yes, the validation loss is on corrupted inputs too). */
  readonly validation: boolean;
}

export interface BatchArrays {
  /** NDHWC */
  readonly data: Float32Array;
  readonly shape: [number, number, number, number, number];
  /** NDHWC [B, X, Y, Z, 1] */
  readonly anon: Float32Array | undefined;
}

export interface TransformedArrays extends BatchArrays {
  /** A regression target of the same shape as `data` (Models Genesis: the clean, flipped crop). */
  readonly target?: Float32Array;
}

export type BatchTransform = (b: BatchArrays, options: Readonly<Record<string, unknown>>, seed: number) => TransformedArrays;

function modelsGenesisTransform(b: BatchArrays, options: Readonly<Record<string, unknown>>, seed: number): TransformedArrays {
  const cfg: ModelsGenesisConfig = { ...MODELS_GENESIS_DEFAULTS, ...(options as Partial<ModelsGenesisConfig>) };
  const r = modelsGenesisBatch(b.data, b.shape, seed, cfg, b.anon);
  return { data: r.input, shape: b.shape, anon: r.anon, target: r.target };
}

export const BATCH_TRANSFORMS: Readonly<Record<string, BatchTransform>> = {
  "models-genesis": modelsGenesisTransform,
};

export function applyBatchTransform(spec: BatchTransformSpec, b: BatchArrays, seed: number): TransformedArrays {
  const fn = BATCH_TRANSFORMS[spec.key];
  if (fn === undefined) throw new ConfigError(`unknown batch transform "${spec.key}" (known: ${Object.keys(BATCH_TRANSFORMS).join(", ")})`, { field: "transform" });
  return fn(b, spec.options, seed);
}
