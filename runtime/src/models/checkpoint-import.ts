/**
 * Import of PyTorch checkpoints: nnssl `checkpoint_*.pth` (dict with `network_weights`, `nnssl_adaptation_plan`,
 * `trainer_name`, `current_epoch`, ...), or a bare state dict, saved by `torch.save` (zip format). Also accepts
 * ssl3d network/training safetensors files, so `--pretrained-weights` takes either.
 *
 * - `readTorchCheckpoint(file)`: the state dict (float32, PyTorch names and layouts; DDP `module.` and
 *   `torch.compile` `_orig_mod.` prefixes stripped as nnssl does on resume) and the checkpoint's metadata.
 * - `architectureFromAdaptationPlan(plan, stateDict)`: the registry key and options of the network an nnssl
 *   checkpoint holds (ResEncL, Primus S/B/M/L, EvaMAE-wrapped Primus, dynamic ResidualEncoderUNet via arch_kwargs).
 * - `loadMatchingWeights(net, stateDict, file)`: nnssl's `-pretrained_weights`
 *   (`src/nnssl/run/load_pretrained_weights.py`): every parameter whose primary or alias name is present with the
 *   same shape is loaded, `.seg_layers.` are skipped.
 */
import * as tf from "@tensorflow/tfjs";
import { limit } from "../config/limits.js";
import { readRegularFile } from "../io/regular-file.js";
import { ConfigError, DataError, Ssl3dError } from "../errors.js";
import type { CreateNetworkOptions, Network } from "./architecture.js";
import { aliasesOf, inversePerm, permute } from "./checkpoint-export.js";
import { torchShape } from "./params.js";
import { decodeSafetensors, type NamedTensor } from "./safetensors.js";
import { PyObject, pyRepr, TorchArchive, TorchTensorRef, toPlain } from "./torch-load.js";

export interface ImportedCheckpoint {
  readonly kind: "nnssl-checkpoint" | "state-dict" | "ssl3d";
  /** PyTorch names → float32 data in PyTorch layout. */
  readonly stateDict: Map<string, NamedTensor>;
  readonly adaptationPlan: Record<string, unknown> | null;
  readonly trainerName: string | null;
  readonly epoch: number | null;
  /** ssl3d files: their `ssl3d.*` metadata (architecture, options). */
  readonly metadata: Record<string, string>;
}

const WEIGHT_KEYS = ["network_weights", "state_dict", "model_state_dict", "model"];

function stripPrefixes(name: string): string {
  let n = name;
  for (;;) {
    if (n.startsWith("module.")) n = n.slice(7);
    else if (n.startsWith("_orig_mod.")) n = n.slice(10);
    else return n;
  }
}

function isTensorDict(v: unknown): v is Map<unknown, unknown> {
  return v instanceof Map && v.size > 0 && [...v.values()].every((t) => t instanceof TorchTensorRef);
}

/** Read a .pth (torch.save zip) or an ssl3d .safetensors checkpoint. */
export async function readTorchCheckpoint(file: string): Promise<ImportedCheckpoint> {
  let buf: Buffer;
  const maxBytes = limit("checkpointBytes");
  try {
    // a regular file within the byte budget, checked on the open descriptor (a FIFO or /dev/zero is refused)
    buf = await readRegularFile(file, {
      what: "checkpoint",
      maxBytes,
      maxBytesEnv: "SSL3D_CHECKPOINT_MAX_BYTES",
      error: DataError,
    });
  } catch (err) {
    if (err instanceof Ssl3dError) throw err;
    throw new ConfigError(`cannot read checkpoint: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      file,
    });
  }
  if (buf.length >= 8 && buf.readUInt32LE(0) !== 0x04034b50) {
    // not a zip: an ssl3d safetensors file (8-byte header length + JSON)
    const dec = decodeSafetensors(buf, file);
    const stateDict = new Map<string, NamedTensor>();
    for (const [k, t] of dec.tensors) if (!k.startsWith("optimizer_state.")) stateDict.set(k, t);
    const epoch = dec.metadata["ssl3d.epoch"];
    return {
      kind: "ssl3d",
      stateDict,
      adaptationPlan: null,
      trainerName: dec.metadata["ssl3d.method"] ?? null,
      epoch: epoch === undefined ? null : Number(epoch),
      metadata: dec.metadata,
    };
  }
  // the file buffer itself counts against the budget
  const archive = TorchArchive.open(buf, file, { maxBytes: maxBytes - buf.length });
  const root = archive.root;
  let weights: Map<unknown, unknown> | undefined;
  let weightsField = "";
  let kind: ImportedCheckpoint["kind"] = "state-dict";
  if (isTensorDict(root)) {
    weights = root;
  } else if (root instanceof Map) {
    for (const k of WEIGHT_KEYS) {
      if (isTensorDict(root.get(k))) {
        weights = root.get(k) as Map<unknown, unknown>;
        weightsField = k;
        kind = k === "network_weights" ? "nnssl-checkpoint" : "state-dict";
        break;
      }
    }
  }
  if (weights === undefined) {
    const keys = root instanceof Map ? pyRepr([...root.keys()].slice(0, 20), 300) : pyRepr(root);
    throw new DataError(
      `no state dict found (expected a dict of tensors or one of ${WEIGHT_KEYS.join(", ")}; top level has: ${keys})`,
      { file, field: "network_weights" },
    );
  }
  const stateDict = new Map<string, NamedTensor>();
  for (const [k, t] of weights) {
    if (typeof k !== "string")
      throw new DataError(`state-dict key ${pyRepr(k)} is not a string`, {
        file,
        field: weightsField || "(state dict)",
      });
    const name = stripPrefixes(k);
    const ref = t as TorchTensorRef;
    stateDict.set(name, {
      shape: [...ref.shape],
      data: archive.readFloat32(ref, weightsField === "" ? name : `${weightsField}.${name}`),
    });
  }
  const get = (k: string): unknown => (root instanceof Map ? root.get(k) : undefined);
  const planRaw = get("nnssl_adaptation_plan");
  let plan: unknown = null;
  try {
    if (planRaw instanceof Map || planRaw instanceof PyObject)
      plan = toPlain(planRaw instanceof PyObject ? planRaw.state : planRaw);
  } catch (err) {
    if (err instanceof DataError && err.file === undefined)
      throw new DataError(err.message, { file, field: "nnssl_adaptation_plan" });
    throw err;
  }
  const trainer = get("trainer_name");
  const epoch = get("current_epoch");
  return {
    kind,
    stateDict,
    adaptationPlan:
      plan !== null && typeof plan === "object" && !Array.isArray(plan) ? (plan as Record<string, unknown>) : null,
    trainerName: typeof trainer === "string" ? trainer : null,
    epoch: typeof epoch === "number" ? epoch : null,
    metadata: {},
  };
}

const PRIMUS_PRESETS: Record<string, string> = { PrimusS: "s", PrimusB: "b", PrimusM: "m", PrimusL: "l" };
const RESENC_PRESETS: Record<string, string> = { ResEncL: "resenc-l" };

function vec3(v: unknown): [number, number, number] | undefined {
  return Array.isArray(v) && v.length === 3 && v.every((x) => Number.isInteger(x) && (x as number) > 0)
    ? [v[0] as number, v[1] as number, v[2] as number]
    : undefined;
}

/**
 * The registry key and options of the network an nnssl checkpoint holds, from its adaptation plan and (for input /
 * output channels and wrappers) the state dict's shapes. Throws a ConfigError naming the plan field when unknown.
 */
export function architectureFromAdaptationPlan(
  plan: Record<string, unknown>,
  stateDict: ReadonlyMap<string, NamedTensor>,
  file: string,
): { key: string; options: CreateNetworkOptions } {
  const ap = (
    typeof plan.architecture_plans === "object" && plan.architecture_plans !== null ? plan.architecture_plans : {}
  ) as Record<string, unknown>;
  const cls = typeof ap.arch_class_name === "string" ? ap.arch_class_name : "";
  const inChannels = typeof plan.pretrain_num_input_channels === "number" ? plan.pretrain_num_input_channels : 1;
  const pp = plan.pretrain_plan as { configurations?: unknown } | null | undefined;
  const cfgs: unknown[] =
    typeof pp === "object" && pp !== null && typeof pp.configurations === "object" && pp.configurations !== null
      ? Object.values(pp.configurations)
      : [];
  const planPatch = cfgs
    .map((c) => vec3(typeof c === "object" && c !== null ? (c as { patch_size?: unknown }).patch_size : undefined))
    .find((p) => p !== undefined);
  const patchSize = planPatch ?? vec3(plan.recommended_downstream_patchsize);
  const outOf = (key: string): number | undefined => stateDict.get(key)?.shape[0];
  if (RESENC_PRESETS[cls] !== undefined || cls === "ResidualEncoderUNet") {
    const seg = [...stateDict.keys()]
      .filter((k) => /^decoder\.seg_layers\.\d+\.weight$/.test(k))
      .sort()
      .pop();
    const options: Record<string, unknown> = {
      inChannels,
      ...(seg !== undefined ? { outChannels: outOf(seg) } : { encoderOnly: true }),
      ...(patchSize !== undefined ? { patchSize } : {}),
    };
    if (cls === "ResidualEncoderUNet") {
      const kw = (typeof ap.arch_kwargs === "object" && ap.arch_kwargs !== null ? ap.arch_kwargs : {}) as Record<
        string,
        unknown
      >;
      const strides = Array.isArray(kw.strides)
        ? (kw.strides as unknown[]).map((s) => (Array.isArray(s) ? Number(s[0]) : Number(s)))
        : undefined;
      if (!Array.isArray(kw.features_per_stage) || strides === undefined)
        throw new ConfigError("dynamic ResidualEncoderUNet plan without features_per_stage/strides", {
          file,
          field: "architecture_plans.arch_kwargs",
        });
      Object.assign(options, {
        features: kw.features_per_stage,
        strides,
        blocks: kw.n_blocks_per_stage,
        ...(seg !== undefined ? { decoderConvs: kw.n_conv_per_stage_decoder } : {}),
      });
      return { key: "resenc-xs", options };
    }
    return { key: RESENC_PRESETS[cls]!, options };
  }
  // the configurable Primus (ssl3d's PrimusXS) records upstream Primus's init kwargs
  const kw = (ap.arch_kwargs ?? {}) as Record<string, unknown>;
  const size = PRIMUS_PRESETS[cls] ?? (typeof kw.embed_dim === "number" ? "xs" : undefined);
  if (size !== undefined) {
    // EvaMAE-wrapped Primus (pre-training checkpoints) has a decoder transformer; downstream Primus does not
    const wrapped = [...stateDict.keys()].some((k) => k.startsWith("decoder."));
    // the last PatchDecode stage is a ConvTranspose3d: PyTorch weight [in, out, k, k, k]
    const last = [...stateDict.keys()]
      .map((k) => /^up_projection\.decode\.(\d+)\.weight$/.exec(k))
      .filter((m) => m !== null)
      .sort((a, b) => Number(b[1]) - Number(a[1]))[0];
    const out = last === undefined ? undefined : stateDict.get(last[0])?.shape[1];
    const hyper =
      size !== "xs"
        ? {}
        : {
            embedDim: kw.embed_dim,
            depth: kw.encoder_eva_depth,
            heads: kw.encoder_eva_numheads,
            tokenPatch: Array.isArray(kw.patch_embed_size)
              ? (kw.patch_embed_size as unknown[])[0]
              : kw.patch_embed_size,
            ...(typeof kw.init_values === "number" ? { initValues: kw.init_values } : {}),
            ...(wrapped
              ? {
                  decoderDepth: [...stateDict.keys()].filter((k) => /^decoder\.blocks\.\d+\.norm1\.weight$/.test(k))
                    .length,
                }
              : {}),
          };
    return {
      key: wrapped ? `eva-mae-${size}` : `primus-${size}`,
      options: {
        inChannels,
        ...hyper,
        ...(out !== undefined ? { outChannels: out } : {}),
        ...(patchSize !== undefined ? { patchSize } : {}),
      },
    };
  }
  throw new ConfigError(
    `unknown architecture class "${cls}" (known: ${[...Object.keys(RESENC_PRESETS), "ResidualEncoderUNet", ...Object.keys(PRIMUS_PRESETS)].join(", ")}, or Primus init kwargs in arch_kwargs); pass --architecture`,
    { file, field: "nnssl_adaptation_plan.architecture_plans.arch_class_name" },
  );
}

/**
 * Build a network from settings read out of a file (an adaptation plan, `ssl3d.options`): an invalid or oversized
 * setting (the parameter budget of `DeclBuilder`) becomes a DataError naming the file and the field it came from.
 */
export function networkFromFileSettings<T>(build: () => T, file: string, field: string): T {
  try {
    return build();
  } catch (err) {
    if (err instanceof ConfigError && err.file === undefined) {
      const prefix = err.field === undefined ? "" : `${err.field}: `;
      const reason = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
      const option = err.field === undefined || err.field === "architecture" ? "" : ` (option ${err.field})`;
      throw new DataError(`${reason}${option}`, { file, field, cause: err });
    }
    throw err;
  }
}

export interface MatchReport {
  readonly loaded: string[];
  /** Parameters of the network left at their initialisation, with the reason. */
  readonly skipped: { name: string; reason: string }[];
  /** Checkpoint keys no parameter used. */
  readonly unused: string[];
}

/**
 * nnssl's `-pretrained_weights`: load every parameter present (primary or alias name) with the same PyTorch shape,
 * skipping `.seg_layers.`. A DataError when nothing matches.
 */
export function loadMatchingWeights(
  net: Network,
  stateDict: ReadonlyMap<string, NamedTensor>,
  file: string,
): MatchReport {
  const loaded: string[] = [];
  const skipped: { name: string; reason: string }[] = [];
  const used = new Set<string>();
  const updates: [tf.Variable, tf.Tensor][] = [];
  try {
    for (const d of net.declarations) {
      if (d.name.includes(".seg_layers.")) {
        skipped.push({ name: d.name, reason: "segmentation layer (never transferred)" });
        continue;
      }
      const names = [d.name, ...aliasesOf(net.config, d.name)];
      const hit = names.find((n) => stateDict.has(n));
      if (hit === undefined) {
        skipped.push({ name: d.name, reason: "not in the checkpoint" });
        continue;
      }
      names.forEach((n) => used.add(n));
      const t = stateDict.get(hit)!;
      const want = torchShape(d);
      if (t.shape.length !== want.length || t.shape.some((s, i) => s !== want[i])) {
        skipped.push({ name: d.name, reason: `shape [${t.shape.join(",")}] vs [${want.join(",")}]` });
        continue;
      }
      const ours = d.torchPerm === null ? t.data : permute(t.data, want, inversePerm(d.torchPerm));
      updates.push([net.weights.get(d.name)!, tf.tensor(ours, [...d.shape])]);
      loaded.push(d.name);
    }
    if (loaded.length === 0)
      throw new DataError(`no parameter of ${net.config.name} matches the checkpoint (names and shapes)`, {
        file,
        field: "network_weights",
      });
    for (const [v, t] of updates) v.assign(t);
  } finally {
    for (const [, t] of updates) t.dispose();
  }
  const unused = [...stateDict.keys()].filter((k) => !used.has(k));
  return { loaded, skipped, unused };
}
