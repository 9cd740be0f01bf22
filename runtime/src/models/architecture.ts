/**
 * The architecture contract between the model zoo (this directory) and the pre-training methods.
 *
 * Layout: every image tensor is channels-last NDHWC, where D,H,W are the nnssl *array axes* X,Y,Z (after the
 * plan's transpose). A PyTorch NCDHW tensor `t[b, c, x, y, z]` is our `t[b, x, y, z, c]`.
 *
 * Weights: `Network.weights` maps the EXACT PyTorch state-dict key of dynamic-network-architectures (e.g.
 * `encoder.stages.1.blocks.0.conv1.conv.weight`, `eva.blocks.3.attn.q_proj.weight`) to a tf.Variable in the
 * tfjs layout (conv kernels [kd,kh,kw,in,out], transposed-conv kernels [kd,kh,kw,out,in], linear weights
 * [in,out]). Upstream's duplicate aliases (`.all_modules.0`/`.all_modules.1`, `decoder.encoder.*`) are NOT in
 * the map: each parameter appears once, under its primary name; the checkpoint exporter adds the aliases.
 * Weight initialisation is deterministic for a seed.
 */
import type * as tf from "@tensorflow/tfjs";
import type { ParamDecl } from "./params.js";

export type Vec3 = readonly [number, number, number];

/** What one forward pass needs besides the input. */
export interface ForwardContext {
  /** Training mode: enables stochastic depth (drop path) and dropout. Norms behave identically (no running stats). */
  readonly training: boolean;
  /**
   * Seed for the stochastic layers of this call (drop path). Same seed → same drop decisions. Default 0, so a
   * training loop must pass a different value per step (e.g. the global step).
   */
  readonly seed?: number;
}

export type ArchitectureFamily = "cnn" | "vit";

/** Where the transferable parts live in the state dict (nnssl `AdaptationPlan`, `adaptation_planning/adaptation_plan.py`). */
export interface AdaptationKeys {
  /** `architecture_plans.arch_class_name`: "ResEncL", "PrimusM", ... */
  readonly archClassName: string;
  /** Dynamic-network kwargs for ResidualEncoderUNet presets that have no upstream class name; else null. */
  readonly archKwargs: Readonly<Record<string, unknown>> | null;
  readonly archKwargsRequiringImport: readonly string[] | null;
  readonly keyToEncoder: string;
  readonly keyToStem: string;
  readonly keysToInProj: readonly string[];
  readonly keyToLpe: string | null;
  /**
   * `recommended_downstream_patchsize` when it is not the network's input size: networks trained on crops (VoCo,
   * SimCLR: 64³) recommend upstream's constant 160³ like every nnssl trainer. Default: `patchSize`.
   */
  readonly recommendedDownstreamPatchSize?: Vec3;
}

export interface NetworkConfig {
  /** Registry key (`resenc-l`, `primus-m`, ...). */
  readonly name: string;
  readonly family: ArchitectureFamily;
  readonly inChannels: number;
  readonly outChannels: number;
  /** Input spatial size (D,H,W = X,Y,Z). CNNs accept any size divisible by the total stride; ViTs need exactly this. */
  readonly patchSize: Vec3;
  readonly seed: number;
  /** The preset's full resolved hyper-parameters (widths, depths, ...), JSON-serialisable. */
  readonly hyper: Readonly<Record<string, unknown>>;
  readonly adaptation: AdaptationKeys;
}

export interface Network {
  readonly config: NetworkConfig;
  /** Trainable parameters keyed by PyTorch state-dict name (primary names only, see module doc). */
  readonly weights: ReadonlyMap<string, tf.Variable>;
  /** One declaration per entry of `weights` (shape, PyTorch layout permutation, initialiser). */
  readonly declarations: readonly ParamDecl[];
  /** Full network: [B,D,H,W,Cin] → [B,D,H,W,Cout] (linear output). */
  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D;
  /**
   * Encoder only. CNN: every stage output, highest resolution first ([B,D/s,H/s,W/s,C_s]); the stem output is
   * not included (it feeds stage 0). ViT: tokens after the final encoder norm, [B,T,C].
   */
  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D[] | tf.Tensor3D;
  /** Total number of scalar parameters (= upstream `sum(p.numel() for p in net.parameters())`). */
  parameterCount(): number;
  /**
   * The network `ssl3d export` writes (upstream's `network_weights`), sharing this one's variables. Pre-training
   * wrappers whose extra weights are not part of the exported module (SparK: the inner ResidualEncoderUNet) return
   * their inner network; absent = the network itself.
   */
  exported?(): Network;
  dispose(): void;
}

export interface MaskedForwardOptions {
  /** Fraction of tokens the encoder sees (nnssl MAE on Primus: 0.25 → 2000 of 8000). */
  readonly keepRatio?: number;
  /** Seed for choosing the kept tokens (per batch element). Ignored when keepIndices is given. */
  readonly rngSeed?: number;
  /** Explicit kept token indices per batch element (token order of the wrapper, see `tokenOrder`). */
  readonly keepIndices?: readonly (readonly number[])[];
}

export interface MaskedForwardResult {
  /** [B,D,H,W,Cout] reconstruction of the whole input. */
  readonly reconstruction: tf.Tensor5D;
  /** Kept token indices per batch element, ascending. Token grid index convention: `tokenIndex()`. */
  readonly keepIndices: number[][];
}

/** A network with a token-dropping MAE pre-training wrapper (nnssl `EvaMAE`, `architectures/evaMAE_module.py`). */
export interface MaskedNetwork extends Network {
  /** Token grid (input size / token patch size). */
  readonly tokenGrid: Vec3;
  /** Token patch size (8 for Primus). */
  readonly tokenPatch: Vec3;
  /** Linear token index of grid cell (g0,g1,g2) (array axes X,Y,Z) in this wrapper's flattening order. */
  tokenIndex(g0: number, g1: number, g2: number): number;
  forwardMasked(x: tf.Tensor5D, opts: MaskedForwardOptions, ctx: ForwardContext): MaskedForwardResult;
}

export function isMaskedNetwork(n: Network): n is MaskedNetwork {
  return typeof (n as Partial<MaskedNetwork>).forwardMasked === "function";
}

/**
 * A network that replaces masked tokens by a learnable mask token before its (full-length) encoder: EvaSimMIM
 * (nnssl `evaMAE_module.py`, SimMIM `evaSimMIM_module.py`). `mask` is [B, T] with 1 = visible, 0 = masked, indexed by
 * `tokenIndex`; the tokens become `t · m + mask_token · (1 − m)` before the positional embedding and the encoder.
 */
export interface TokenMaskNetwork extends Network {
  readonly tokenGrid: Vec3;
  readonly tokenPatch: Vec3;
  tokenIndex(g0: number, g1: number, g2: number): number;
  forwardTokenMask(x: tf.Tensor5D, mask: tf.Tensor2D, ctx: ForwardContext): tf.Tensor5D;
}

export function isTokenMaskNetwork(n: Network): n is TokenMaskNetwork {
  return typeof (n as Partial<TokenMaskNetwork>).forwardTokenMask === "function";
}

/** Options every registry entry accepts; presets add their own overrides (widths, depths, ...). */
export interface CreateNetworkOptions {
  readonly inChannels?: number;
  readonly outChannels?: number;
  readonly patchSize?: Vec3;
  readonly seed?: number;
  /** Preset-specific overrides, validated by the preset (unknown keys are a ConfigError). */
  readonly [override: string]: unknown;
}

export interface ArchitectureEntry {
  readonly key: string;
  readonly family: ArchitectureFamily;
  readonly description: string;
  create(opts: CreateNetworkOptions): Network;
  /** Parameter count without allocating tensors. */
  countParams(opts: CreateNetworkOptions): number;
}
