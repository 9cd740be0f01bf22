/**
 * PyTorch-compatible weights: our variables ↔ the state dict of dynamic-network-architectures.
 *
 * Export permutes every tensor to PyTorch's layout (NCDHW conv kernels [out,in,k,k,k], transposed-conv kernels
 * [in,out,k,k,k], linear [out,in]) and, for the CNN, adds upstream's aliases: every conv unit's `.conv`/`.norm`
 * also as `.all_modules.0`/`.all_modules.1`, and every `encoder.*` tensor also as `decoder.encoder.*` (the decoder
 * holds a reference to the encoder; not for encoder-only networks). Import accepts primary or alias names, checks shapes, and rejects unknown keys.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, DataError } from "../errors.js";
import type { Network, NetworkConfig } from "./architecture.js";
import type { ParamDecl } from "./params.js";
import { torchShape } from "./params.js";
import { dirname } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../io/atomic.js";
import { encodeSafetensors, type NamedTensor } from "./safetensors.js";
import { PyOrderedDict, TorchTensor, torchSave, type PyValue } from "./torch-zip.js";
import { parsePlansDocument, planConfiguration } from "../config/plans.js";
import { resultsFile } from "../config/layout.js";

/** Upstream alias names of a primary key (CNN only); empty for keys without aliases. */
export function aliasesOf(config: NetworkConfig, key: string): string[] {
  if (config.family !== "cnn") return [];
  const out: string[] = [];
  const m = /^(.*)\.(conv|norm)\.(weight|bias)$/.exec(key);
  if (m !== null) out.push(`${m[1]!}.all_modules.${m[2] === "conv" ? 0 : 1}.${m[3]!}`);
  // the U-Net decoder holds a reference to the encoder; encoder-only networks (hyper.encoderOnly) have no decoder
  if (key.startsWith("encoder.") && config.hyper.encoderOnly !== true)
    for (const k of [key, ...out]) out.push(`decoder.${k}`);
  return out;
}

export function permute(data: Float32Array, shape: readonly number[], perm: readonly number[] | null): Float32Array {
  if (perm === null) return data;
  return tf.tidy(() => tf.transpose(tf.tensor(data, [...shape]), [...perm]).dataSync() as Float32Array);
}

export function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

export interface TorchEntry {
  readonly decl: ParamDecl;
  readonly shape: number[];
  readonly data: Float32Array;
  /** Alias names that share this tensor upstream. */
  readonly aliases: string[];
}

/** Primary tensors in PyTorch layout, in declaration order, with their alias names. */
export function torchEntries(net: Network): TorchEntry[] {
  return net.declarations.map((d) => {
    const v = net.weights.get(d.name);
    if (v === undefined) throw new Error(`network has no variable for ${d.name}`);
    return {
      decl: d,
      shape: torchShape(d),
      data: permute(v.dataSync() as Float32Array, d.shape, d.torchPerm),
      aliases: aliasesOf(net.config, d.name),
    };
  });
}

/** The full upstream state dict (aliases included when `aliases`), as name → tensor in PyTorch layout. */
export function torchStateDict(net: Network, opts: { aliases: boolean }): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  const later = new Map<string, NamedTensor>();
  for (const e of torchEntries(net)) {
    const t = { shape: e.shape, data: e.data };
    out.set(e.decl.name, t);
    if (opts.aliases) for (const a of e.aliases) (a.startsWith("decoder.encoder.") ? later : out).set(a, t);
  }
  // upstream order: encoder.*, then decoder.encoder.*, then the rest of the decoder
  if (later.size === 0) return out;
  const ordered = new Map<string, NamedTensor>();
  for (const [k, v] of out) if (k.startsWith("encoder.")) ordered.set(k, v);
  for (const [k, v] of later) ordered.set(k, v);
  for (const [k, v] of out) if (!k.startsWith("encoder.")) ordered.set(k, v);
  return ordered;
}

/**
 * Load a state dict (PyTorch names and layout, aliases optional) into the network's variables.
 * Every parameter must be present under its primary or an alias name, with PyTorch's shape; unknown keys are an
 * error (strict, like `load_state_dict(strict=True)`), except non-parameter buffers listed in `ignore`.
 */
export function loadTorchStateDict(
  net: Network,
  tensors: ReadonlyMap<string, NamedTensor>,
  file: string,
  ignore: readonly string[] = [],
): void {
  const known = new Set<string>(ignore);
  const updates: [tf.Variable, tf.Tensor][] = [];
  try {
    for (const d of net.declarations) {
      const names = [d.name, ...aliasesOf(net.config, d.name)];
      names.forEach((n) => known.add(n));
      const hit = names.find((n) => tensors.has(n));
      if (hit === undefined) throw new DataError(`missing weight for ${net.config.name}`, { file, field: d.name });
      const t = tensors.get(hit)!;
      const want = torchShape(d);
      if (t.shape.length !== want.length || t.shape.some((s, i) => s !== want[i])) {
        throw new DataError(`shape [${t.shape.join(",")}] does not match ${net.config.name}'s [${want.join(",")}]`, {
          file,
          field: hit,
        });
      }
      const ours = d.torchPerm === null ? t.data : permute(t.data, want, inversePerm(d.torchPerm));
      updates.push([net.weights.get(d.name)!, tf.tensor(ours, [...d.shape])]);
    }
    for (const k of tensors.keys())
      if (!known.has(k))
        throw new DataError(`unexpected key (not a parameter of ${net.config.name})`, { file, field: k });
    for (const [v, t] of updates) v.assign(t);
  } finally {
    for (const [, t] of updates) t.dispose();
  }
}

/**
 * Upstream's `recommended_downstream_patchsize`: nnssl's AbstractBaseTrainer sets (160, 160, 160) for every trainer
 * (`src/nnssl/training/nnsslTrainer/AbstractTrainer.py`), whatever patch it pre-trains on; nnU-Net's nnssl
 * fine-tuning uses it as the downstream patch size.
 */
export const UPSTREAM_DOWNSTREAM_PATCH: readonly [number, number, number] = [160, 160, 160];

/**
 * nnssl `AdaptationPlan` (`src/nnssl/adaptation_planning/adaptation_plan.py`) as written to `adaptation_plan.json` and
 * `nnssl_adaptation_plan`. `pretrainPlan` is upstream's `pretrain_plan`: the nnssl Plan with only the trained
 * configuration, whose `patch_size` is what the network saw (see `pretrainPlanFor`). `recommended` defaults to the
 * architecture's own recommendation, else the network's input size (trainers pass UPSTREAM_DOWNSTREAM_PATCH, as
 * upstream's do).
 */
export function adaptationPlan(
  config: NetworkConfig,
  pretrainPlan: unknown = null,
  recommended?: readonly number[],
): Record<string, unknown> {
  const a = config.adaptation;
  return {
    architecture_plans: {
      arch_class_name: a.archClassName,
      arch_kwargs: a.archKwargs,
      arch_kwargs_requiring_import: a.archKwargsRequiringImport,
    },
    pretrain_plan: pretrainPlan,
    pretrain_num_input_channels: config.inChannels,
    recommended_downstream_patchsize: [...(recommended ?? a.recommendedDownstreamPatchSize ?? config.patchSize)],
    key_to_encoder: a.keyToEncoder,
    key_to_stem: a.keyToStem,
    keys_to_in_proj: [...a.keysToInProj],
    key_to_lpe: a.keyToLpe,
  };
}

export type ExportFormat = "safetensors" | "pth-compatible";

/**
 * Upstream's `pretrain_plan` from a whole nnssl plans JSON: the plan with only `configuration` (nnssl's
 * AbstractBaseTrainer keeps only the trained one: "the rest just confuses downstream"), its `patch_size` set to
 * the network's input (for VoCo/SimCLR the crop, as their `build_architecture_and_adaptation_plan` records it).
 * Without a configuration name the plans must hold exactly one configuration. ConfigError naming the file and field.
 */
export function pretrainPlanFor(
  plans: unknown,
  configuration: string | undefined,
  patchSize: readonly number[],
  file: string,
): Record<string, unknown> {
  const p = parsePlansDocument(plans, file);
  const names = Object.keys(p.configurations);
  const name = configuration ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined)
    throw new ConfigError(
      `plans has ${names.length} configurations (${names.join(", ")}) and the checkpoint does not name the trained one`,
      { file, field: "configurations" },
    );
  const cfg = planConfiguration(p, name, file);
  return { ...p, configurations: { [name]: { ...cfg, patch_size: [...patchSize] } } };
}

/** What a training checkpoint recorded for the adaptation plan (metadata `ssl3d`, runtime/src/training/checkpoint.ts). */
export interface RecordedPlan {
  /** Upstream `pretrain_plan` as the trainer wrote it (only the trained configuration), if any. */
  readonly pretrainPlan: Record<string, unknown> | null;
  readonly recommended: number[] | undefined;
  /** `init_args.configuration_name`. */
  readonly configuration: string | undefined;
}

/** The adaptation-plan inputs a training checkpoint carries in its `ssl3d` metadata; empty for plain network files. */
export function recordedPlan(metadata: Readonly<Record<string, string>>): RecordedPlan {
  let meta: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(metadata.ssl3d ?? "null") as unknown;
    if (typeof parsed === "object" && parsed !== null) meta = parsed as Record<string, unknown>;
  } catch {
    // not a training checkpoint's metadata: nothing recorded
  }
  const plan = (
    typeof meta.nnssl_adaptation_plan === "object" && meta.nnssl_adaptation_plan !== null
      ? meta.nnssl_adaptation_plan
      : {}
  ) as Record<string, unknown>;
  const pp = plan.pretrain_plan;
  const rec = plan.recommended_downstream_patchsize;
  const init = (typeof meta.init_args === "object" && meta.init_args !== null ? meta.init_args : {}) as Record<
    string,
    unknown
  >;
  return {
    pretrainPlan: typeof pp === "object" && pp !== null && !Array.isArray(pp) ? (pp as Record<string, unknown>) : null,
    recommended:
      Array.isArray(rec) && rec.length === 3 && rec.every((v) => Number.isInteger(v)) ? (rec as number[]) : undefined,
    configuration: typeof init.configuration_name === "string" ? init.configuration_name : undefined,
  };
}

export interface ExportOptions {
  readonly format: ExportFormat;
  /** Upstream `pretrain_plan` (the plan with only the trained configuration), if known. */
  readonly pretrainPlan?: unknown;
  /** `recommended_downstream_patchsize` (default: see `adaptationPlan`). */
  readonly recommended?: readonly number[];
  readonly trainerName?: string;
  readonly currentEpoch?: number;
}

/**
 * The exported bytes. safetensors: the full upstream state dict (aliases included; safetensors cannot share
 * storage, so aliases are copies) with the adaptation plan in the metadata. pth-compatible: an nnssl checkpoint
 * dict (`network_weights`, `nnssl_adaptation_plan`, `trainer_name`, `current_epoch`, ...) in torch.save's zip
 * format, aliases sharing storage as upstream; `torch.load(weights_only=True)` accepts it.
 */
export function exportBytes(wrapper: Network, opts: ExportOptions): Buffer {
  const net = exportedNetwork(wrapper);
  const plan = adaptationPlan(net.config, opts.pretrainPlan ?? null, opts.recommended);
  if (opts.format === "safetensors") {
    return encodeSafetensors(torchStateDict(net, { aliases: true }), {
      format: "pt",
      nnssl_adaptation_plan: JSON.stringify(plan),
      ...networkMeta(net),
    });
  }
  const storages = new Map<string, Float32Array>();
  const sd = new Map<string, PyValue>();
  const later = new Map<string, PyValue>();
  for (const e of torchEntries(net)) {
    const key = String(storages.size);
    storages.set(key, e.data);
    const t = new TorchTensor(key, e.shape);
    sd.set(e.decl.name, t);
    for (const a of e.aliases) (a.startsWith("decoder.encoder.") ? later : sd).set(a, t);
  }
  const ordered = new Map<string, PyValue>();
  for (const [k, v] of sd) if (k.startsWith("encoder.")) ordered.set(k, v);
  for (const [k, v] of later) ordered.set(k, v);
  for (const [k, v] of sd) if (!k.startsWith("encoder.")) ordered.set(k, v);
  const ckpt: PyValue = {
    network_weights: new PyOrderedDict(ordered),
    optimizer_state: null,
    grad_scaler_state: null,
    logging: {},
    _best_ema: null,
    current_epoch: opts.currentEpoch ?? 0,
    init_args: { configuration_name: null, plan: null, fold: null, pretrain_json: null, device: "cpu" },
    trainer_name: opts.trainerName ?? "ssl3d",
    nnssl_adaptation_plan: plan as PyValue,
    ssl3d: networkMeta(net),
  };
  return torchSave(ckpt, storages);
}

export function networkMeta(net: Network): Record<string, string> {
  const c = net.config;
  return {
    "ssl3d.architecture": c.name,
    "ssl3d.options": JSON.stringify({
      inChannels: c.inChannels,
      outChannels: c.outChannels,
      patchSize: c.patchSize,
      seed: c.seed,
      ...c.hyper,
    }),
  };
}

/** What `network_weights` holds: the network's `exported()` view (SparK: the inner U-Net), else the network. */
export function exportedNetwork(net: Network): Network {
  return net.exported?.() ?? net;
}

/** Write the export and `adaptation_plan.json` beside it (both atomically). Returns the written paths. */
export async function exportNetwork(
  net: Network,
  out: string,
  opts: ExportOptions,
): Promise<{ weights: string; plan: string }> {
  const planPath = resultsFile(dirname(out), "adaptationPlan");
  await writeFileAtomic(out, exportBytes(net, opts));
  await writeJsonAtomic(
    planPath,
    adaptationPlan(exportedNetwork(net).config, opts.pretrainPlan ?? null, opts.recommended),
    4,
  );
  return { weights: out, plan: planPath };
}
