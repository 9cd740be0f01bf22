/**
 * Primus (EVA-style 3-D ViT of dynamic-network-architectures, `dynamic_network_architectures/architectures/primus.py`)
 * and the EvaMAE pre-training wrapper of nnssl (`src/nnssl/architectures/evaMAE_module.py`), channels-last.
 *
 * Patch embedding (conv k=s=tokenPatch, as one matMul over patchified input) → tokens flattened in `(w h d)`
 * order (array axes 0,1,2 row-major) → + learned pos_embed → EVA blocks (pre-norm; q/k/v projections, k without
 * bias; 3-D RoPE on q,k with interleaved pairs; inner attention LayerNorm; layer scale; SwiGLU MLP with inner
 * LayerNorm; drop path linspace(0, rate, depth)) → final LayerNorm → PatchDecode (ConvTranspose k2s2 →
 * LayerNormNd(eps 1e-6) → GELU, ..., last ConvTranspose without norm).
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type {
  ArchitectureEntry,
  CreateNetworkOptions,
  ForwardContext,
  MaskedForwardOptions,
  MaskedForwardResult,
  MaskedNetwork,
  Network,
  NetworkConfig,
  Vec3,
} from "./architecture.js";
import { gatherRows, scatterRows } from "./gather-rows.js";
import {
  addBias,
  convTranspose3d,
  dropPath,
  gelu,
  layerNorm,
  linear,
  mm,
  multiHeadAttention,
  silu,
  type Rope,
} from "./ops/index.js";
import { countDecls, DeclBuilder, instantiate, param, type ParamDecl, CONV_PERM } from "./params.js";
import { Rng } from "./rng.js";

export interface PrimusHyper {
  readonly embedDim: number;
  readonly depth: number;
  readonly heads: number;
  readonly tokenPatch: number;
  readonly dropPathRate: number;
  readonly initValues: number;
  /** EvaMAE only: decoder Eva depth (0 = no decoder). */
  readonly decoderDepth: number;
  /** EvaMAE only: token flattening order, see docs/decisions/0006-evamae-token-order.md. */
  readonly tokenOrder: "whd" | "hwd";
}

export interface PrimusPreset {
  readonly key: string;
  readonly description: string;
  readonly archClassName: string;
  readonly hyper: PrimusHyper;
  readonly patchSize: Vec3;
  readonly mae: boolean;
  readonly overridable: boolean;
}

const SIZES = { s: [396, 12, 6], b: [792, 12, 12], m: [864, 16, 12], l: [1056, 24, 16] } as const;

function preset(size: keyof typeof SIZES, mae: boolean): PrimusPreset {
  const [embedDim, depth, heads] = SIZES[size];
  return {
    key: mae ? `eva-mae-${size}` : `primus-${size}`,
    description: mae
      ? `EvaMAE pre-training wrapper around Primus-${size.toUpperCase()} (token dropping, 2-block decoder)`
      : `Primus-${size.toUpperCase()} (EVA ViT, embed ${embedDim}, depth ${depth}, ${heads} heads, 8³ tokens)`,
    archClassName: `Primus${size.toUpperCase()}`,
    hyper: {
      embedDim,
      depth,
      heads,
      tokenPatch: 8,
      dropPathRate: 0.2,
      initValues: 0.1,
      decoderDepth: mae ? 2 : 0,
      tokenOrder: "whd",
    },
    patchSize: [160, 160, 160],
    mae,
    overridable: false,
  };
}

function xsPreset(mae: boolean): PrimusPreset {
  return {
    key: mae ? "eva-mae-xs" : "primus-xs",
    description: mae
      ? "small EvaMAE (tests, CPU runs)"
      : "small Primus built by the same code (tests, CPU runs): embed 48, depth 2, 2 heads",
    archClassName: "PrimusXS",
    hyper: {
      embedDim: 48,
      depth: 2,
      heads: 2,
      tokenPatch: 8,
      dropPathRate: 0.2,
      initValues: 0.1,
      decoderDepth: mae ? 2 : 0,
      tokenOrder: "whd",
    },
    patchSize: [32, 32, 32],
    mae,
    overridable: true,
  };
}

export const PRIMUS_PRESETS: readonly PrimusPreset[] = [
  preset("s", false),
  preset("b", false),
  preset("m", false),
  preset("l", false),
  xsPreset(false),
  preset("m", true),
  xsPreset(true),
];

/** Upstream `Primus.__init__` keyword arguments of a configurable preset (adaptation plan `arch_kwargs`). */
export function primusInitKwargs(h: PrimusHyper): Record<string, unknown> {
  return {
    embed_dim: h.embedDim,
    patch_embed_size: [h.tokenPatch, h.tokenPatch, h.tokenPatch],
    encoder_eva_depth: h.depth,
    encoder_eva_numheads: h.heads,
    drop_path_rate: h.dropPathRate,
    init_values: h.initValues,
    scale_attn_inner: true,
  };
}

const HYPER_KEYS = [
  "embedDim",
  "depth",
  "heads",
  "tokenPatch",
  "dropPathRate",
  "initValues",
  "decoderDepth",
  "tokenOrder",
] as const;
const ALWAYS_OK = new Set(["inChannels", "outChannels", "patchSize", "seed", "dropPathRate", "tokenOrder"]);

interface Resolved {
  hyper: PrimusHyper;
  inChannels: number;
  outChannels: number;
  patchSize: Vec3;
  seed: number;
}

export function resolvePrimus(p: PrimusPreset, opts: CreateNetworkOptions): Resolved {
  const h: Record<string, unknown> = { ...p.hyper };
  for (const [k, v] of Object.entries(opts)) {
    if (v === undefined) continue;
    if (!ALWAYS_OK.has(k) && !(HYPER_KEYS as readonly string[]).includes(k))
      throw new ConfigError(`unknown option "${k}" for architecture ${p.key}`, { field: k });
    if ((HYPER_KEYS as readonly string[]).includes(k)) {
      // the decoder depth is a property of the pre-training wrapper, not of the Primus size: EvaMAE presets accept it
      // (Models Genesis on Primus = EvaMAE without decoder, nnssl `ModelsGenesisEvaTrainer.py`)
      const wrapperOption = p.mae && k === "decoderDepth";
      if (!p.overridable && !ALWAYS_OK.has(k) && !wrapperOption && JSON.stringify(v) !== JSON.stringify(h[k]))
        throw new ConfigError(`${p.key} is a fixed preset; use primus-xs to change "${k}"`, { field: k });
      h[k] = v;
    }
  }
  const hyper = h as unknown as PrimusHyper;
  const hd = hyper.embedDim / hyper.heads;
  if (!Number.isInteger(hd))
    throw new ConfigError(`embedDim ${hyper.embedDim} not divisible by heads ${hyper.heads}`, { field: "heads" });
  const ropeDim = hd / 1.5;
  if (!Number.isInteger(ropeDim) || ropeDim % 4 !== 0)
    throw new ConfigError(`head dim ${hd} must be 6·k (rope dim = head dim / 1.5 divisible by 4)`, {
      field: "embedDim",
    });
  if (!Number.isInteger(Math.log2(hyper.tokenPatch)) || hyper.tokenPatch < 2)
    throw new ConfigError("tokenPatch must be a power of two ≥ 2", { field: "tokenPatch" });
  if (!["whd", "hwd"].includes(hyper.tokenOrder))
    throw new ConfigError('tokenOrder must be "whd" or "hwd"', { field: "tokenOrder" });
  const ps = opts.patchSize ?? p.patchSize;
  if (!ps.every((v) => Number.isInteger(v) && v > 0 && v % hyper.tokenPatch === 0))
    throw new ConfigError(`patchSize ${JSON.stringify(ps)} must be divisible by tokenPatch ${hyper.tokenPatch}`, {
      field: "patchSize",
    });
  return {
    hyper,
    inChannels: opts.inChannels ?? 1,
    outChannels: opts.outChannels ?? 1,
    patchSize: [ps[0], ps[1], ps[2]],
    seed: opts.seed ?? 0,
  };
}

/** PatchDecode channel plan: [embed, round8(embed/r^(k+1))..., out], r = (embed/(2·out))^(1/stages). */
export function patchDecodeChannels(embed: number, out: number, tokenPatch: number): number[] {
  const stages = Math.round(Math.log2(tokenPatch));
  const r = (embed / (2 * out)) ** (1 / stages);
  const round8 = (v: number): number => Math.trunc(Math.max(8, roundHalfEven((v + 1e-6) / 8) * 8));
  const ch = [embed, ...Array.from({ length: stages }, (_, k) => round8(embed / r ** (k + 1)))];
  ch[ch.length - 1] = out;
  return ch;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function declareEva(b: DeclBuilder, prefix: string, tokens: number, h: PrimusHyper, depth: number): void {
  const c = h.embedDim;
  const hidden = Math.trunc((c * 8) / 3);
  const tn = (
    std: number,
  ): { weight: { kind: "truncnormal"; std: number }; bias: { kind: "const"; value: number } } => ({
    weight: { kind: "truncnormal", std },
    bias: { kind: "const", value: 0 },
  });
  b.add(`${prefix}.pos_embed`, [1, tokens, c], null, { kind: "truncnormal", std: 0.02 });
  for (let l = 0; l < depth; l++) {
    const p = `${prefix}.blocks.${l}`;
    const rescale = 0.02 / Math.sqrt(2 * (l + 1));
    b.add(`${p}.gamma_1`, [c], null, { kind: "const", value: h.initValues });
    b.add(`${p}.gamma_2`, [c], null, { kind: "const", value: h.initValues });
    b.norm(`${p}.norm1`, c);
    b.linear(`${p}.attn.q_proj`, c, c, true, tn(0.02));
    b.linear(`${p}.attn.k_proj`, c, c, false, tn(0.02));
    b.linear(`${p}.attn.v_proj`, c, c, true, tn(0.02));
    b.norm(`${p}.attn.norm`, c);
    b.linear(`${p}.attn.proj`, c, c, true, tn(rescale));
    b.norm(`${p}.norm2`, c);
    b.linear(`${p}.mlp.fc1_g`, c, hidden, true, tn(0.02));
    b.linear(`${p}.mlp.fc1_x`, c, hidden, true, tn(0.02));
    b.norm(`${p}.mlp.norm`, hidden);
    b.linear(`${p}.mlp.fc2`, hidden, c, true, tn(rescale));
  }
  b.norm(`${prefix}.norm`, c);
}

/** kaiming_normal_(a=0.01, fan_in) std; fan_in as PyTorch computes it. */
function heStd(fanIn: number): number {
  return Math.sqrt(2 / (1 + 0.01 ** 2)) / Math.sqrt(fanIn);
}

export function declarePrimus(r: Resolved, mae: boolean): ParamDecl[] {
  const h = r.hyper;
  const b = new DeclBuilder();
  const p = h.tokenPatch;
  const c = h.embedDim;
  const tokens = (r.patchSize[0] / p) * (r.patchSize[1] / p) * (r.patchSize[2] / p);
  if (mae) b.add("mask_token", [1, 1, c], null, { kind: "normal", std: 1e-6 });
  else b.add("mask_token", [1, 1, c], null, { kind: "const", value: 0 }, true);
  b.add("down_projection.proj.weight", [p, p, p, r.inChannels, c], CONV_PERM, {
    kind: "normal",
    std: heStd(r.inChannels * p * p * p),
  });
  b.add("down_projection.proj.bias", [c], null, { kind: "const", value: 0 });
  const ch = patchDecodeChannels(c, r.outChannels, p);
  const stages = ch.length - 1;
  for (let s = 0; s < stages; s++) {
    const name = s < stages - 1 ? `up_projection.decode.${s}.0` : `up_projection.decode.${s}`;
    // downstream Primus: He init (fan_in of ConvTranspose = out·k³); EvaMAE keeps PyTorch's default
    const fanIn = ch[s + 1]! * 8;
    if (mae) b.convT(name, ch[s]!, ch[s + 1]!, 2, true);
    else {
      b.add(`${name}.weight`, [2, 2, 2, ch[s + 1]!, ch[s]!], CONV_PERM, { kind: "normal", std: heStd(fanIn) });
      b.add(`${name}.bias`, [ch[s + 1]!], null, { kind: "const", value: 0 });
    }
    if (s < stages - 1) b.norm(`up_projection.decode.${s}.1`, ch[s + 1]!);
  }
  declareEva(b, "eva", tokens, h, h.depth);
  if (mae && h.decoderDepth > 0) declareEva(b, "decoder", tokens, h, h.decoderDepth);
  return b.decls;
}

/** RoPE tables [T, headDim] for a token grid (timm RotaryEmbeddingCat, in_pixels=False, temperature 1e4). */
export function ropeTables(grid: Vec3, headDim: number): { sin: Float32Array; cos: Float32Array } {
  const nb = headDim / 6;
  const t = grid[0] * grid[1] * grid[2];
  const sin = new Float32Array(t * headDim);
  const cos = new Float32Array(t * headDim);
  const freqs = Array.from({ length: nb }, (_, k) => 1 / 10000 ** (k / nb));
  for (let i = 0; i < t; i++) {
    const g = [Math.floor(i / (grid[1] * grid[2])), Math.floor(i / grid[2]) % grid[1], i % grid[2]];
    for (let a = 0; a < 3; a++) {
      for (let k = 0; k < nb; k++) {
        const th = Math.fround(Math.fround(g[a]!) * Math.fround(freqs[k]!));
        const base = i * headDim + 2 * (a * nb + k);
        sin[base] = sin[base + 1] = Math.sin(th);
        cos[base] = cos[base + 1] = Math.cos(th);
      }
    }
  }
  return { sin, cos };
}

export class Primus implements Network {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly declarations: readonly ParamDecl[];
  readonly tokenGrid: Vec3;
  readonly tokenPatch: Vec3;
  protected readonly h: PrimusHyper;
  private readonly mae: boolean;
  private readonly rope: { sin: tf.Tensor2D; cos: tf.Tensor2D };
  private readonly ropeData: { sin: Float32Array; cos: Float32Array };

  constructor(p: PrimusPreset, opts: CreateNetworkOptions) {
    const r = resolvePrimus(p, opts);
    this.h = r.hyper;
    this.mae = p.mae;
    this.declarations = declarePrimus(r, p.mae);
    this.weights = instantiate(this.declarations, r.seed);
    const tp = r.hyper.tokenPatch;
    this.tokenPatch = [tp, tp, tp];
    this.tokenGrid = [r.patchSize[0] / tp, r.patchSize[1] / tp, r.patchSize[2] / tp];
    this.ropeData = ropeTables(this.tokenGrid, r.hyper.embedDim / r.hyper.heads);
    const t = this.tokenGrid[0] * this.tokenGrid[1] * this.tokenGrid[2];
    const hd = r.hyper.embedDim / r.hyper.heads;
    this.rope = { sin: tf.tensor2d(this.ropeData.sin, [t, hd]), cos: tf.tensor2d(this.ropeData.cos, [t, hd]) };
    this.config = {
      name: p.key,
      family: "vit",
      inChannels: r.inChannels,
      outChannels: r.outChannels,
      patchSize: r.patchSize,
      seed: r.seed,
      hyper: { ...r.hyper },
      adaptation: {
        archClassName: p.archClassName,
        // the named presets (PrimusS/B/M/L) are built by name downstream; the configurable one carries upstream
        // Primus's init kwargs (dynamic_network_architectures `Primus(...)`, as nnU-Net's PrimusX fine-tuning reads them)
        archKwargs: p.overridable ? primusInitKwargs(r.hyper) : null,
        archKwargsRequiringImport: p.overridable ? [] : null,
        keyToEncoder: "eva",
        keyToStem: "down_projection",
        keysToInProj: ["down_projection.proj"],
        keyToLpe: "eva.pos_embed",
      },
    };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  protected p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    return param<R>(this.weights, name);
  }

  tokenIndex(g0: number, g1: number, g2: number): number {
    const [a, b, c] = this.tokenGrid;
    return this.mae && this.h.tokenOrder === "hwd" ? g1 * a * c + g0 * c + g2 : g0 * b * c + g1 * c + g2;
  }

  /** [B,X,Y,Z,Cin] → tokens [B,T,C] in this network's order. */
  protected embed(x: tf.Tensor5D): tf.Tensor3D {
    const [bsz, d, hh, w, cin] = x.shape;
    if (
      cin !== this.config.inChannels ||
      d !== this.config.patchSize[0] ||
      hh !== this.config.patchSize[1] ||
      w !== this.config.patchSize[2]
    ) {
      throw new ConfigError(
        `input ${x.shape.slice(1).join("x")} does not match ${this.config.name}'s ${this.config.patchSize.join("x")}x${this.config.inChannels}`,
        { field: "patchSize" },
      );
    }
    const p = this.h.tokenPatch;
    const [g0, g1, g2] = this.tokenGrid;
    const c = this.h.embedDim;
    const patches = tf.reshape<tf.Rank.R2>(
      tf.transpose(tf.reshape(x, [bsz, g0, p, g1, p, g2, p, cin]), [0, 1, 3, 5, 2, 4, 6, 7]),
      [bsz * g0 * g1 * g2, p * p * p * cin],
    );
    const wmat = tf.reshape<tf.Rank.R2>(this.p("down_projection.proj.weight"), [p * p * p * cin, c]);
    let tok = tf.reshape<tf.Rank.R5>(addBias(mm(patches, wmat), this.p("down_projection.proj.bias")), [
      bsz,
      g0,
      g1,
      g2,
      c,
    ]);
    if (this.mae && this.h.tokenOrder === "hwd") tok = tf.transpose(tok, [0, 2, 1, 3, 4]);
    return tf.reshape<tf.Rank.R3>(tok, [bsz, g0 * g1 * g2, c]);
  }

  /** tokens [B,T,C] (this network's order) → up-projected volume [B,X,Y,Z,out]. */
  protected decode(tokens: tf.Tensor3D): tf.Tensor5D {
    const bsz = tokens.shape[0];
    const [g0, g1, g2] = this.tokenGrid;
    const c = this.h.embedDim;
    let v: tf.Tensor5D =
      this.mae && this.h.tokenOrder === "hwd"
        ? tf.transpose(tf.reshape(tokens, [bsz, g1, g0, g2, c]), [0, 2, 1, 3, 4])
        : tf.reshape(tokens, [bsz, g0, g1, g2, c]);
    const stages = Math.round(Math.log2(this.h.tokenPatch));
    for (let s = 0; s < stages; s++) {
      const name = s < stages - 1 ? `up_projection.decode.${s}.0` : `up_projection.decode.${s}`;
      v = convTranspose3d(v, this.p(`${name}.weight`), this.p(`${name}.bias`));
      if (s < stages - 1)
        v = gelu(
          layerNorm(v, this.p(`up_projection.decode.${s}.1.weight`), this.p(`up_projection.decode.${s}.1.bias`), 1e-6),
        );
    }
    return v;
  }

  private block(x: tf.Tensor3D, p: string, rope: Rope, dpr: number, ctx: ForwardContext, rng: Rng): tf.Tensor3D {
    return tf.tidy(() => this.blockInner(x, p, rope, dpr, ctx, rng));
  }

  private blockInner(x: tf.Tensor3D, p: string, rope: Rope, dpr: number, ctx: ForwardContext, rng: Rng): tf.Tensor3D {
    const h1 = layerNorm(x, this.p(`${p}.norm1.weight`), this.p(`${p}.norm1.bias`));
    const q = linear(h1, this.p(`${p}.attn.q_proj.weight`), this.p(`${p}.attn.q_proj.bias`));
    const k = linear(h1, this.p(`${p}.attn.k_proj.weight`));
    const v = linear(h1, this.p(`${p}.attn.v_proj.weight`), this.p(`${p}.attn.v_proj.bias`));
    let a = multiHeadAttention(q, k, v, this.h.heads, rope);
    a = layerNorm(a, this.p(`${p}.attn.norm.weight`), this.p(`${p}.attn.norm.bias`));
    a = linear(a, this.p(`${p}.attn.proj.weight`), this.p(`${p}.attn.proj.bias`));
    let y = tf.add<tf.Tensor3D>(x, dropPath(tf.mul(a, this.p(`${p}.gamma_1`)), dpr, ctx.training, rng));
    const h2 = layerNorm(y, this.p(`${p}.norm2.weight`), this.p(`${p}.norm2.bias`));
    const g = linear(h2, this.p(`${p}.mlp.fc1_g.weight`), this.p(`${p}.mlp.fc1_g.bias`));
    const u = linear(h2, this.p(`${p}.mlp.fc1_x.weight`), this.p(`${p}.mlp.fc1_x.bias`));
    let m = layerNorm(tf.mul(silu(g), u), this.p(`${p}.mlp.norm.weight`), this.p(`${p}.mlp.norm.bias`));
    m = linear(m, this.p(`${p}.mlp.fc2.weight`), this.p(`${p}.mlp.fc2.bias`));
    y = tf.add<tf.Tensor3D>(y, dropPath(tf.mul(m, this.p(`${p}.gamma_2`)), dpr, ctx.training, rng));
    return y;
  }

  /** An Eva stack: + pos_embed, optional token keep (per sample), blocks, final norm. */
  protected eva(
    x: tf.Tensor3D,
    prefix: string,
    depth: number,
    ctx: ForwardContext,
    rng: Rng,
    keep?: readonly (readonly number[])[],
  ): tf.Tensor3D {
    let h: tf.Tensor3D = tf.add(x, this.p(`${prefix}.pos_embed`));
    let rope: Rope = this.rope;
    if (keep !== undefined) {
      const bsz = x.shape[0];
      const rows = Array.from({ length: bsz }, (_, i) =>
        gatherRows(tf.reshape(tf.slice(h, [i, 0, 0], [1, -1, -1]), [h.shape[1], h.shape[2]]), keep[i]!),
      );
      h = tf.stack(rows) as tf.Tensor3D;
      const sel = (t: tf.Tensor2D): tf.Tensor3D =>
        tf.stack(keep.map((k) => tf.gather(t, tf.tensor1d([...k], "int32")))) as tf.Tensor3D;
      rope = { sin: sel(this.rope.sin), cos: sel(this.rope.cos) };
    }
    for (let l = 0; l < depth; l++) {
      const dpr = depth > 1 ? (this.h.dropPathRate * l) / (depth - 1) : 0;
      h = this.block(h, `${prefix}.blocks.${l}`, rope, dpr, ctx, rng);
    }
    return layerNorm(h, this.p(`${prefix}.norm.weight`), this.p(`${prefix}.norm.bias`));
  }

  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor3D {
    return tf.tidy(() => this.eva(this.embed(x), "eva", this.h.depth, ctx, new Rng(ctx.seed ?? 0)));
  }

  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() => {
      const rng = new Rng(ctx.seed ?? 0);
      let t = this.eva(this.embed(x), "eva", this.h.depth, ctx, rng);
      if (this.mae && this.h.decoderDepth > 0) t = this.eva(t, "decoder", this.h.decoderDepth, ctx, rng);
      return this.decode(t);
    });
  }

  protected maskedForward(x: tf.Tensor5D, opts: MaskedForwardOptions, ctx: ForwardContext): MaskedForwardResult {
    if (!this.mae || this.h.decoderDepth === 0)
      throw new ConfigError(`${this.config.name} has no MAE decoder; use an eva-mae-* architecture`, {
        field: "architecture",
      });
    const bsz = x.shape[0];
    const t = this.tokenGrid[0] * this.tokenGrid[1] * this.tokenGrid[2];
    let keep: number[][];
    if (opts.keepIndices !== undefined) {
      if (opts.keepIndices.length !== bsz)
        throw new ConfigError(`keepIndices has ${opts.keepIndices.length} rows for batch ${bsz}`, {
          field: "keepIndices",
        });
      keep = opts.keepIndices.map((k) => [...k].sort((a, b) => a - b));
      for (const k of keep)
        if (
          k.length !== keep[0]!.length ||
          k.some((i) => !Number.isInteger(i) || i < 0 || i >= t) ||
          new Set(k).size !== k.length
        )
          throw new ConfigError(
            `keepIndices must be ${keep[0]!.length} distinct token indices in [0,${t}) per sample`,
            { field: "keepIndices" },
          );
    } else {
      keep = drawKeepIndices(opts.rngSeed ?? 0, bsz, t, opts.keepRatio ?? 0.25);
    }
    const reconstruction = tf.tidy(() => {
      const rng = new Rng(ctx.seed ?? 0);
      const enc = this.eva(this.embed(x), "eva", this.h.depth, ctx, rng, keep);
      const c = this.h.embedDim;
      const mask = this.p<tf.Rank.R3>("mask_token");
      const full = keep.map((k, i) => {
        const kept = scatterRows(tf.reshape<tf.Rank.R2>(tf.slice(enc, [i, 0, 0], [1, -1, -1]), [k.length, c]), k, t);
        const m = new Float32Array(t).fill(1);
        for (const j of k) m[j] = 0;
        return tf.add(kept, tf.mul(tf.reshape(mask, [1, c]), tf.tensor2d(m, [t, 1])));
      });
      const dec = this.eva(tf.stack(full) as tf.Tensor3D, "decoder", this.h.decoderDepth, ctx, rng);
      return this.decode(dec);
    });
    return { reconstruction, keepIndices: keep };
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
    this.rope.sin.dispose();
    this.rope.cos.dispose();
  }
}

/**
 * The kept tokens of a masked forward without given `keepIndices`: per sample `max(1, int(tokens · keepRatio))`
 * indices (in the wrapper's token order) from a Fisher-Yates shuffle seeded by `seed`, sorted ascending. Exported so
 * that a caller can know the masks a seeded step used (bench/trajectory.ts hands them to the PyTorch reference).
 */
export function drawKeepIndices(seed: number, batch: number, tokens: number, keepRatio: number): number[][] {
  if (!(keepRatio > 0 && keepRatio <= 1))
    throw new ConfigError(`keepRatio must be in (0,1], got ${keepRatio}`, { field: "keepRatio" });
  const nKeep = Math.max(1, Math.trunc(tokens * keepRatio));
  const rng = new Rng(seed);
  return Array.from({ length: batch }, () => {
    const idx = Array.from({ length: tokens }, (_, i) => i);
    for (let i = tokens - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    return idx.slice(0, nKeep).sort((a, b) => a - b);
  });
}

/** The EvaMAE pre-training wrapper: Primus modules + decoder Eva + mask token, with token dropping. */
export class EvaMae extends Primus implements MaskedNetwork {
  forwardMasked(x: tf.Tensor5D, opts: MaskedForwardOptions, ctx: ForwardContext): MaskedForwardResult {
    return this.maskedForward(x, opts, ctx);
  }
}

export function primusEntry(p: PrimusPreset): ArchitectureEntry {
  return {
    key: p.key,
    family: "vit",
    description: p.description,
    create: (opts): Network => (p.mae ? new EvaMae(p, opts) : new Primus(p, opts)),
    countParams: (opts) => countDecls(declarePrimus(resolvePrimus(p, opts), p.mae)),
  };
}
