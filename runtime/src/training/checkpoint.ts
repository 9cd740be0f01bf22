/**
 * Checkpoints (spec 4.7, without its bugs): one safetensors file per checkpoint (`checkpoint_latest.safetensors`,
 * `checkpoint_best.safetensors`, `checkpoint_final.safetensors`), written atomically (temp file, fsync, rename).
 *
 * - Tensors: the network weights under their PyTorch state-dict names, and the optimizer slots under
 *   `optimizer_state.<slot>.<parameter>` (e.g. `optimizer_state.exp_avg.eva.pos_embed`). All float32. Weights are
 *   stored in the tfjs layout of `models/architecture.ts` (metadata `layout: "tfjs"`); the exporter of the models
 *   module converts to PyTorch layout for `.pth`-style consumers.
 * - Metadata (`__metadata__.ssl3d`, one JSON string): trainer name, epoch/iteration/step, the per-epoch logging lists,
 *   best validation loss, RNG state (run seed + the loaders' next batch indices), optimizer hyper-parameters and
 *   step count, init args (plans/configuration/dataset names and trainer options — NOT the whole collection JSON,
 *   spec 8.7) and the adaptation plan (spec 4.8).
 */
import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { DataError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import type { LoaderState } from "../data/loader.js";
import type { OptimizerState, SlotTensor } from "./optim.js";

export const CHECKPOINT_FORMAT = "ssl3d-checkpoint/1";
export type CheckpointKind = "latest" | "best" | "final";

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
  layout: z.literal("tfjs"),
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
  rng: z.object({ seed: z.number(), train_loader: z.object({ stream: z.string(), nextIndex: z.number().int() }), val_loader: z.object({ stream: z.string(), nextIndex: z.number().int() }) }),
  optimizer: z.object({ kind: z.enum(["sgd-nesterov", "adamw"]), step: z.number().int(), lr: z.number(), hyper: z.record(z.string(), z.number()) }),
  init_args: z.record(z.string(), z.unknown()),
  nnssl_adaptation_plan: z.unknown(),
  saved_at: z.number(),
});
export type CheckpointMeta = z.infer<typeof CheckpointMetaSchema>;

export interface Checkpoint {
  readonly meta: CheckpointMeta;
  readonly weights: Map<string, SlotTensor>;
  readonly optimizerState: OptimizerState;
}

export function checkpointPath(dir: string, kind: CheckpointKind): string {
  return join(dir, `checkpoint_${kind}.safetensors`);
}

// ---- minimal safetensors codec (F32 only) --------------------------------------------------------------------

function encodeSafetensors(tensors: ReadonlyMap<string, SlotTensor>, metadata: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const n of names) {
    const t = tensors.get(n)!;
    header[n] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += " ";
  const hbytes = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + hbytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const n of names) {
    const t = tensors.get(n)!;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

function decodeSafetensors(buf: Buffer, file: string): { tensors: Map<string, SlotTensor>; metadata: Record<string, string> } {
  if (buf.length < 8) throw new DataError("truncated safetensors file", { file });
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new DataError(`header length ${n} exceeds the file size`, { file, field: "header" });
  let header: Record<string, { dtype?: string; shape?: number[]; data_offsets?: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as typeof header;
  } catch {
    throw new DataError("invalid safetensors header JSON", { file, field: "header" });
  }
  const base = 8 + n;
  const tensors = new Map<string, SlotTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (e.dtype !== "F32" || e.shape === undefined || e.data_offsets === undefined) throw new DataError(`unsupported tensor entry (dtype ${e.dtype ?? "?"})`, { file, field: name });
    const [a, b] = e.data_offsets;
    if (base + b > buf.length || b - a !== 4 * e.shape.reduce((x, y) => x * y, 1)) throw new DataError("tensor data out of range or size mismatch", { file, field: name });
    const copy = new Float32Array((b - a) / 4);
    new Uint8Array(copy.buffer).set(buf.subarray(base + a, base + b));
    tensors.set(name, { shape: e.shape, data: copy });
  }
  return { tensors, metadata };
}

// ---- save / load -----------------------------------------------------------------------------------------------

const OPT_PREFIX = "optimizer_state.";

export async function saveCheckpoint(file: string, meta: CheckpointMeta, weights: ReadonlyMap<string, SlotTensor>, opt: OptimizerState): Promise<void> {
  const all = new Map<string, SlotTensor>(weights);
  for (const [slot, byParam] of Object.entries(opt.slots)) {
    for (const [param, t] of Object.entries(byParam)) all.set(`${OPT_PREFIX}${slot}.${param}`, t);
  }
  await writeFileAtomic(file, encodeSafetensors(all, { format: "pt", ssl3d: JSON.stringify(meta) }));
}

export function loadCheckpoint(file: string, slotNames: readonly string[]): Checkpoint {
  const { tensors, metadata } = decodeSafetensors(readFileSync(file), file);
  let metaRaw: unknown;
  try {
    metaRaw = JSON.parse(metadata.ssl3d ?? "null");
  } catch {
    throw new DataError("checkpoint metadata is not JSON", { file, field: "__metadata__.ssl3d" });
  }
  const r = CheckpointMetaSchema.safeParse(metaRaw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new DataError(`not an ssl3d checkpoint: ${issue?.message ?? "?"}`, { file, field: `__metadata__.ssl3d.${issue?.path.join(".") ?? ""}` });
  }
  const weights = new Map<string, SlotTensor>();
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
    slots[slot]![rest.slice(slot.length + 1)] = t;
  }
  const m = r.data;
  return { meta: m, weights, optimizerState: { kind: m.optimizer.kind, step: m.optimizer.step, lr: m.optimizer.lr, hyper: m.optimizer.hyper, slots } };
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
