/**
 * Sparse instance norm (SparK, nnssl `SparseInstanceNorm3d` in `src/nnssl/architectures/spark_utils.py`):
 * InstanceNorm3d(affine, eps) whose per-sample, per-channel statistics are taken over the visible voxels only (`mask`
 * 1), biased variance; masked voxels (`mask` 0) of the output are 0.
 *
 * On cpu with the native kernels (and an addon that has them: `fusedSparseNormAvailable()`): one fused kernel each
 * way (`Ssl3dSparseInstanceNorm`/`Grad`, native/src/norm.cc, ADR 0082), which also fuses the LeakyReLU of
 * `sparseInstanceNormLeakyRelu`. Elsewhere (wasm, stock cpu, stale addon): tfjs ops (broadcast multiply, Sum over
 * the contiguous spatial axis) with a hand-written gradient (the instance-norm gradient restricted to the visible
 * voxels); `sparseInstanceNormComposed` is the same function left to tfjs' autodiff (the tests' reference). The
 * hand-written gradient needs ~20 kernel calls per norm instead of autodiff's ~60 (docs/performance.md). Masked
 * inputs get zero gradient: they enter neither the statistics nor the (zeroed) output.
 */
import * as tf from "@tensorflow/tfjs";
import { fusedSparseNormAvailable, sparseInstanceNormFused } from "../backend/native.js";
import { customOp } from "./custom.js";
import { nativeCpu } from "./dispatch.js";

function useFused(x: tf.Tensor, mask: tf.Tensor): boolean {
  return x.dtype === "float32" && mask.dtype === "float32" && nativeCpu() && fusedSparseNormAvailable();
}

/**
 * `leakyRelu(sparseInstanceNorm(x, mask, gamma, beta, eps), slope)` (LeakyReLU keeps masked voxels at 0); one fused
 * kernel each way on cpu + native, the two composed ops elsewhere.
 */
export function sparseInstanceNormLeakyRelu(
  x: tf.Tensor5D,
  mask: tf.Tensor5D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
  slope = 0.01,
): tf.Tensor5D {
  checkMask(x, mask);
  if (useFused(x, mask)) return sparseInstanceNormFused(x, mask, gamma, beta, eps, { leakyReluAlpha: slope });
  return tf.tidy(() => tf.leakyRelu(sparseInstanceNorm(x, mask, gamma, beta, eps), slope));
}

function checkMask(x: tf.Tensor5D, mask: tf.Tensor5D): void {
  const [b, d, h, w] = x.shape;
  if (mask.shape[0] !== b || mask.shape[1] !== d || mask.shape[2] !== h || mask.shape[3] !== w || mask.shape[4] !== 1) {
    throw new Error(
      `sparseInstanceNorm: mask shape [${mask.shape.join(",")}] does not match input [${x.shape.join(",")}] (needs [${b},${d},${h},${w},1])`,
    );
  }
}

/**
 * x [B,D,H,W,C], mask [B,D,H,W,1] of 0/1, gamma/beta [C]. Only 0/1 masks are defined: the fused kernel counts
 * any non-zero as visible, the composed form would weight by the value.
 * A sample without visible voxels gives 0 everywhere (its count is clamped to 1).
 */
export function sparseInstanceNorm(
  x: tf.Tensor5D,
  mask: tf.Tensor5D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
): tf.Tensor5D {
  checkMask(x, mask);
  if (useFused(x, mask)) return sparseInstanceNormFused(x, mask, gamma, beta, eps);
  const [b, d, h, w, c] = x.shape;
  const s = d * h * w;
  const shape = x.shape;
  // the mask is a constant of this op (no gradient), captured and saved with the forward's tensors
  return customOp([x, gamma, beta], ([x_, g_, be_], save) => {
    const [value, xhat, rstd, m3, n] = tf.tidy(() => {
      const x3 = tf.reshape<tf.Rank.R3>(x_!, [b, s, c]);
      const m = tf.reshape<tf.Rank.R3>(mask, [b, s, 1]);
      const cnt = tf.maximum(tf.sum(m, 1, true), 1); // [B,1,1]
      const mean = tf.div(tf.sum(tf.mul(x3, m), 1, true), cnt); // [B,1,C]
      const xc = tf.mul(tf.sub(x3, mean), m); // centred, 0 where masked
      const r = tf.rsqrt(tf.add(tf.div(tf.sum(tf.mul(xc, xc), 1, true), cnt), eps)); // [B,1,C]
      const xh = tf.mul(xc, r); // 0 where masked
      const y = tf.reshape(tf.mul(tf.add(tf.mul(xh, g_!), be_!), m), shape);
      return [y, xh, r, m, cnt] as const;
    });
    save([xhat, rstd, m3, n, g_!]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sm, sn, sg] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor1D];
        // y = (x̂·γ + β)·m with x̂ = (x − μ)·r over visible voxels: the instance-norm gradient restricted to them
        const dym = tf.mul(tf.reshape<tf.Rank.R3>(dy, [b, s, c]), sm);
        const dbeta = tf.sum(dym, [0, 1]);
        const dgamma = tf.sum(tf.mul(dym, sx), [0, 1]);
        const g = tf.mul(dym, sg);
        const m1 = tf.div(tf.sum(g, 1, true), sn);
        const m2 = tf.div(tf.sum(tf.mul(g, sx), 1, true), sn);
        const dx = tf.mul(tf.mul(tf.sub(tf.sub(g, m1), tf.mul(sx, m2)), sr), sm);
        return [tf.reshape(dx, shape), dgamma, dbeta];
      },
    };
  }) as tf.Tensor5D;
}

/** The same function by tfjs autodiff of its composition (reference for the hand-written gradient; tests). */
export function sparseInstanceNormComposed(
  x: tf.Tensor5D,
  mask: tf.Tensor5D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
): tf.Tensor5D {
  const [b, d, h, w, c] = x.shape;
  const s = d * h * w;
  return tf.tidy(() => {
    const x3 = tf.reshape<tf.Rank.R3>(x, [b, s, c]);
    const m3 = tf.reshape<tf.Rank.R3>(mask, [b, s, 1]);
    const n = tf.maximum(tf.sum(m3, 1, true), 1);
    const mean = tf.div(tf.sum(tf.mul(x3, m3), 1, true), n);
    const xc = tf.mul(tf.sub(x3, mean), m3);
    const variance = tf.div(tf.sum(tf.mul(xc, xc), 1, true), n);
    const y = tf.mul(tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta), m3);
    return tf.reshape(y, [b, d, h, w, c]);
  });
}
