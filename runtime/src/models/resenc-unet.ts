/**
 * ResidualEncoderUNet of dynamic-network-architectures (`dynamic_network_architectures/architectures/unet.py`; nnssl's
 * ResEnc-L), channels-last.
 *
 * Stem: one conv unit (conv3 → InstanceNorm → LeakyReLU). Encoder stages of BasicBlockD (ResNet-D) blocks: main
 * path unit(conv3, stride s) → conv3 + IN; skip = identity, or AvgPool(s) and/or 1×1×1 conv (no bias) + IN;
 * output LeakyReLU(main + skip). Decoder: per stage ConvTranspose(k=s=stride) → concat(upsampled, skip) → conv
 * units; one 1×1×1 seg layer per decoder stage, only the last is used (no deep supervision).
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type {
  ArchitectureEntry,
  CreateNetworkOptions,
  ForwardContext,
  Network,
  NetworkConfig,
  Vec3,
} from "./architecture.js";
import {
  addLeakyRelu,
  concatChannels,
  conv3d,
  convTranspose3d,
  instanceNorm,
  instanceNormLeakyRelu,
} from "./ops/index.js";
import { countDecls, DeclBuilder, instantiate, param, type ParamDecl } from "./params.js";

export interface ResEncHyper {
  readonly features: readonly number[];
  readonly blocks: readonly number[];
  readonly strides: readonly number[];
  readonly decoderConvs: readonly number[];
  readonly stemChannels: number;
  readonly kernel: number;
}

export interface ResEncPreset {
  readonly key: string;
  readonly description: string;
  readonly archClassName: string | null;
  readonly hyper: ResEncHyper;
  readonly patchSize: Vec3;
  /** Which hyper-parameters may be overridden. */
  readonly overridable: boolean;
}

export const RESENC_L: ResEncPreset = {
  key: "resenc-l",
  description: "ResEnc-L (nnssl CNN backbone): 6 stages 32-320 features, 1/3/4/6/6/6 residual blocks",
  archClassName: "ResEncL",
  hyper: {
    features: [32, 64, 128, 256, 320, 320],
    blocks: [1, 3, 4, 6, 6, 6],
    strides: [1, 2, 2, 2, 2, 2],
    decoderConvs: [1, 1, 1, 1, 1],
    stemChannels: 32,
    kernel: 3,
  },
  patchSize: [160, 160, 160],
  overridable: false,
};

export const RESENC_XS: ResEncPreset = {
  key: "resenc-xs",
  description: "small ResidualEncoderUNet built by the same code (tests, CPU runs): 4 stages 8-64 features",
  archClassName: null,
  hyper: {
    features: [8, 16, 32, 64],
    blocks: [1, 1, 1, 1],
    strides: [1, 2, 2, 2],
    decoderConvs: [1, 1, 1],
    stemChannels: 8,
    kernel: 3,
  },
  patchSize: [32, 32, 32],
  overridable: true,
};

/**
 * The encoder's primitive ops. `name` is the module's state-dict prefix (for tracing). DENSE_OPS are the fused
 * fast paths (conv3d, instanceNorm(+LeakyReLU) in one kernel on cpu + native, add+LeakyReLU).
 */
export interface EncoderOps {
  conv(x: tf.Tensor5D, w: tf.Tensor5D, bias: tf.Tensor1D | undefined, stride: number, name: string): tf.Tensor5D;
  /** InstanceNorm (affine), followed by LeakyReLU(0.01) when `act`. */
  norm(x: tf.Tensor5D, gamma: tf.Tensor1D, beta: tf.Tensor1D, act: boolean, name: string): tf.Tensor5D;
  avgPool(x: tf.Tensor5D, stride: number, name: string): tf.Tensor5D;
  /** Residual sum and LeakyReLU(0.01). */
  addAct(h: tf.Tensor5D, skip: tf.Tensor5D, name: string): tf.Tensor5D;
}

export const DENSE_OPS: EncoderOps = {
  conv: (x, w, bias, stride) => conv3d(x, w, { stride, bias }),
  norm: (x, g, b, act) => (act ? instanceNormLeakyRelu(x, g, b, 1e-5, 0.01) : instanceNorm(x, g, b, 1e-5)),
  avgPool: (x, stride) => tf.avgPool3d(x, stride, stride, "valid"),
  addAct: (h, skip) => addLeakyRelu(h, skip),
};

function intList(v: unknown, field: string): number[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => Number.isInteger(x) && (x as number) > 0)) {
    throw new ConfigError(`must be a non-empty list of positive integers, got ${JSON.stringify(v)}`, { field });
  }
  return v as number[];
}

const KNOWN_OPTS = new Set([
  "inChannels",
  "outChannels",
  "patchSize",
  "seed",
  "features",
  "blocks",
  "strides",
  "decoderConvs",
  "stemChannels",
  "encoderOnly",
]);

export function resolveResEnc(
  preset: ResEncPreset,
  opts: CreateNetworkOptions,
): {
  hyper: ResEncHyper;
  inChannels: number;
  outChannels: number;
  patchSize: Vec3;
  seed: number;
  encoderOnly: boolean;
} {
  for (const k of Object.keys(opts)) {
    if (!KNOWN_OPTS.has(k)) throw new ConfigError(`unknown option "${k}" for architecture ${preset.key}`, { field: k });
    if (k === "encoderOnly") continue;
    const fixed = (preset.hyper as unknown as Record<string, unknown>)[k];
    if (
      !preset.overridable &&
      fixed !== undefined &&
      opts[k] !== undefined &&
      JSON.stringify(opts[k]) !== JSON.stringify(fixed)
    ) {
      throw new ConfigError(`${preset.key} is a fixed preset; use resenc-xs to change "${k}"`, { field: k });
    }
  }
  const features = opts.features === undefined ? [...preset.hyper.features] : intList(opts.features, "features");
  const n = features.length;
  const blocks =
    opts.blocks === undefined
      ? n === preset.hyper.features.length
        ? [...preset.hyper.blocks]
        : Array<number>(n).fill(1)
      : intList(opts.blocks, "blocks");
  const strides: number[] =
    opts.strides === undefined
      ? n === preset.hyper.features.length
        ? [...preset.hyper.strides]
        : [1, ...Array<number>(n - 1).fill(2)]
      : intList(opts.strides, "strides");
  const decoderConvs =
    opts.decoderConvs === undefined ? Array<number>(n - 1).fill(1) : intList(opts.decoderConvs, "decoderConvs");
  const stemChannels = opts.stemChannels === undefined ? features[0]! : (opts.stemChannels as number);
  if (blocks.length !== n) throw new ConfigError(`needs ${n} entries (one per stage)`, { field: "blocks" });
  if (strides.length !== n) throw new ConfigError(`needs ${n} entries (one per stage)`, { field: "strides" });
  if (decoderConvs.length !== n - 1)
    throw new ConfigError(`needs ${n - 1} entries (stages - 1)`, { field: "decoderConvs" });
  if (strides.some((s) => s !== 1 && s !== 2)) throw new ConfigError("strides must be 1 or 2", { field: "strides" });
  const patchSize = opts.patchSize ?? preset.patchSize;
  const total = strides.reduce((a, b) => a * b, 1);
  if (
    (patchSize as readonly number[]).length !== 3 ||
    !patchSize.every((p) => Number.isInteger(p) && p > 0 && p % total === 0)
  ) {
    throw new ConfigError(
      `must be 3 positive integers divisible by the total stride ${total}, got ${JSON.stringify(patchSize)}`,
      { field: "patchSize" },
    );
  }
  return {
    hyper: { features, blocks, strides, decoderConvs, stemChannels, kernel: 3 },
    inChannels: opts.inChannels ?? 1,
    outChannels: opts.outChannels ?? 1,
    patchSize: [patchSize[0], patchSize[1], patchSize[2]],
    seed: opts.seed ?? 0,
    encoderOnly: encoderOnlyOpt(opts.encoderOnly),
  };
}

function encoderOnlyOpt(v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== "boolean")
    throw new ConfigError(`must be true or false, got ${JSON.stringify(v)}`, { field: "encoderOnly" });
  return v;
}

function unitDecl(b: DeclBuilder, name: string, cin: number, cout: number, k: number, bias: boolean): void {
  b.conv(`${name}.conv`, cin, cout, k, bias);
  b.norm(`${name}.norm`, cout);
}

/** Parameters in upstream's order; `encoderOnly`: upstream's `ResidualEncoder` under the `encoder.` prefix (no decoder). */
export function declareResEnc(
  h: ResEncHyper,
  inChannels: number,
  outChannels: number,
  encoderOnly = false,
): ParamDecl[] {
  const b = new DeclBuilder();
  const k = h.kernel;
  unitDecl(b, "encoder.stem.convs.0", inChannels, h.stemChannels, k, true);
  let cin = h.stemChannels;
  h.features.forEach((cout, s) => {
    for (let j = 0; j < h.blocks[s]!; j++) {
      const p = `encoder.stages.${s}.blocks.${j}`;
      const bi = j === 0 ? cin : cout;
      const stride = j === 0 ? h.strides[s]! : 1;
      unitDecl(b, `${p}.conv1`, bi, cout, k, true);
      unitDecl(b, `${p}.conv2`, cout, cout, k, true);
      if (bi !== cout) unitDecl(b, `${p}.skip.${stride !== 1 ? 1 : 0}`, bi, cout, 1, false);
    }
    cin = cout;
  });
  const n = h.features.length;
  if (encoderOnly) return b.decls;
  // PyTorch registers decoder.stages before decoder.transpconvs; order is irrelevant to us but kept for readability
  for (let s = 0; s < n - 1; s++) {
    const skipC = h.features[n - 2 - s]!;
    for (let c = 0; c < h.decoderConvs[s]!; c++)
      unitDecl(b, `decoder.stages.${s}.convs.${c}`, c === 0 ? 2 * skipC : skipC, skipC, k, true);
  }
  for (let s = 0; s < n - 1; s++)
    b.convT(`decoder.transpconvs.${s}`, h.features[n - 1 - s]!, h.features[n - 2 - s]!, h.strides[n - 1 - s]!, true);
  for (let s = 0; s < n - 1; s++) b.conv(`decoder.seg_layers.${s}`, h.features[n - 2 - s]!, outChannels, 1, true);
  return b.decls;
}

export class ResEncUNet implements Network {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  private readonly h: ResEncHyper;
  readonly declarations: readonly ParamDecl[];
  /** Encoder only (stem + stages, upstream `ResidualEncoder` keys under `encoder.`): `encode` works, `apply` throws. */
  readonly encoderOnly: boolean;

  constructor(preset: ResEncPreset, opts: CreateNetworkOptions) {
    const r = resolveResEnc(preset, opts);
    this.h = r.hyper;
    this.encoderOnly = r.encoderOnly;
    this.declarations = declareResEnc(r.hyper, r.inChannels, r.outChannels, r.encoderOnly);
    this.weights = instantiate(this.declarations, r.seed);
    this.config = {
      name: preset.key,
      family: "cnn",
      inChannels: r.inChannels,
      outChannels: r.outChannels,
      patchSize: r.patchSize,
      seed: r.seed,
      hyper: {
        features: r.hyper.features,
        blocks: r.hyper.blocks,
        strides: r.hyper.strides,
        decoderConvs: r.hyper.decoderConvs,
        stemChannels: r.hyper.stemChannels,
        ...(r.encoderOnly ? { encoderOnly: true } : {}),
      },
      adaptation: {
        archClassName: preset.archClassName ?? "ResidualEncoderUNet",
        archKwargs:
          preset.archClassName !== null
            ? null
            : {
                n_stages: r.hyper.features.length,
                features_per_stage: r.hyper.features,
                conv_op: "torch.nn.modules.conv.Conv3d",
                kernel_sizes: r.hyper.features.map(() => [3, 3, 3]),
                strides: r.hyper.strides.map((s) => [s, s, s]),
                n_blocks_per_stage: r.hyper.blocks,
                n_conv_per_stage_decoder: r.hyper.decoderConvs,
                conv_bias: true,
                norm_op: "torch.nn.modules.instancenorm.InstanceNorm3d",
                norm_op_kwargs: { eps: 1e-5, affine: true },
                dropout_op: null,
                dropout_op_kwargs: null,
                nonlin: "torch.nn.LeakyReLU",
                nonlin_kwargs: { inplace: true },
              },
        archKwargsRequiringImport:
          preset.archClassName !== null ? null : ["conv_op", "norm_op", "dropout_op", "nonlin"],
        keyToEncoder: "encoder.stages",
        keyToStem: "encoder.stem",
        keysToInProj: ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
        keyToLpe: null,
      },
    };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    return param<R>(this.weights, name);
  }

  private unit(x: tf.Tensor5D, name: string, stride: number, act: boolean, ops: EncoderOps = DENSE_OPS): tf.Tensor5D {
    const bias = this.weights.has(`${name}.conv.bias`) ? this.p<tf.Rank.R1>(`${name}.conv.bias`) : undefined;
    const y = ops.conv(x, this.p(`${name}.conv.weight`), bias, stride, `${name}.conv`);
    return ops.norm(
      y,
      this.p<tf.Rank.R1>(`${name}.norm.weight`),
      this.p<tf.Rank.R1>(`${name}.norm.bias`),
      act,
      `${name}.norm`,
    );
  }

  private block(x: tf.Tensor5D, p: string, stride: number, cin: number, cout: number, ops: EncoderOps): tf.Tensor5D {
    return tf.tidy(() => this.blockInner(x, p, stride, cin, cout, ops));
  }

  private blockInner(
    x: tf.Tensor5D,
    p: string,
    stride: number,
    cin: number,
    cout: number,
    ops: EncoderOps,
  ): tf.Tensor5D {
    let skip = x;
    if (stride !== 1) skip = ops.avgPool(skip, stride, `${p}.skip.0`);
    if (cin !== cout) skip = this.unit(skip, `${p}.skip.${stride !== 1 ? 1 : 0}`, 1, false, ops);
    const h = this.unit(this.unit(x, `${p}.conv1`, stride, true, ops), `${p}.conv2`, 1, false, ops);
    return ops.addAct(h, skip, p);
  }

  private checkInput(x: tf.Tensor5D): void {
    const total = this.h.strides.reduce((a, b) => a * b, 1);
    if (x.shape[4] !== this.config.inChannels)
      throw new ConfigError(`input has ${x.shape[4]} channels, ${this.config.name} expects ${this.config.inChannels}`, {
        field: "inChannels",
      });
    if (![1, 2, 3].every((i) => x.shape[i]! % total === 0))
      throw new ConfigError(`input spatial size ${x.shape.slice(1, 4).join("x")} not divisible by ${total}`, {
        field: "patchSize",
      });
  }

  encode(x: tf.Tensor5D, _ctx: ForwardContext): tf.Tensor5D[] {
    return this.encodeWith(x, DENSE_OPS);
  }

  /**
   * The encoder walk with its primitive ops supplied by the caller (the SparK wrapper masks every op's output,
   * spark.ts); `encode` passes the dense (fused) ops. Stage outputs, highest resolution first.
   */
  encodeWith(x: tf.Tensor5D, ops: EncoderOps): tf.Tensor5D[] {
    this.checkInput(x);
    // returned from tidy (not tf.keep) so that an enclosing tidy still owns them
    return tf.tidy(() => {
      const outs: tf.Tensor5D[] = [];
      let hcur = this.unit(x, "encoder.stem.convs.0", 1, true, ops);
      let cin = this.h.stemChannels;
      this.h.features.forEach((cout, s) => {
        for (let j = 0; j < this.h.blocks[s]!; j++) {
          hcur = this.block(
            hcur,
            `encoder.stages.${s}.blocks.${j}`,
            j === 0 ? this.h.strides[s]! : 1,
            j === 0 ? cin : cout,
            cout,
            ops,
          );
        }
        cin = cout;
        outs.push(hcur);
      });
      return outs;
    });
  }

  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    if (this.encoderOnly)
      throw new ConfigError(`${this.config.name} was built with encoderOnly: it has no decoder (use encode())`, {
        field: "encoderOnly",
      });
    return tf.tidy(() => this.decode(this.encode(x, ctx)));
  }

  /** The U-Net decoder on stage outputs (highest resolution first, as `encode` returns them) → [B,D,H,W,Cout]. */
  decode(skips: readonly tf.Tensor5D[]): tf.Tensor5D {
    if (this.encoderOnly)
      throw new ConfigError(`${this.config.name} was built with encoderOnly: it has no decoder`, {
        field: "encoderOnly",
      });
    const n = skips.length;
    if (n !== this.h.features.length) throw new Error(`decode: ${n} skips for ${this.h.features.length} stages`);
    return tf.tidy(() => {
      let lres = skips[n - 1]!;
      for (let s = 0; s < n - 1; s++) {
        const up = convTranspose3d(
          lres,
          this.p(`decoder.transpconvs.${s}.weight`),
          this.p(`decoder.transpconvs.${s}.bias`),
        );
        let h = concatChannels([up, skips[n - 2 - s]!]);
        for (let c = 0; c < this.h.decoderConvs[s]!; c++) h = this.unit(h, `decoder.stages.${s}.convs.${c}`, 1, true);
        lres = h;
      }
      const last = n - 2;
      return conv3d(lres, this.p(`decoder.seg_layers.${last}.weight`), {
        bias: this.p(`decoder.seg_layers.${last}.bias`),
      });
    });
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}

export function resencEntry(preset: ResEncPreset): ArchitectureEntry {
  return {
    key: preset.key,
    family: "cnn",
    description: preset.description,
    create: (opts) => new ResEncUNet(preset, opts),
    countParams: (opts) => {
      const r = resolveResEnc(preset, opts);
      return countDecls(declareResEnc(r.hyper, r.inChannels, r.outChannels, r.encoderOnly));
    },
  };
}
