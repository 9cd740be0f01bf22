/**
 * nnssl's `SwinUNETRArchitecture` (`src/nnssl/architectures/swinunetr_architecture.py`): the SwinUNETR pre-text-task
 * heads on a ResEnc encoder.
 *
 * - Encoder: upstream's `ResidualEncoder` (stem + stages, keys under `encoder.`), i.e. what
 *   `get_network_by_name(..., encoder_only=True)` is meant to return (upstream crashes there,
 *   `src/nnssl/architectures/get_network_by_name.py`).
 * - The bottleneck [B,g0,g1,g2,C] is flattened to tokens in C-order over (X,Y,Z) (upstream
 *   `flatten(2, 4).transpose(1, 2)`); `rotation_proj_head` = Linear(C→4) on token 0, `contrast_proj_head` =
 *   Linear(C→512) on token 1.
 * - `recon_proj_head` (an nn.Sequential upstream, so its parameters are numbered by module position): for each
 *   encoder stage in reverse order, Conv3d(k3, pad 1) to the next width (the final one to the output channels) and,
 *   when that stage had stride 2, InstanceNorm3d (affine=False, eps 1e-5) → LeakyReLU(0.01) → trilinear ×2
 *   upsampling (align_corners=False). ResEnc-L: 320→320→256→128→64→32→1, five upsamplings, 5³ → 160³.
 *
 * `apply` returns the reconstruction; `forwardPretext` returns all three heads' outputs from one encoder pass.
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
import { conv3d, instanceNormLeakyRelu, linear, upsampleTrilinear2x } from "./ops/index.js";
import { countDecls, DeclBuilder, instantiate, param, type ParamDecl } from "./params.js";
import { declarePrimus, Primus, resolvePrimus, type PrimusPreset } from "./primus.js";
import { declareResEnc, resolveResEnc, ResEncUNet, type ResEncHyper, type ResEncPreset } from "./resenc-unet.js";

/** Width of the contrastive embedding (upstream `nn.Linear(C, 512)`). */
export const CONTRAST_DIM = 512;
/** Rotation classes k·90°, k = 0..3. */
export const ROTATION_CLASSES = 4;

export interface PretextOutputs {
  /** [B,4] rotation logits (token 0). */
  readonly rotation: tf.Tensor2D;
  /** [B,512] contrastive embedding (token 1), not normalised. */
  readonly contrast: tf.Tensor2D;
  /** [B,X,Y,Z,Cout] reconstruction (linear output). */
  readonly reconstruction: tf.Tensor5D;
}

/** A network with the SwinUNETR pre-text heads. */
export interface PretextNetwork extends Network {
  forwardPretext(x: tf.Tensor5D, ctx: ForwardContext): PretextOutputs;
}

export function isPretextNetwork(n: Network): n is PretextNetwork {
  return typeof (n as Partial<PretextNetwork>).forwardPretext === "function";
}

interface ReconLayer {
  /** Module index in upstream's nn.Sequential (state-dict name `recon_proj_head.<index>.weight`). */
  readonly index: number;
  readonly cin: number;
  readonly cout: number;
  /** InstanceNorm → LeakyReLU → ×2 upsampling after the conv. */
  readonly upsample: boolean;
}

/** Upstream `_create_recon_proj_head(out, widths, strides)`: one conv per width step, + norm/act/upsample at stride 2. */
function headLayers(widths: readonly number[], strides: readonly number[]): ReconLayer[] {
  const out: ReconLayer[] = [];
  let index = 0;
  for (let i = 0; i < widths.length - 1; i++) {
    const upsample = strides[i]! > 1;
    out.push({ index, cin: widths[i]!, cout: widths[i + 1]!, upsample });
    index += upsample ? 4 : 1; // Conv3d [, InstanceNorm3d, LeakyReLU, Upsample]
  }
  return out;
}

/** The reconstruction head's layers on a ResEnc encoder (the reversed stages). */
export function reconLayers(h: ResEncHyper, outChannels: number): ReconLayer[] {
  return headLayers([...h.features].reverse().concat([outChannels]), [...h.strides].reverse());
}

/** The reconstruction head's layers on an Eva encoder: widths C, C/2, ..., C/2^n (n = log2 token patch), then out. */
export function evaReconLayers(embedDim: number, tokenPatch: number, outChannels: number): ReconLayer[] {
  const n = Math.round(Math.log2(tokenPatch));
  const widths = Array.from({ length: n + 1 }, (_, i) => Math.floor(embedDim / 2 ** i)).concat([outChannels]);
  return headLayers(widths, [...Array<number>(n).fill(2), 1]);
}

/** The three heads' parameters, in upstream's registration order. */
function declareHeads(width: number, layers: readonly ReconLayer[]): ParamDecl[] {
  const b = new DeclBuilder();
  b.linear("rotation_proj_head", width, ROTATION_CLASSES, true);
  b.linear("contrast_proj_head", width, CONTRAST_DIM, true);
  for (const l of layers) b.conv(`recon_proj_head.${l.index}`, l.cin, l.cout, 3, true);
  return b.decls;
}

/** Encoder (upstream ResidualEncoder under `encoder.`) then the three heads, in upstream's registration order. */
export function declareSwinPretext(h: ResEncHyper, inChannels: number, outChannels: number): ParamDecl[] {
  return [
    ...declareResEnc(h, inChannels, outChannels, true),
    ...declareHeads(h.features[h.features.length - 1]!, reconLayers(h, outChannels)),
  ];
}

/** The heads on a feature grid [B,g0,g1,g2,C] (tokens in C-order over the grid). */
function runHeads(
  weights: ReadonlyMap<string, tf.Variable>,
  layers: readonly ReconLayer[],
  z: tf.Tensor5D,
): PretextOutputs {
  return tf.tidy(() => {
    const [B, g0, g1, g2, C] = z.shape;
    if (g0 * g1 * g2 < 2) {
      throw new ConfigError(
        `the bottleneck has ${g0 * g1 * g2} token(s); the rotation and contrastive heads need 2 (use a larger patch)`,
        { field: "patchSize" },
      );
    }
    const tokens = tf.reshape<tf.Rank.R3>(z, [B, g0 * g1 * g2, C]);
    const t0 = tf.reshape<tf.Rank.R2>(tf.slice(tokens, [0, 0, 0], [B, 1, C]), [B, C]);
    const t1 = tf.reshape<tf.Rank.R2>(tf.slice(tokens, [0, 1, 0], [B, 1, C]), [B, C]);
    const rotation = linear(t0, param(weights, "rotation_proj_head.weight"), param(weights, "rotation_proj_head.bias"));
    const contrast = linear(t1, param(weights, "contrast_proj_head.weight"), param(weights, "contrast_proj_head.bias"));
    return { rotation, contrast, reconstruction: reconstruct(weights, layers, z) };
  });
}

function reconstruct(
  weights: ReadonlyMap<string, tf.Variable>,
  layers: readonly ReconLayer[],
  z: tf.Tensor5D,
): tf.Tensor5D {
  return tf.tidy(() => {
    let h = z;
    for (const l of layers) {
      const name = `recon_proj_head.${l.index}`;
      h = conv3d(h, param(weights, `${name}.weight`), { bias: param(weights, `${name}.bias`) });
      if (l.upsample) {
        // InstanceNorm3d(affine=False) = affine with γ = 1, β = 0
        h = upsampleTrilinear2x(instanceNormLeakyRelu(h, tf.ones([l.cout]), tf.zeros([l.cout]), 1e-5, 0.01));
      }
    }
    return h;
  });
}

function resolve(preset: ResEncPreset, opts: CreateNetworkOptions): ReturnType<typeof resolveResEnc> {
  if (opts.encoderOnly !== undefined && opts.encoderOnly !== true) {
    throw new ConfigError(
      "the SwinUNETR pre-text network always uses the encoder only (encoderOnly must be true or absent)",
      { field: "encoderOnly" },
    );
  }
  return resolveResEnc(preset, { ...opts, encoderOnly: true });
}

export class SwinPretextResEnc implements PretextNetwork {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly declarations: readonly ParamDecl[];
  private readonly encoder: ResEncUNet;
  private readonly heads: Map<string, tf.Variable>;
  private readonly layers: ReconLayer[];

  constructor(key: string, preset: ResEncPreset, opts: CreateNetworkOptions) {
    const r = resolve(preset, opts);
    this.encoder = new ResEncUNet(preset, { ...opts, encoderOnly: true });
    const headDecls = declareSwinPretext(r.hyper, r.inChannels, r.outChannels).slice(this.encoder.declarations.length);
    this.heads = instantiate(headDecls, r.seed);
    this.declarations = [...this.encoder.declarations, ...headDecls];
    this.weights = new Map([...this.encoder.weights, ...this.heads]);
    this.layers = reconLayers(r.hyper, r.outChannels);
    // hyper carries encoderOnly: true (the ResEnc part has no U-Net decoder: no `decoder.encoder.*` aliases)
    this.config = { ...this.encoder.config, name: key };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D[] {
    return this.encoder.encode(x, ctx);
  }

  forwardPretext(x: tf.Tensor5D, ctx: ForwardContext): PretextOutputs {
    return tf.tidy(() => {
      const stages = this.encode(x, ctx);
      const o = runHeads(this.weights, this.layers, stages[stages.length - 1]!);
      return { rotation: o.rotation, contrast: o.contrast, reconstruction: o.reconstruction };
    });
  }

  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() => {
      const stages = this.encode(x, ctx);
      return reconstruct(this.weights, this.layers, stages[stages.length - 1]!);
    });
  }

  dispose(): void {
    this.encoder.dispose();
    for (const v of this.heads.values()) v.dispose();
  }
}

/** Registry entry `swin-pretext-<resenc preset key>` (e.g. `swin-pretext-resenc-l`). */
export function swinPretextEntry(preset: ResEncPreset): ArchitectureEntry {
  const key = `swin-pretext-${preset.key}`;
  return {
    key,
    family: "cnn",
    description: `SwinUNETR pre-text heads (rotation, contrastive, reconstruction) on the ${preset.key} encoder`,
    create: (opts) => new SwinPretextResEnc(key, preset, opts),
    countParams: (opts) => {
      const r = resolve(preset, opts);
      return countDecls(declareSwinPretext(r.hyper, r.inChannels, r.outChannels));
    },
  };
}

/**
 * nnssl's `SwinUNETREvaArchitecture`: the heads on an EvaMAE encoder without decoder and without up-projection
 * (`decoder_eva_depth=0`, `do_up_projection=False`, no token dropping). Its parameters sit under `encoder.`
 * (`encoder.down_projection.proj`, `encoder.eva.*`, `encoder.mask_token`, unused as upstream); the encoder's tokens
 * are put back on their grid [B,g0,g1,g2,C] (token order of ADR 0006) and feed the same heads, with the
 * reconstruction widths C, C/2, ..., C/2^n, out and n = log2(token patch) upsamplings (Primus-M: 864→432→216→108→1,
 * 20³ → 160³).
 */
export class SwinPretextEva implements PretextNetwork {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly declarations: readonly ParamDecl[];
  private readonly encoder: Primus;
  private readonly heads: Map<string, tf.Variable>;
  private readonly layers: ReconLayer[];

  constructor(key: string, preset: PrimusPreset, opts: CreateNetworkOptions) {
    const o = evaOpts(opts);
    const r = resolvePrimus(preset, o);
    this.encoder = new Primus(preset, o);
    const enc = this.encoder.declarations.filter((d) => !d.name.startsWith("up_projection."));
    this.layers = evaReconLayers(r.hyper.embedDim, r.hyper.tokenPatch, r.outChannels);
    const headDecls = declareHeads(r.hyper.embedDim, this.layers);
    this.heads = instantiate(headDecls, r.seed);
    this.declarations = [...enc.map((d) => ({ ...d, name: `encoder.${d.name}` })), ...headDecls];
    this.weights = new Map([
      ...enc.map((d) => [`encoder.${d.name}`, this.encoder.weights.get(d.name)!] as const),
      ...this.heads,
    ]);
    const a = this.encoder.config.adaptation;
    this.config = {
      ...this.encoder.config,
      name: key,
      adaptation: {
        ...a,
        keyToEncoder: "encoder.eva",
        keyToStem: "encoder.down_projection",
        keysToInProj: ["encoder.down_projection.proj"],
        keyToLpe: "encoder.eva.pos_embed",
      },
    };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor3D {
    return this.encoder.encode(x, ctx);
  }

  /** Encoder tokens back on the token grid, [B,g0,g1,g2,C]. */
  private grid(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() => {
      const t = this.encode(x, ctx);
      const [g0, g1, g2] = this.encoder.tokenGrid;
      const [B, , C] = t.shape;
      if (this.encoder.tokenIndex(0, 1, 0) === g2) return tf.reshape<tf.Rank.R5>(t, [B, g0, g1, g2, C]); // C-order (w h d)
      return tf.transpose<tf.Tensor5D>(tf.reshape(t, [B, g1, g0, g2, C]), [0, 2, 1, 3, 4]); // (h w d)
    });
  }

  forwardPretext(x: tf.Tensor5D, ctx: ForwardContext): PretextOutputs {
    return tf.tidy(() => {
      const o = runHeads(this.weights, this.layers, this.grid(x, ctx));
      return { rotation: o.rotation, contrast: o.contrast, reconstruction: o.reconstruction };
    });
  }

  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() => reconstruct(this.weights, this.layers, this.grid(x, ctx)));
  }

  dispose(): void {
    this.encoder.dispose();
    for (const v of this.heads.values()) v.dispose();
  }
}

function evaOpts(opts: CreateNetworkOptions): CreateNetworkOptions {
  if (opts.decoderDepth !== undefined && opts.decoderDepth !== 0) {
    throw new ConfigError(
      "the SwinUNETR pre-text network on Primus has no MAE decoder (decoderDepth must be 0 or absent)",
      { field: "decoderDepth" },
    );
  }
  return { ...opts, decoderDepth: 0 };
}

/** Registry entry `swin-pretext-primus-<size>` from the EvaMAE preset `eva-mae-<size>`. */
export function swinPretextEvaEntry(preset: PrimusPreset): ArchitectureEntry {
  const key = `swin-pretext-${preset.key.replace(/^eva-mae-/, "primus-")}`;
  return {
    key,
    family: "vit",
    description: `SwinUNETR pre-text heads (rotation, contrastive, reconstruction) on the ${preset.key} encoder (no decoder)`,
    create: (opts) => new SwinPretextEva(key, preset, opts),
    countParams: (opts) => {
      const o = evaOpts(opts);
      const r = resolvePrimus(preset, o);
      const enc = declarePrimus(r, true).filter((d) => !d.name.startsWith("up_projection."));
      return (
        countDecls(enc) +
        countDecls(declareHeads(r.hyper.embedDim, evaReconLayers(r.hyper.embedDim, r.hyper.tokenPatch, r.outChannels)))
      );
    },
  };
}
