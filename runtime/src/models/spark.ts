/**
 * SparK-3D pre-training wrapper around the ResidualEncoderUNet (nnssl `SparK3D` + `convert_to_spark_cnn`,
 * `src/nnssl/architectures/spark_model.py`, `spark_utils.py`).
 *
 * Sparse encoder: the ResEnc encoder walk (`ResEncUNet.encodeWith`) with every op of the encoder running normally
 * and its output multiplied by the mask resized to the output resolution: the average pooling of the projection
 * skips; every InstanceNorm becomes a sparse instance norm (statistics over visible voxels only, masked voxels 0,
 * ops/sparse-norm.ts, one fused native kernel on cpu); LeakyReLU and the residual sum keep zeros at 0. Conv outputs
 * are not multiplied: each feeds a sparse norm, which ignores masked voxels (same function, one full-size multiply
 * less each way). So every norm, pooling and residual output is 0 at masked voxels, and every conv reads zeros
 * there except the stem's conv, which sees masked input values (at the borders of visible blocks): the input is NOT
 * zeroed. The unmasked network (`ResEncUNet.encode`/`apply`) keeps its fused kernels.
 *
 * Mask resizing (stage with cumulative stride f, output voxel i samples input voxel i·f): for f ≤ blockSize this is
 * upstream's nearest repetition of the block grid; for f > blockSize (the resolution is below the block grid, e.g.
 * ResEnc-L's 5³ bottleneck for 16³ blocks on 160³) the mask is all ones, as upstream.
 *
 * Densify, per encoder output i (0 = highest resolution): sparse InstanceNorm (affine) → masked voxels replaced by
 * the learnable mask token `mask_tokens.{i}` ((1,C,1,1,1), trunc-normal std 0.02 within ±0.02) → projection
 * (identity for i = 0, Conv3d k3 pad 1 with bias for the others); the standard U-Net decoder then reconstructs.
 * Upstream's densify norm is `InstanceNorm1d(C)` with PyTorch's default `affine=False`; ours is affine (weight 1,
 * bias 0 at init), so it starts identical and may learn a per-channel scale/shift (docs/training.md).
 *
 * Weights: the inner U-Net under its ResidualEncoderUNet names (what `ssl3d export` writes: `exported()`), plus the
 * SparK-only `densify_norms.{i}.{weight,bias}`, `densify_projs.{i}.{weight,bias}` (i ≥ 1) and `mask_tokens.{i}`,
 * upstream SparK3D's state-dict names. Training checkpoints hold all of them (resume is exact).
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
import {
  conv3d,
  instanceNorm,
  instanceNormLeakyRelu,
  sparseInstanceNorm,
  sparseInstanceNormLeakyRelu,
  addLeakyRelu,
} from "./ops/index.js";
import { countDecls, DeclBuilder, instantiate, param, type ParamDecl } from "./params.js";
import {
  declareResEnc,
  resolveResEnc,
  ResEncUNet,
  RESENC_L,
  RESENC_XS,
  type EncoderOps,
  type ResEncPreset,
} from "./resenc-unet.js";

export interface SparkMask {
  /** [B,X,Y,Z,1] at input resolution: 1 visible, 0 masked. */
  readonly mask: tf.Tensor5D;
  /** Block edge of the mask in input voxels; stages with a larger cumulative stride see an all-ones mask. */
  readonly blockSize: number;
}

/**
 * Called with every sparse-encoder op's output (tests): module name, output, and the mask at its resolution (null =
 * none). Outputs are 0 at masked voxels except the convolutions' (unmasked: their consumer, the sparse norm, ignores
 * masked voxels).
 */
export type SparkTrace = (name: string, output: tf.Tensor5D, mask: tf.Tensor5D | null) => void;

export interface SparkNetwork extends Network {
  /** SparK forward: sparse encoder on the unmasked input, densify, U-Net decoder → [B,X,Y,Z,Cout]. */
  forwardSparse(x: tf.Tensor5D, m: SparkMask, ctx: ForwardContext, trace?: SparkTrace): tf.Tensor5D;
}

export function isSparkNetwork(n: Network): n is SparkNetwork {
  return typeof (n as Partial<SparkNetwork>).forwardSparse === "function";
}

/**
 * The mask at the resolution of cumulative stride `stride`: voxel i takes the input mask at i·stride (nearest;
 * equal to repeating the block grid when `stride` divides `blockSize`); null (all ones) when `stride > blockSize`.
 */
export function stageMask(mask: tf.Tensor5D, blockSize: number, stride: number): tf.Tensor5D | null {
  if (stride > blockSize) return null;
  if (stride === 1) return mask;
  const [b, x, y, z] = mask.shape;
  if (x % stride === 0 && y % stride === 0 && z % stride === 0) {
    // the same voxels as the strided slice, as a reshape and a plain Slice (tfjs's StridedSlice kernel is a slow
    // generic loop: ~1.5 ms per 2×32³ mask on cpu)
    return tf.tidy(() => {
      const r = tf.reshape(mask, [b, x / stride, stride, y / stride, stride, z / stride, stride]);
      return tf.reshape<tf.Rank.R5>(
        tf.slice(r, [0, 0, 0, 0, 0, 0, 0], [b, x / stride, 1, y / stride, 1, z / stride, 1]),
        [b, x / stride, y / stride, z / stride, 1],
      );
    });
  }
  return tf.stridedSlice(mask, [0, 0, 0, 0, 0], [b, x, y, z, 1], [1, stride, stride, stride, 1]) as tf.Tensor5D;
}

/** Cumulative stride of every stage output (and the stem, stride 1). */
function cumulativeStrides(strides: readonly number[]): number[] {
  const out: number[] = [];
  let f = 1;
  for (const s of strides) out.push((f *= s));
  return out;
}

/** SparK-only parameters in upstream's registration order (densify_norms, densify_projs, mask_tokens). */
export function declareSpark(features: readonly number[]): ParamDecl[] {
  const b = new DeclBuilder();
  features.forEach((c, i) => {
    b.norm(`densify_norms.${i}`, c);
  });
  features.forEach((c, i) => {
    if (i > 0) b.conv(`densify_projs.${i}`, c, c, 3, true);
  });
  // ours [1,1,1,1,C] ↔ upstream (1,C,1,1,1)
  features.forEach((c, i) => {
    b.add(`mask_tokens.${i}`, [1, 1, 1, 1, c], [0, 4, 1, 2, 3], { kind: "truncnormal", std: 0.02, a: -0.02, b: 0.02 });
  });
  return b.decls;
}

export class SparkResEnc implements SparkNetwork {
  readonly config: NetworkConfig;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly declarations: readonly ParamDecl[];
  /** The ResidualEncoderUNet being pre-trained (exported as `network_weights`). */
  readonly inner: ResEncUNet;
  private readonly own: Map<string, tf.Variable>;
  private readonly features: readonly number[];
  private readonly stageStrides: readonly number[];

  constructor(key: string, preset: ResEncPreset, opts: CreateNetworkOptions) {
    if (opts.encoderOnly !== undefined && opts.encoderOnly !== false)
      throw new ConfigError(`${key} needs the decoder; encoderOnly is not supported`, { field: "encoderOnly" });
    this.inner = new ResEncUNet(preset, opts);
    const h = this.inner.config.hyper as { features: number[]; strides: number[] };
    this.features = h.features;
    this.stageStrides = cumulativeStrides(h.strides);
    const sparkDecls = declareSpark(this.features);
    this.own = instantiate(sparkDecls, this.inner.config.seed);
    this.declarations = [...this.inner.declarations, ...sparkDecls];
    this.weights = new Map([...this.inner.weights, ...this.own]);
    this.config = { ...this.inner.config, name: key };
  }

  parameterCount(): number {
    return countDecls(this.declarations);
  }

  exported(): Network {
    return this.inner;
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    return param<R>(this.weights, name);
  }

  encode(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D[] {
    return this.inner.encode(x, ctx);
  }

  /** The SparK module with nothing masked (sparse ops reduce to dense ones; densify norm + projection still run). */
  apply(x: tf.Tensor5D, ctx: ForwardContext): tf.Tensor5D {
    return tf.tidy(() =>
      this.forwardSparse(
        x,
        { mask: tf.ones([x.shape[0], x.shape[1], x.shape[2], x.shape[3], 1]), blockSize: Infinity },
        ctx,
      ),
    );
  }

  forwardSparse(x: tf.Tensor5D, m: SparkMask, _ctx: ForwardContext, trace?: SparkTrace): tf.Tensor5D {
    const [b, X, Y, Z] = x.shape;
    const ms = m.mask.shape;
    if (ms[0] !== b || ms[1] !== X || ms[2] !== Y || ms[3] !== Z || ms[4] !== 1) {
      throw new ConfigError(`SparK mask shape [${ms.join(",")}] does not match the input [${b},${X},${Y},${Z},1]`, {
        field: "mask",
      });
    }
    return tf.tidy(() => {
      // every resolution's mask up front, in this scope (tensors made inside the encoder's nested tidies would be freed)
      const byStride = new Map<number, tf.Tensor5D | null>();
      for (const f of [1, ...this.stageStrides])
        if (!byStride.has(f)) byStride.set(f, stageMask(m.mask, m.blockSize, f));
      const maskFor = (t: tf.Tensor5D): tf.Tensor5D | null => {
        const f = X / t.shape[1];
        const got = byStride.get(f);
        if (got === undefined) throw new Error(`SparK: no mask for stride ${f}`);
        return got;
      };
      const skips = this.inner.encodeWith(x, sparseOps(maskFor, trace));
      const dense = skips.map((s, i) => this.densify(s, maskFor(s), i));
      return this.inner.decode(dense);
    });
  }

  /** Sparse IN → mask token at masked voxels → projection (identity for stage 0). */
  private densify(s: tf.Tensor5D, m: tf.Tensor5D | null, i: number): tf.Tensor5D {
    return tf.tidy(() => {
      const mask = m ?? tf.ones<tf.Rank.R5>([s.shape[0], s.shape[1], s.shape[2], s.shape[3], 1]);
      const h = sparseInstanceNorm(
        s,
        mask,
        this.p(`densify_norms.${i}.weight`),
        this.p(`densify_norms.${i}.bias`),
        1e-5,
      );
      // h is 0 where masked: adding token·(1 − mask) replaces those voxels by the token (a zero-gradient no-op when all visible)
      const filled = tf.add<tf.Tensor5D>(h, tf.mul(this.p(`mask_tokens.${i}`), tf.sub(1, mask)));
      return i === 0
        ? filled
        : conv3d(filled, this.p(`densify_projs.${i}.weight`), { bias: this.p(`densify_projs.${i}.bias`) });
    });
  }

  dispose(): void {
    this.inner.dispose();
    for (const v of this.own.values()) v.dispose();
  }
}

/**
 * The encoder ops of the sparse encoder: each output 0 at the masked voxels of its resolution. Convolution outputs
 * are the exception: in the ResEnc walk every conv feeds a norm, and the sparse norm neither reads masked voxels nor
 * passes gradient to them, so multiplying the conv output by the mask first would change nothing (it was a full-size
 * multiply each way per conv: ADR 0082). The norm's output is 0 there.
 */
function sparseOps(maskFor: (t: tf.Tensor5D) => tf.Tensor5D | null, trace: SparkTrace | undefined): EncoderOps {
  const masked = (y: tf.Tensor5D, name: string): tf.Tensor5D => {
    const m = maskFor(y);
    const out = m === null ? y : tf.mul<tf.Tensor5D>(y, m);
    trace?.(name, out, m);
    return out;
  };
  return {
    conv: (x, w, bias, stride, name) => {
      const y = conv3d(x, w, { stride, bias });
      trace?.(name, y, maskFor(y));
      return y;
    },
    norm: (x, g, b, act, name) => {
      const m = maskFor(x);
      // all-ones mask: the dense (fused) norm is the same function
      const y =
        m === null
          ? act
            ? instanceNormLeakyRelu(x, g, b, 1e-5, 0.01)
            : instanceNorm(x, g, b, 1e-5)
          : act
            ? sparseInstanceNormLeakyRelu(x, m, g, b, 1e-5, 0.01)
            : sparseInstanceNorm(x, m, g, b, 1e-5);
      trace?.(name, y, m);
      return y;
    },
    avgPool: (x, stride, name) => masked(tf.avgPool3d(x, stride, stride, "valid"), name),
    addAct: (h, skip, name) => {
      const y = addLeakyRelu(h, skip);
      trace?.(name, y, maskFor(y));
      return y;
    },
  };
}

function sparkEntry(key: string, preset: ResEncPreset, description: string): ArchitectureEntry {
  return {
    key,
    family: "cnn",
    description,
    create: (opts) => new SparkResEnc(key, preset, opts),
    countParams: (opts) => {
      const r = resolveResEnc(preset, opts);
      return countDecls([...declareResEnc(r.hyper, r.inChannels, r.outChannels), ...declareSpark(r.hyper.features)]);
    },
  };
}

export const SPARK_ENTRIES: readonly ArchitectureEntry[] = [
  sparkEntry(
    "spark-resenc-l",
    RESENC_L,
    "SparK-3D pre-training wrapper of ResEnc-L (sparse encoder, densify, U-Net decoder); exports the plain ResEnc-L",
  ),
  sparkEntry(
    "spark-resenc-xs",
    RESENC_XS,
    "SparK-3D pre-training wrapper of resenc-xs (tests, CPU runs); exports the plain resenc-xs",
  ),
];
