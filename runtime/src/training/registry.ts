/**
 * Trainer registry: a trainer is a pre-training method on an architecture family with the optimisation recipe of nnssl
 * `src/nnssl/training/nnsslTrainer/AbstractTrainer.py` and the method trainers under
 * `src/nnssl/training/nnsslTrainer/`. Keys are `<method>-<architecture>` (lower-kebab); nnssl's class names are
 * accepted as aliases, including the suffixes `_BS<n>` (total batch size), `_ANON` (anonymisation-masked loss),
 * `_maskblock<n>` (mask block edge of MAE/SparK, upstream's `_maskblock*` ablations), `_<n>ep` / `_ep<n>` (epochs),
 * `_lr_<a>e<b>` / `_wd_<a>e<b>` (learning rate / weight decay a·10^−b) and `_C<n>` (VolumeFusion classes). Options are
 * validated with zod; unknown keys are a ConfigError naming the field.
 *
 * Adding a trainer for a new method = one line in `trainers` below (plus its aliases).
 */
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { getMethod } from "../methods/registry.js";
import type { ArchitectureFamily } from "../models/architecture.js";
import { ScheduleSchema } from "./schedules.js";

const Vec3Schema = z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]);

export const OptimizerConfigSchema = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("sgd-nesterov"),
      lr: z.number().positive(),
      momentum: z.number().min(0).lt(1),
      weightDecay: z.number().min(0),
    })
    .strict(),
  z
    .object({
      kind: z.literal("adamw"),
      lr: z.number().positive(),
      beta1: z.number().min(0).lt(1),
      beta2: z.number().min(0).lt(1),
      eps: z.number().positive().default(1e-8),
      weightDecay: z.number().min(0),
    })
    .strict(),
]);

export const TrainerOptionsSchema = z
  .object({
    method: z.string(),
    methodOptions: z.record(z.string(), z.unknown()).default({}),
    architecture: z.string(),
    optimizer: OptimizerConfigSchema,
    schedule: ScheduleSchema,
    /** Global-norm gradient clipping; null = none. */
    gradClip: z.number().positive().nullable(),
    numEpochs: z.number().int().positive().default(1000),
    itersPerEpoch: z.number().int().positive().default(250),
    valIters: z.number().int().nonnegative().default(50),
    batchSize: z.number().int().positive().default(2),
    patchSize: Vec3Schema.default([160, 160, 160]),
    /** Spatial augmentation (rotation/scale, mirror) on training batches (`BaseMAETrainer.get_training_transforms`). */
    augment: z.boolean().default(true),
    /** Keep only these modalities (nnssl modality-filter trainers). */
    modalities: z.array(z.string()).optional(),
    /** Consecutive non-finite steps tolerated before failing. */
    maxNonFiniteSteps: z.number().int().positive().default(20),
    seed: z.number().int().nonnegative().default(0),
    loaderWorkers: z.number().int().nonnegative().default(1),
    prefetch: z.number().int().positive().default(4),
  })
  .strict();
export type TrainerOptions = z.infer<typeof TrainerOptionsSchema>;

const CNN_RECIPE = {
  optimizer: { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.99, weightDecay: 3e-5 },
  schedule: { kind: "poly", exponent: 0.9 },
  gradClip: 12,
} as const;
const VIT_RECIPE = {
  optimizer: { kind: "adamw", lr: 3e-4, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 5e-2 },
  schedule: { kind: "warmup-poly", warmupEpochs: 50, exponent: 0.9 },
  gradClip: 1,
} as const;

export interface TrainerEntry {
  readonly key: string;
  /** nnssl class names of the base trainer (suffixes are parsed on top). */
  readonly aliases: readonly string[];
  readonly family: ArchitectureFamily;
  readonly defaults: Readonly<Record<string, unknown>>;
}

const trainers: readonly TrainerEntry[] = [
  {
    key: "mae-resenc-l",
    aliases: ["BaseMAETrainer"],
    family: "cnn",
    defaults: { method: "mae", architecture: "resenc-l", ...CNN_RECIPE },
  },
  {
    key: "mae-primus-m",
    aliases: ["BaseEvaMAETrainer"],
    family: "vit",
    defaults: { method: "mae", architecture: "eva-mae-m", ...VIT_RECIPE },
  },
  {
    key: "simmim-primus-m",
    aliases: ["SimMIMEvaTrainer"],
    family: "vit",
    defaults: { method: "simmim", architecture: "eva-simmim-m", ...VIT_RECIPE },
  },
  {
    key: "models-genesis-resenc-l",
    aliases: ["ModelGenesisTrainer"],
    family: "cnn",
    defaults: { method: "models-genesis", architecture: "resenc-l", augment: false, ...CNN_RECIPE },
  },
  {
    key: "models-genesis-primus-m",
    aliases: ["ModelGenesisEvaTrainer"],
    family: "vit",
    defaults: { method: "models-genesis", architecture: "eva-mae-m", augment: false, ...VIT_RECIPE },
  },
  {
    key: "spark-resenc-l",
    aliases: ["SparkMAETrainer"],
    family: "cnn",
    defaults: { method: "spark", architecture: "spark-resenc-l", ...CNN_RECIPE },
  },
  {
    key: "volume-fusion-resenc-l",
    aliases: ["VolumeFusionTrainer"],
    family: "cnn",
    defaults: { method: "volume-fusion", architecture: "resenc-l", augment: false, ...CNN_RECIPE },
  },
  {
    key: "volume-fusion-primus-m",
    aliases: ["VolumeFusionEvaTrainer"],
    family: "vit",
    defaults: { method: "volume-fusion", architecture: "eva-mae-m", augment: false, ...VIT_RECIPE },
  },
  // SwinUNETR pre-text tasks (nnssl `src/nnssl/training/nnsslTrainer/swinunetr_pretrain/SwinUNETRTrainer.py`): random
  // crops without spatial augmentation; the family's recipe
  {
    key: "swin-pretext-resenc-l",
    aliases: ["SwinUNETRTrainer"],
    family: "cnn",
    defaults: { method: "swin-pretext", architecture: "resenc-l", augment: false, ...CNN_RECIPE },
  },
  {
    key: "swin-pretext-primus-m",
    aliases: ["SwinUNETREvaTrainer"],
    family: "vit",
    defaults: { method: "swin-pretext", architecture: "primus-m", augment: false, ...VIT_RECIPE },
  },
  // nnssl `src/nnssl/training/nnsslTrainer/volume_contrastive/vocoTrainer.py`: no gradient clipping for the CNN; the
  // crops come from a 256×256×64 patch, no spatial augmentation
  {
    key: "voco-resenc-l",
    aliases: ["VoCoTrainer"],
    family: "cnn",
    defaults: {
      method: "voco",
      architecture: "voco-resenc-l",
      ...CNN_RECIPE,
      gradClip: null,
      patchSize: [256, 256, 64],
      augment: false,
    },
  },
  // nnssl `src/nnssl/training/nnsslTrainer/simCLR/simCLRTrainer.py`: grad clip 0.1, 192×192×64 patch
  {
    key: "simclr-resenc-l",
    aliases: ["SimCLRTrainer"],
    family: "cnn",
    defaults: {
      method: "simclr",
      architecture: "voco-resenc-l",
      ...CNN_RECIPE,
      gradClip: 0.1,
      patchSize: [192, 192, 64],
      augment: false,
    },
  },
  // Eva variants: AdamW two-stage schedule, clip 1 (nnssl `vocoEvaTrainer.py` / `simCLREvaTrainer.py`)
  {
    key: "voco-primus-m",
    aliases: ["VoCoEvaTrainer"],
    family: "vit",
    defaults: {
      method: "voco",
      architecture: "voco-primus-m",
      ...VIT_RECIPE,
      patchSize: [256, 256, 64],
      augment: false,
    },
  },
  {
    key: "simclr-primus-m",
    aliases: ["SimCLREvaTrainer"],
    family: "vit",
    defaults: {
      method: "simclr",
      architecture: "voco-primus-m",
      ...VIT_RECIPE,
      patchSize: [192, 192, 64],
      augment: false,
    },
  },
];

export function trainerKeys(): string[] {
  return trainers.map((t) => t.key);
}

export interface ResolvedTrainer {
  /** The name as given (used in the results folder, like upstream's class name). */
  readonly name: string;
  readonly entry: TrainerEntry;
  readonly options: TrainerOptions;
}

/** Parse `BaseMAETrainer_BS8_ANON` / `mae-resenc-l` into the base entry and the overrides its suffixes imply. */
export function parseTrainerName(name: string): { entry: TrainerEntry; overrides: Record<string, unknown> } {
  const direct = trainers.find((t) => t.key === name);
  if (direct !== undefined) return { entry: direct, overrides: {} };
  const parts = name.split("_");
  const base = parts[0] ?? "";
  const entry = trainers.find((t) => t.key === base || t.aliases.includes(base));
  if (entry === undefined) {
    throw new ConfigError(
      `unknown trainer "${name}" (known: ${[...trainers.flatMap((t) => [t.key, ...t.aliases])].join(", ")}; suffixes _BS<n>, _ANON, _maskblock<n>, _<n>ep, _lr_<a>e<b>, _wd_<a>e<b>, _C<n>, VoCo: _<x>x<y>x<z>, _PS<n>, _N<n>)`,
      { field: "trainer" },
    );
  }
  const overrides: Record<string, unknown> = {};
  const methodOptions: Record<string, unknown> = {};
  const optimizer: Record<string, unknown> = {};
  const isVoco = entry.defaults.method === "voco";
  let grid: [number, number, number] | undefined;
  let cropSide: number | undefined;
  const rest = parts.slice(1);
  for (let i = 0; i < rest.length; i++) {
    const p = rest[i]!;
    let m: RegExpMatchArray | null;
    if ((m = /^BS(\d+)$/.exec(p)) !== null) overrides.batchSize = Number(m[1]);
    else if (p === "ANON") methodOptions.anon = true;
    else if ((m = /^maskblock(\d+)$/.exec(p)) !== null) methodOptions.blockSize = Number(m[1]);
    else if ((m = /^(\d+)ep$/.exec(p)) !== null || (m = /^ep(\d+)$/.exec(p)) !== null)
      overrides.numEpochs = Number(m[1]);
    else if ((p === "lr" || p === "wd") && (m = /^(\d+)e(\d+)$/.exec(rest[i + 1] ?? "")) !== null) {
      // upstream `_lr_1e3` = 1e-3, `_wd_3e5` = 3e-5 (VolumeFusionTrainer_BS8_lr_1e3_wd_3e4, VoCoTrainer_BS8_lr_1e2, ...)
      optimizer[p === "lr" ? "lr" : "weightDecay"] = Number(`${m[1]!}e-${m[2]!}`);
      i += 1;
    } else if ((m = /^C(\d+)$/.exec(p)) !== null)
      methodOptions.numClasses = Number(m[1]); // VolumeFusion _C3 / _C9
    else if (isVoco && (m = /^(\d+)x(\d+)x(\d+)$/.exec(p)) !== null) grid = [Number(m[1]), Number(m[2]), Number(m[3])];
    else if (isVoco && (m = /^PS(\d+)$/.exec(p)) !== null) cropSide = Number(m[1]);
    else if (isVoco && (m = /^N(\d+)$/.exec(p)) !== null) methodOptions.targetCrops = Number(m[1]);
    else
      throw new ConfigError(
        `unsupported trainer suffix "_${p}" in "${name}" (supported: _BS<n>, _ANON, _maskblock<n>, _<n>ep, _ep<n>, _lr_<a>e<b>, _wd_<a>e<b>, _C<n>${isVoco ? ", _<x>x<y>x<z>, _PS<n>, _N<n>" : ""})`,
        { field: "trainer" },
      );
  }
  // VoCo crop-grid variants: _3x3x1_PS64 = a 3×3×1 grid of 64³ crops, i.e. a 192×192×64 patch
  if (grid !== undefined) methodOptions.baseCrops = grid;
  if (cropSide !== undefined) overrides.patchSize = (grid ?? [4, 4, 1]).map((n) => n * cropSide);
  if (Object.keys(methodOptions).length > 0) overrides.methodOptions = methodOptions;
  if (Object.keys(optimizer).length > 0)
    overrides.optimizer = { ...(entry.defaults.optimizer as Record<string, unknown>), ...optimizer };
  return { entry, overrides };
}

/**
 * Resolve a trainer name plus CLI/user overrides into validated options. `overrides.architecture` may replace the
 * preset by another of the same family (e.g. `resenc-xs` for CPU runs).
 */
export function resolveTrainer(
  name: string,
  overrides: Record<string, unknown> = {},
  architectureFamily?: (key: string) => ArchitectureFamily | undefined,
): ResolvedTrainer {
  const { entry, overrides: fromName } = parseTrainerName(name);
  const merged: Record<string, unknown> = { ...entry.defaults, ...fromName, ...overrides };
  merged.methodOptions = {
    ...(fromName.methodOptions as Record<string, unknown> | undefined),
    ...(overrides.methodOptions as Record<string, unknown> | undefined),
  };
  const r = TrainerOptionsSchema.safeParse(merged);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ConfigError(`invalid trainer option: ${issue?.message ?? "?"}`, {
      field: `trainer.${issue?.path.join(".") ?? ""}`,
    });
  }
  const options = r.data;
  const method = getMethod(options.method);
  if (!method.families.includes(entry.family))
    throw new ConfigError(`method ${method.key} does not support ${entry.family} architectures`, {
      field: "trainer.method",
    });
  const mo = method.optionsSchema.safeParse(options.methodOptions);
  if (!mo.success) {
    const issue = mo.error.issues[0];
    throw new ConfigError(`invalid ${method.key} option: ${issue?.message ?? "?"}`, {
      field: `trainer.methodOptions.${issue?.path.join(".") ?? ""}`,
    });
  }
  const fam = architectureFamily?.(options.architecture);
  if (architectureFamily !== undefined && fam !== entry.family) {
    throw new ConfigError(
      `architecture "${options.architecture}" is ${fam ?? "unknown"}, trainer ${name} needs a ${entry.family} architecture`,
      { field: "architecture" },
    );
  }
  return { name, entry, options: { ...options, methodOptions: mo.data as Record<string, unknown> } };
}

/**
 * The ways a resolved trainer departs from what upstream nnssl's class of the same name trains, as one-line
 * messages (logged as warnings by `ssl3d train`; the table in docs/training.md lists every such name, ADR 0053).
 * Empty when the name means what upstream means. Checked against `src/nnssl/training/nnsslTrainer/`:
 * - `BaseMAETrainer_BS16_ep1000`, `_BS24_ep1000`, `_BS32_ep1000` (`base_mae_derivates/batch_size_training.py`) set
 *   the plan's `batch_size`, which AbstractBaseTrainer never reads (it trains with `total_batch_size`, 2).
 * - MAE block masking on the CNN (`BaseMAETrainer.mask_creation` + `train_step`): upstream's mask has
 *   `floor(patch / block)` cells per axis, each repeated `floor(patch / cells)` voxels, so a block edge that does not
 *   divide the patch (`_maskblock64` on 160³: 2 cells of 80 voxels) gives other blocks than ssl3d's fixed-size ones.
 */
export function upstreamDifferences(t: ResolvedTrainer): string[] {
  const out: string[] = [];
  const o = t.options;
  if (/^BaseMAETrainer_BS(16|24|32)_ep1000$/.test(t.name)) {
    out.push(
      `${t.name}: upstream nnssl's class of this name trains with batch size 2 (it sets the plan's batch_size, which its trainer ignores); ssl3d trains with batch size ${o.batchSize}`,
    );
  }
  const block = o.methodOptions.blockSize;
  if (
    o.method === "mae" &&
    t.entry.family === "cnn" &&
    typeof block === "number" &&
    o.patchSize.some((p) => p % block !== 0)
  ) {
    const cells = o.patchSize.map((p) => Math.floor(p / block));
    const edges = o.patchSize.map((p, i) => (cells[i]! === 0 ? 0 : Math.floor(p / cells[i]!)));
    const ours = o.patchSize.map((p) => Math.ceil(p / block));
    const upstream = cells.some((c, i) => c === 0 || c * edges[i]! !== o.patchSize[i])
      ? "upstream's block mask would not cover the patch (its trainer fails)"
      : `upstream masks a ${cells.join("×")} grid of ${edges.join("×")}-voxel blocks`;
    out.push(
      `${t.name}: mask block ${block} on a ${o.patchSize.join("×")} patch: ${upstream}; ssl3d masks ${block}³ blocks on a ${ours.join("×")} grid (the last block per axis partial)`,
    );
  }
  return out;
}
