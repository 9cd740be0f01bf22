/**
 * Checkpoints (nnssl `AbstractBaseTrainer.save_checkpoint`, without its bugs): one safetensors file per checkpoint
 * (`checkpoint_latest.safetensors`, `checkpoint_best.safetensors`, `checkpoint_final.safetensors`), written atomically
 * (temp file, fsync, rename).
 *
 * - Tensors: the network weights under their PyTorch state-dict names and in PyTorch layout (primary names, no
 *   upstream aliases; `models/checkpoint-export.ts` converts), so the file loads as a state dict; and the optimizer
 *   slots under `optimizer_state.<slot>.<parameter>` (e.g. `optimizer_state.exp_avg.eva.pos_embed`) in the runtime's
 *   channels-last layout. All float32.
 * - Metadata (`__metadata__.ssl3d`, one JSON string): trainer name, epoch/iteration/step, the per-epoch logging lists,
 *   best validation loss, RNG state (run seed + the loaders' next batch indices), optimizer hyper-parameters and
 *   step count, init args (plans/configuration/dataset names and trainer options — NOT the whole collection JSON
 *   that upstream's `init_args` hold) and the adaptation plan (nnssl
 *   `src/nnssl/adaptation_planning/adaptation_plan.py`).
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { z } from "zod";
import { DataError } from "../errors.js";
import { limit } from "../config/limits.js";
import { writeFileAtomic } from "../io/atomic.js";
import { readRegularFileSync } from "../io/regular-file.js";
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from "../models/safetensors.js";
import type { LoaderState } from "../data/loader.js";
import type { OptimizerState, SlotTensor } from "./optim.js";
import { checkpointFile, type CheckpointKind } from "../config/layout.js";

export const CHECKPOINT_FORMAT = "ssl3d-checkpoint/1";
export type { CheckpointKind } from "../config/layout.js";

export const LoggingSchema = z.object({
  train_losses: z.array(z.number().nullable()),
  val_losses: z.array(z.number().nullable()),
  lrs: z.array(z.number()),
  epoch_start_timestamps: z.array(z.number()),
  epoch_end_timestamps: z.array(z.number()),
});
export type TrainingLogLists = z.infer<typeof LoggingSchema>;

export const CheckpointMetaSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  /** Weights in PyTorch layout (`torch`); optimizer slots always in the runtime's layout. */
  layout: z.literal("torch"),
  trainer_name: z.string(),
  /** Completed epochs (upstream `current_epoch`). */
  current_epoch: z.number().int().nonnegative(),
  /** Completed iterations of the running epoch (non-zero only for a mid-epoch stop). */
  iteration: z.number().int().nonnegative(),
  global_step: z.number().int().nonnegative(),
  /** Step losses of the running epoch so far (mid-epoch stop). */
  epoch_step_losses: z.array(z.number().nullable()),
  epoch_started_at: z.number().nullable(),
  logging: LoggingSchema,
  _best_ema: z.number().nullable(),
  nonfinite_total: z.number().int().nonnegative(),
  rng: z.object({
    seed: z.number(),
    train_loader: z.object({ stream: z.string(), nextIndex: z.number().int() }),
    val_loader: z.object({ stream: z.string(), nextIndex: z.number().int() }),
  }),
  optimizer: z.object({
    kind: z.enum(["sgd-nesterov", "adamw"]),
    step: z.number().int(),
    lr: z.number(),
    hyper: z.record(z.string(), z.number()),
  }),
  init_args: z.record(z.string(), z.unknown()),
  nnssl_adaptation_plan: z.unknown(),
  saved_at: z.number(),
});
export type CheckpointMeta = z.infer<typeof CheckpointMetaSchema>;

export interface Checkpoint {
  readonly meta: CheckpointMeta;
  /** PyTorch names and layout. */
  readonly weights: Map<string, NamedTensor>;
  readonly optimizerState: OptimizerState;
}

/** `<dir>/checkpoint_<kind>.safetensors` (config/layout.ts). */
export const checkpointPath: (dir: string, kind: CheckpointKind) => string = checkpointFile;

// ---- save / load -----------------------------------------------------------------------------------------------

const OPT_PREFIX = "optimizer_state.";

/**
 * `extraMetadata`: string entries for other readers, e.g. the models module's `ssl3d.architecture`/`ssl3d.options`
 * (so `loadNetwork` can rebuild the network from a checkpoint), `ssl3d.epoch`, `ssl3d.method`.
 */
export async function saveCheckpoint(
  file: string,
  meta: CheckpointMeta,
  weights: ReadonlyMap<string, NamedTensor>,
  opt: OptimizerState,
  extraMetadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const all = new Map<string, NamedTensor>(weights);
  for (const [slot, byParam] of Object.entries(opt.slots)) {
    for (const [param, t] of Object.entries(byParam)) all.set(`${OPT_PREFIX}${slot}.${param}`, t);
  }
  await writeFileAtomic(file, encodeSafetensors(all, { ...extraMetadata, format: "pt", ssl3d: JSON.stringify(meta) }));
}

export function loadCheckpoint(file: string, slotNames: readonly string[]): Checkpoint {
  const bytes = readRegularFileSync(file, {
    what: "checkpoint",
    maxBytes: limit("checkpointBytes"),
    maxBytesEnv: "SSL3D_CHECKPOINT_MAX_BYTES",
    error: DataError,
  });
  const { tensors, metadata } = decodeSafetensors(bytes, file);
  let metaRaw: unknown;
  try {
    metaRaw = JSON.parse(metadata.ssl3d ?? "null");
  } catch {
    throw new DataError("checkpoint metadata is not JSON", { file, field: "__metadata__.ssl3d" });
  }
  const r = CheckpointMetaSchema.safeParse(metaRaw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new DataError(`not an ssl3d checkpoint: ${issue?.message ?? "?"}`, {
      file,
      field: `__metadata__.ssl3d.${issue?.path.join(".") ?? ""}`,
    });
  }
  const weights = new Map<string, NamedTensor>();
  const slots: Record<string, Record<string, SlotTensor>> = {};
  for (const s of slotNames) slots[s] = {};
  for (const [name, t] of tensors) {
    if (!name.startsWith(OPT_PREFIX)) {
      weights.set(name, t);
      continue;
    }
    const rest = name.slice(OPT_PREFIX.length);
    const slot = slotNames.find((s) => rest.startsWith(`${s}.`));
    if (slot === undefined) throw new DataError(`unknown optimizer slot in ${name}`, { file, field: name });
    slots[slot]![rest.slice(slot.length + 1)] = { shape: [...t.shape], data: t.data };
  }
  const m = r.data;
  return {
    meta: m,
    weights,
    optimizerState: {
      kind: m.optimizer.kind,
      step: m.optimizer.step,
      lr: m.optimizer.lr,
      hyper: m.optimizer.hyper,
      slots,
    },
  };
}

/** The checkpoint to resume from: upstream order final → latest → best, first that exists. */
export function findResumeCheckpoint(dir: string): string | undefined {
  for (const k of ["final", "latest", "best"] as const) {
    const p = checkpointPath(dir, k);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export async function removeCheckpoint(dir: string, kind: CheckpointKind): Promise<void> {
  await rm(checkpointPath(dir, kind), { force: true });
}

export type { LoaderState };
