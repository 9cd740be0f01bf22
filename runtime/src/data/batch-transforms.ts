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
import { Rng } from "./rng.js";
import { swinPretextViews } from "./swin-pretext.js";
import { defaultCropAugment, simclrCrops, vec3, vocoCrops } from "./contrastive-crops.js";
import { MODELS_GENESIS_DEFAULTS, modelsGenesisBatch, type ModelsGenesisConfig } from "./models-genesis.js";

export interface BatchTransformSpec {
  /** Key in `BATCH_TRANSFORMS`. */
  readonly key: string;
  /** JSON-serialisable options of the transform (structured-cloned to the workers). */
  readonly options: Readonly<Record<string, unknown>>;
  /** Also transform validation batches (Models Genesis: yes, the validation loss is on corrupted inputs too). */
  readonly validation: boolean;
  /** Options overriding `options` on validation batches (VoCo/SimCLR: `{ augment: false }`). */
  readonly validationOptions?: Readonly<Record<string, unknown>>;
}

/** A method-specific array a transform adds (VoCo: the overlap truth [B, T, N]). */
export interface AuxArray {
  readonly data: Float32Array;
  readonly shape: number[];
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
  readonly aux?: AuxArray;
}

export type BatchTransform = (
  b: BatchArrays,
  options: Readonly<Record<string, unknown>>,
  seed: number,
) => TransformedArrays;

function modelsGenesisTransform(
  b: BatchArrays,
  options: Readonly<Record<string, unknown>>,
  seed: number,
): TransformedArrays {
  const cfg: ModelsGenesisConfig = { ...MODELS_GENESIS_DEFAULTS, ...(options as Partial<ModelsGenesisConfig>) };
  const r = modelsGenesisBatch(b.data, b.shape, seed, cfg, b.anon);
  return { data: r.input, shape: b.shape, anon: r.anon, target: r.target };
}

/**
 * VoCo's crops (nnssl `vocoTrainer.py`): `data` becomes the B·N base crops then the B·T target crops
 * `[B·(N+T), cx, cy, cz, C]`, `aux` the overlap truth `[B, T, N]`; target positions and (when `augment`) the per-crop
 * augmentation draw from one generator seeded by the transform seed, exactly as `vocoCrops` in the method did with the
 * step seed.
 */
function vocoTransform(b: BatchArrays, options: Readonly<Record<string, unknown>>, seed: number): TransformedArrays {
  const o = options as { baseCrops: number[]; targetCrops: number; augment: boolean };
  const c = vocoCrops(
    new Rng(seed),
    b.data,
    b.shape,
    vec3(o.baseCrops, "trainer.methodOptions.baseCrops"),
    o.targetCrops,
    o.augment ? defaultCropAugment() : undefined,
  );
  const B = b.shape[0];
  return {
    data: c.crops,
    shape: [B * (c.nBase + c.nTarget), ...c.cropSize, b.shape[4]],
    anon: undefined,
    aux: { data: c.truth, shape: [B, c.nTarget, c.nBase] },
  };
}

/**
 * SimCLR's crops (nnssl `simCLRTrainer.py`): `data` = N references then their N partners `[2N, cx, cy, cz, C]`,
 * `aux` their offsets `[2N, 3]`.
 */
function simclrTransform(b: BatchArrays, options: Readonly<Record<string, unknown>>, seed: number): TransformedArrays {
  const o = options as { cropSize?: number[]; cropsPerImage: number; minOverlap: number; augment: boolean };
  const c = simclrCrops(new Rng(seed), b.data, b.shape, o, o.augment ? defaultCropAugment() : undefined);
  return {
    data: c.crops,
    shape: [2 * c.n, ...c.cropSize, b.shape[4]],
    anon: undefined,
    aux: { data: Float32Array.from([...c.references, ...c.partners].flat()), shape: [2 * c.n, 3] },
  };
}

/**
 * SwinUNETR's two views (nnssl `swin_unetr_transform.py`, `swinPretextViews`): `data` = the cut-out views [2B, …] (view
 * 1 then view 2), `target` = the rotated un-cut views, `aux` = the rotation labels k per row [2B] (as float32).
 * Training and validation.
 */
function swinViewsTransform(
  b: BatchArrays,
  _options: Readonly<Record<string, unknown>>,
  seed: number,
): TransformedArrays {
  const [B, X, Y, Z, C] = b.shape;
  const views = swinPretextViews(new Rng(seed), b.data, B, [X, Y, Z, C]);
  const n = X * Y * Z * C;
  const data = new Float32Array(2 * B * n);
  const target = new Float32Array(2 * B * n);
  views.forEach((v, i) => {
    data.set(v.cutout, i * B * n);
    target.set(v.rotated, i * B * n);
  });
  return {
    data,
    shape: [2 * B, X, Y, Z, C],
    anon: undefined,
    target,
    aux: { data: Float32Array.from([...views[0].rotations, ...views[1].rotations]), shape: [2 * B] },
  };
}

export const BATCH_TRANSFORMS: Readonly<Record<string, BatchTransform>> = {
  "swin-pretext-views": swinViewsTransform,
  "models-genesis": modelsGenesisTransform,
  "voco-crops": vocoTransform,
  "simclr-crops": simclrTransform,
};

/** The spec a validation loader applies (`validationOptions` merged over `options`), or undefined when training only. */
export function validationTransform(spec: BatchTransformSpec | undefined): BatchTransformSpec | undefined {
  if (spec?.validation !== true) return undefined;
  return { ...spec, options: { ...spec.options, ...(spec.validationOptions ?? {}) } };
}

export function applyBatchTransform(spec: BatchTransformSpec, b: BatchArrays, seed: number): TransformedArrays {
  const fn = BATCH_TRANSFORMS[spec.key];
  if (fn === undefined)
    throw new ConfigError(
      `unknown batch transform "${spec.key}" (known: ${Object.keys(BATCH_TRANSFORMS).join(", ")})`,
      { field: "transform" },
    );
  return fn(b, spec.options, seed);
}
