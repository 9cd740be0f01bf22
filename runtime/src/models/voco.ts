/**
 * nnssl's `VoCoArchitecture` (`src/nnssl/architectures/voco_architecture.py`; also the SimCLR network): a ResEnc
 * encoder only (stem + stages, upstream `ResidualEncoder` under `encoder.`), every stage output globally average-pooled
 * and concatenated (32+64+128+256+320+320 = 1120 features for ResEnc-L), then the projection head `VocoProjectionHead`:
 *
 *   Linear(F→H) → rowNorm → ReLU → Linear(H→H) → rowNorm → ReLU → Linear(H→O)      (H = O = 2048)
 *
 * where rowNorm is upstream's `InstanceNorm1d(H, affine=False)` applied to a 2-D [N, H] tensor: PyTorch treats that
 * as one unbatched [C=N, L=H] sample, i.e. every row is normalised over its H features (biased variance, eps 1e-5).
 * Rows stay independent, so an embedding does not depend on the other crops of the batch.
 *
 * State-dict names are upstream's: `encoder.stem.*`, `encoder.stages.*` (with the `.all_modules.N` aliases added by
 * the exporter, no `decoder.encoder.*`), `projector.layer{1,2,3}.0.{weight,bias}` (norms and ReLUs have no
 * parameters). The adaptation plan points at the encoder (`encoder.stages`, `encoder.stem`), as upstream's VoCo and
 * SimCLR trainers state; upstream crashes building this network (`get_network_by_name(..., encoder_only=True)` in
 * `src/nnssl/architectures/get_network_by_name.py`); we build what was intended.
 *
 * `embed(x)` gives the [N, O] embeddings; `apply(x)` returns them as [N,1,1,1,O] to fit the Network contract.
 *
 * Primus variant (`voco-primus-m`, `voco-primus-xs`; upstream `VoCoEvaArchitecture` of `VoCoEvaTrainer` and
 * `SimCLREvaTrainer`): the encoder is nnssl's EvaMAE without decoder and without up-projection (`encoder.down_projection`,
 * `encoder.eva`, `encoder.mask_token`), run without token dropping on the crop (64³ → 8³ tokens); its tokens after the
 * final norm are averaged (the adaptive average pool of the [B, C, W, H, D] map) into one 864-d feature → the same
 * head with input 864. Token order as our EvaMAE wrapper (ADR 0006). Adaptation keys `encoder.eva`,
 * `encoder.down_projection`, `keys_to_in_proj = ["encoder.down_projection.proj"]` (upstream's misspelled keyword
 * crashes its Eva trainers, e.g. `vocoEvaTrainer.py`; this is the intended value),
 * `key_to_lpe = "encoder.eva.pos_embed"`.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type {
  ArchitectureEntry,
  CreateNetworkOptions,
  ForwardContext,
  Network,
  NetworkConfig,
} from "./architecture.js";
import { linear } from "./ops/index.js";
import { countDecls, DeclBuilder, instantiate, param, type ParamDecl } from "./params.js";
import { RESENC_L, RESENC_XS, ResEncUNet, resolveResEnc, declareResEnc, type ResEncPreset } from "./resenc-unet.js";
import { declarePrimus, EvaMae, PRIMUS_PRESETS, resolvePrimus, type PrimusPreset } from "./primus.js";

/** A network that maps a batch of crops to one embedding row each (VoCo, SimCLR). */
export interface EmbeddingNetwork extends Network {
  /** [N,D,H,W,C] → [N, embedDim]. */
  embed(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor2D;
  readonly embedDim: number;
}

export function isEmbeddingNetwork(n: Network): n is EmbeddingNetwork {
  return typeof (n as Partial<EmbeddingNetwork>).embed === "function";
}

export interface VoCoPreset {
  readonly key: string;
  readonly description: string;
  readonly encoder: ResEncPreset;
  /** Hidden and output width of the projection head (2048 upstream). */
  readonly headDim: number;
  /** Whether `headDim` and the encoder hyper-parameters may be overridden. */
  readonly overridable: boolean;
}

export const VOCO_RESENC_L: VoCoPreset = {
  key: "voco-resenc-l",
  description:
    "nnssl VoCoArchitecture (VoCo/SimCLR): ResEnc-L encoder, pooled 1120 features → 2048-2048-2048 projection head",
  encoder: RESENC_L,
  headDim: 2048,
  overridable: false,
};

export const VOCO_RESENC_XS: VoCoPreset = {
  key: "voco-resenc-xs",
  description:
    "VoCoArchitecture on the small resenc-xs encoder with a 256-wide head (tests, CPU runs); head width overridable (headDim)",
  encoder: RESENC_XS,
  headDim: 256,
  overridable: true,
};

const ROW_NORM_EPS = 1e-5;
/** Upstream's `recommended_downstream_patchsize` (AbstractBaseTrainer): the crops the network saw are only 64³. */
const DOWNSTREAM_PATCH = [160, 160, 160] as const;

/** Upstream's InstanceNorm1d(affine=False) on a 2-D tensor: each row normalised over its features. */
export function rowNorm(x: tf.Tensor2D, eps = ROW_NORM_EPS): tf.Tensor2D {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, 1, true);
    return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  });
}

function splitOptions(
  preset: VoCoPreset,
  opts: CreateNetworkOptions,
): { encoderOpts: CreateNetworkOptions; headDim: number } {
  const { headDim: hd, encoderOnly, ...rest } = opts;
  if (encoderOnly !== undefined && encoderOnly !== true)
    throw new ConfigError(`${preset.key} is always encoder-only`, { field: "encoderOnly" });
  let headDim = preset.headDim;
  if (hd !== undefined) {
    if (!Number.isInteger(hd) || (hd as number) <= 0)
      throw new ConfigError(`must be a positive integer, got ${JSON.stringify(hd)}`, { field: "headDim" });
    if (!preset.overridable && hd !== preset.headDim)
      throw new ConfigError(`${preset.key} is a fixed preset; use voco-resenc-xs to change "headDim"`, {
        field: "headDim",
      });
    headDim = hd as number;
  }
  return { encoderOpts: { ...rest, encoderOnly: true }, headDim };
}

function declareHead(features: number, headDim: number): ParamDecl[] {
  const b = new DeclBuilder();
  b.linear("projector.layer1.0", features, headDim, true);
  b.linear("projector.layer2.0", headDim, headDim, true);
  b.linear("projector.layer3.0", headDim, headDim, true);
  return b.decls;
}

export class VoCoNetwork implements EmbeddingNetwork {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly declarations: readonly ParamDecl[];
  readonly embedDim: number;
  private readonly encoder: ResEncUNet;
  private readonly head: ReadonlyMap<string, tf.Variable>;

  constructor(preset: VoCoPreset, opts: CreateNetworkOptions) {
    const { encoderOpts, headDim } = splitOptions(preset, opts);
    this.encoder = new ResEncUNet(preset.encoder, encoderOpts);
    const enc = this.encoder.config;
    const features = (enc.hyper.features as number[]).reduce((a, b) => a + b, 0);
    const headDecls = declareHead(features, headDim);
    try {
      this.head = instantiate(headDecls, enc.seed);
    } catch (err) {
      this.encoder.dispose();
      throw err;
    }
    this.embedDim = headDim;
    this.declarations = [...this.encoder.declarations, ...headDecls];
    this.weights = new Map([...this.encoder.weights, ...this.head]);
    this.config = {
      ...enc,
      name: preset.key,
      outChannels: headDim,
      hyper: { ...enc.hyper, encoderOnly: true, headDim },
      adaptation: { ...enc.adaptation, recommendedDownstreamPatchSize: DOWNSTREAM_PATCH },
    };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D[] {
    return this.encoder.encode(x, ctx);
  }

  embed(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => {
      const pooled = this.encoder.encode(x, ctx).map((s) => tf.mean<tf.Tensor2D>(s, [1, 2, 3]));
      const h = pooled.length === 1 ? pooled[0]! : tf.concat(pooled, 1);
      return project(this.head, h);
    });
  }

  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() => tf.reshape(this.embed(x, ctx), [x.shape[0], 1, 1, 1, this.embedDim]));
  }

  dispose(): void {
    this.encoder.dispose();
    for (const v of this.head.values()) v.dispose();
  }
}

/** The shared projection head: Linear → row norm → ReLU, twice, then Linear (upstream `projector.layer{1,2,3}.0`). */
function project(head: ReadonlyMap<string, tf.Variable>, x: tf.Tensor2D): tf.Tensor2D {
  const p = (n: string) => param<tf.Rank.R2>(head, n);
  const b = (n: string) => param<tf.Rank.R1>(head, n);
  let h = tf.relu(rowNorm(linear(x, p("projector.layer1.0.weight"), b("projector.layer1.0.bias"))));
  h = tf.relu(rowNorm(linear(h, p("projector.layer2.0.weight"), b("projector.layer2.0.bias"))));
  return linear(h, p("projector.layer3.0.weight"), b("projector.layer3.0.bias"));
}

export function vocoEntry(preset: VoCoPreset): ArchitectureEntry {
  return {
    key: preset.key,
    family: "cnn",
    description: preset.description,
    create: (opts) => new VoCoNetwork(preset, opts),
    countParams: (opts) => {
      const { encoderOpts, headDim } = splitOptions(preset, opts);
      const r = resolveResEnc(preset.encoder, encoderOpts);
      const features = r.hyper.features.reduce((a, b) => a + b, 0);
      return (
        countDecls(declareResEnc(r.hyper, r.inChannels, r.outChannels, true)) +
        countDecls(declareHead(features, headDim))
      );
    },
  };
}

export interface VoCoPrimusPreset {
  readonly key: string;
  readonly description: string;
  /** The EvaMAE preset whose encoder this wraps (`eva-mae-m`, `eva-mae-xs`). */
  readonly encoderKey: string;
  readonly headDim: number;
  readonly overridable: boolean;
}

export const VOCO_PRIMUS_M: VoCoPrimusPreset = {
  key: "voco-primus-m",
  description:
    "nnssl VoCoEvaArchitecture (VoCo/SimCLR on Primus-M): EvaMAE encoder without decoder, pooled 864 features → 2048-2048-2048 head",
  encoderKey: "eva-mae-m",
  headDim: 2048,
  overridable: false,
};

export const VOCO_PRIMUS_XS: VoCoPrimusPreset = {
  key: "voco-primus-xs",
  description: "VoCoEvaArchitecture on the small primus-xs encoder with a 256-wide head (tests, CPU runs)",
  encoderKey: "eva-mae-xs",
  headDim: 256,
  overridable: true,
};

function evaPreset(key: string): PrimusPreset {
  const p = PRIMUS_PRESETS.find((q) => q.key === key);
  if (p === undefined) throw new Error(`no Primus preset ${key}`);
  return p;
}

function splitPrimusOptions(
  preset: VoCoPrimusPreset,
  opts: CreateNetworkOptions,
): { encoderOpts: CreateNetworkOptions; headDim: number } {
  const { headDim: hd, decoderDepth, outChannels: _out, ...rest } = opts;
  if (decoderDepth !== undefined && decoderDepth !== 0)
    throw new ConfigError(`${preset.key} has no decoder (decoderDepth 0)`, { field: "decoderDepth" });
  let headDim = preset.headDim;
  if (hd !== undefined) {
    if (!Number.isInteger(hd) || (hd as number) <= 0)
      throw new ConfigError(`must be a positive integer, got ${JSON.stringify(hd)}`, { field: "headDim" });
    if (!preset.overridable && hd !== preset.headDim)
      throw new ConfigError(`${preset.key} is a fixed preset; use voco-primus-xs to change "headDim"`, {
        field: "headDim",
      });
    headDim = hd as number;
  }
  return { encoderOpts: { ...rest, decoderDepth: 0, outChannels: 1 }, headDim };
}

const ENCODER_ONLY = (name: string): boolean => !name.startsWith("up_projection.");

export class VoCoPrimusNetwork implements EmbeddingNetwork {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly declarations: readonly ParamDecl[];
  readonly embedDim: number;
  private readonly encoder: EvaMae;
  private readonly head: ReadonlyMap<string, tf.Variable>;

  constructor(preset: VoCoPrimusPreset, opts: CreateNetworkOptions) {
    const { encoderOpts, headDim } = splitPrimusOptions(preset, opts);
    this.encoder = new EvaMae(evaPreset(preset.encoderKey), encoderOpts);
    const enc = this.encoder.config;
    // upstream builds EvaMAE with do_up_projection=False: the PatchDecode is not part of this network
    for (const [k, v] of this.encoder.weights) if (!ENCODER_ONLY(k)) v.dispose();
    const embed = enc.hyper.embedDim as number;
    const headDecls = declareHead(embed, headDim);
    try {
      this.head = instantiate(headDecls, enc.seed);
    } catch (err) {
      this.encoder.dispose();
      throw err;
    }
    this.embedDim = headDim;
    this.declarations = [
      ...this.encoder.declarations
        .filter((d) => ENCODER_ONLY(d.name))
        .map((d) => ({ ...d, name: `encoder.${d.name}` })),
      ...headDecls,
    ];
    this.weights = new Map([
      ...[...this.encoder.weights].filter(([k]) => ENCODER_ONLY(k)).map(([k, v]) => [`encoder.${k}`, v] as const),
      ...this.head,
    ]);
    this.config = {
      ...enc,
      name: preset.key,
      outChannels: headDim,
      hyper: { ...enc.hyper, headDim },
      adaptation: {
        ...enc.adaptation,
        keyToEncoder: "encoder.eva",
        keyToStem: "encoder.down_projection",
        keysToInProj: ["encoder.down_projection.proj"],
        keyToLpe: "encoder.eva.pos_embed",
        recommendedDownstreamPatchSize: DOWNSTREAM_PATCH,
      },
    };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor3D {
    return this.encoder.encode(x, ctx);
  }

  embed(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => {
      const h = tf.mean<tf.Tensor2D>(this.encoder.encode(x, ctx), 1);
      return project(this.head, h);
    });
  }

  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() => tf.reshape(this.embed(x, ctx), [x.shape[0], 1, 1, 1, this.embedDim]));
  }

  dispose(): void {
    this.encoder.dispose();
    for (const v of this.head.values()) v.dispose();
  }
}

export function vocoPrimusEntry(preset: VoCoPrimusPreset): ArchitectureEntry {
  return {
    key: preset.key,
    family: "vit",
    description: preset.description,
    create: (opts) => new VoCoPrimusNetwork(preset, opts),
    countParams: (opts) => {
      const { encoderOpts, headDim } = splitPrimusOptions(preset, opts);
      const r = resolvePrimus(evaPreset(preset.encoderKey), encoderOpts);
      return (
        countDecls(declarePrimus(r, true).filter((d) => ENCODER_ONLY(d.name))) +
        countDecls(declareHead(r.hyper.embedDim, headDim))
      );
    },
  };
}
