/**
 * The public ops over the fused kernels (`fused.ts`), for `models/ops/`: each checks its preconditions (cpu backend
 * with the native kernels registered, and for the newer kernels an addon that has them) and runs one kernel.
 */
import * as tf from "@tensorflow/tfjs";
import { fusedAttentionAvailable, fusedSparseNormAvailable, nativeKernelsLoaded } from "./registry.js";

function requireNative(
  what: string,
  available = nativeKernelsLoaded(),
  detail = "loadNativeKernels() returned true",
): void {
  if (!available || tf.getBackend() !== "cpu")
    throw new Error(`${what} needs the cpu backend with the native kernels (${detail})`);
}

/** Runs a fused kernel and keeps its first output (the rest are statistics the gradient reads). */
function runFirst(kernel: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): tf.Tensor {
  return tf.tidy(() => tf.engine().runKernel<tf.Tensor[]>(kernel, inputs, attrs)[0]!);
}

/**
 * Sparse instance norm (SparK, `ops/sparse-norm.ts`): InstanceNorm3d(affine, biased variance) with per-sample,
 * per-channel statistics over the voxels where `mask` [B, ..., 1] is non-zero (count clamped to 1), optionally
 * followed by LeakyReLU (`leakyReluAlpha`), output 0 where masked; one fused native kernel each way (two passes over
 * memory), the gradient recomputing the activation's input. Masked input values are never read (dx = 0 there).
 * The mask is a constant (zero gradient). Requires `fusedSparseNormAvailable()`.
 */
export function sparseInstanceNormFused<T extends tf.Tensor>(
  x: T,
  mask: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
  opts: { leakyReluAlpha?: number } = {},
): T {
  requireNative(
    "sparseInstanceNormFused",
    fusedSparseNormAvailable(),
    "an addon that includes it: fusedSparseNormAvailable()",
  );
  if (x.dtype !== "float32" || x.rank < 3)
    throw new Error(`sparseInstanceNormFused: expected float32 [B, ..., C], got ${x.dtype} rank ${x.rank}`);
  const c = x.shape[x.rank - 1]!;
  if (mask.dtype !== "float32" || mask.size * c !== x.size || mask.shape[0] !== x.shape[0]) {
    throw new Error(
      `sparseInstanceNormFused: mask [${mask.shape.join(",")}] does not fit input [${x.shape.join(",")}]`,
    );
  }
  return runFirst("Ssl3dSparseInstanceNorm", { x, mask, gamma, beta }, { eps, alpha: opts.leakyReluAlpha ?? 1 }) as T;
}

/**
 * Instance norm (InstanceNorm3d, affine, biased variance) over all axes between batch and channels of a
 * channels-last tensor, optionally followed by LeakyReLU (`leakyReluAlpha`; nnU-Net's norm → nonlin pair), as ONE
 * fused native kernel with a fused native gradient (which recomputes the activation's input instead of storing it).
 * Autodiff keeps only x (kept anyway as the previous op's output) and two [B, C] statistics, instead of the ~5
 * full-size intermediates of the composed form, and runs 2 passes over memory each way instead of ~10. Requires
 * `loadNativeKernels()` to have returned true (check `nativeKernelsLoaded()`); on other backends use the composed ops.
 */
export function instanceNormFused<T extends tf.Tensor>(
  x: T,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
  opts: { leakyReluAlpha?: number } = {},
): T {
  requireNative("instanceNormFused");
  if (x.dtype !== "float32" || x.rank < 3)
    throw new Error(`instanceNormFused: expected float32 [B, ..., C], got ${x.dtype} rank ${x.rank}`);
  // Outputs [y, mean, rstd]; the engine keeps its own references to the saved statistics for the gradient.
  return runFirst("Ssl3dInstanceNorm", { x, gamma, beta }, { eps, alpha: opts.leakyReluAlpha ?? 1 }) as T;
}

/**
 * LayerNorm over the last axis (biased variance, affine), as one fused native kernel with a fused native gradient;
 * autodiff keeps x and the per-row statistics only. Same preconditions as `instanceNormFused`.
 */
export function layerNormFused<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): T {
  requireNative("layerNormFused");
  if (x.dtype !== "float32" || x.rank < 1) throw new Error(`layerNormFused: expected float32, got ${x.dtype}`);
  return runFirst("Ssl3dLayerNorm", { x, gamma, beta }, { eps }) as T;
}

/**
 * softmax(scale·q·kᵀ)·v over the last two axes ([..., T, D] queries, [..., S, D] keys and values), as one fused
 * native kernel (exact, flash-attention style: blocks of 64 query rows, the [T, S] probabilities never stored) with a
 * fused gradient that recomputes them from the saved per-row log-sum-exp. Autodiff keeps q, k, v, the output and
 * [..., T] statistics instead of the [..., T, S] probabilities. Same preconditions as `instanceNormFused`.
 */
export function attentionFused<T extends tf.Tensor>(q: T, k: tf.Tensor, v: tf.Tensor, scale: number): T {
  requireNative("attentionFused", fusedAttentionAvailable(), "loadNativeKernels() returned true");
  const r = q.rank;
  if (q.dtype !== "float32" || k.dtype !== "float32" || v.dtype !== "float32" || r < 2 || k.rank !== r || v.rank !== r)
    throw new Error("attentionFused: expected float32 q, k, v of equal rank >= 2");
  if (
    !tf.util.arraysEqual(k.shape, v.shape) ||
    !tf.util.arraysEqual(q.shape.slice(0, -2), k.shape.slice(0, -2)) ||
    q.shape[r - 1] !== k.shape[r - 1]
  ) {
    throw new Error(
      `attentionFused: shapes q [${q.shape.join(",")}], k [${k.shape.join(",")}], v [${v.shape.join(",")}] do not fit`,
    );
  }
  return runFirst("Ssl3dAttention", { q, k, v }, { scale }) as T;
}
