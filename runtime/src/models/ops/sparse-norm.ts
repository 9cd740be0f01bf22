/**
 * Sparse instance norm (SparK, spec 6.3 / 11): InstanceNorm3d(affine, eps) whose per-sample, per-channel statistics
 * are taken over the visible voxels only (`mask` 1), biased variance; masked voxels (`mask` 0) of the output are 0.
 *
 * No fused native kernel: composed from tfjs ops (broadcast multiply, Sum over the contiguous spatial axis, which
 * the native addon runs as its own kernels) so tfjs' autodiff gives the gradient. Masked inputs get zero gradient:
 * they enter neither the statistics nor the (zeroed) output.
 */
import * as tf from "@tensorflow/tfjs";

/**
 * x [B,D,H,W,C], mask [B,D,H,W,1] of 0/1 (any rank-5 tensor broadcastable over channels), gamma/beta [C].
 * A sample without visible voxels gives 0 everywhere (its count is clamped to 1).
 */
export function sparseInstanceNorm(x: tf.Tensor5D, mask: tf.Tensor5D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): tf.Tensor5D {
  const [b, d, h, w, c] = x.shape;
  if (mask.shape[0] !== b || mask.shape[1] !== d || mask.shape[2] !== h || mask.shape[3] !== w || mask.shape[4] !== 1) {
    throw new Error(`sparseInstanceNorm: mask shape [${mask.shape.join(",")}] does not match input [${x.shape.join(",")}] (needs [${b},${d},${h},${w},1])`);
  }
  const s = d * h * w;
  return tf.tidy(() => {
    const x3 = tf.reshape<tf.Rank.R3>(x, [b, s, c]);
    const m3 = tf.reshape<tf.Rank.R3>(mask, [b, s, 1]);
    const n = tf.maximum(tf.sum(m3, 1, true), 1); // [B,1,1]
    const mean = tf.div(tf.sum(tf.mul(x3, m3), 1, true), n); // [B,1,C]
    const xc = tf.mul(tf.sub(x3, mean), m3); // centred, 0 where masked
    const variance = tf.div(tf.sum(tf.mul(xc, xc), 1, true), n);
    const xhat = tf.mul(xc, tf.rsqrt(tf.add(variance, eps)));
    const y = tf.mul(tf.add(tf.mul(xhat, gamma), beta), m3);
    return tf.reshape(y, [b, d, h, w, c]);
  });
}
