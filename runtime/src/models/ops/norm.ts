/**
 * Normalisation layers.
 * - instanceNorm: InstanceNorm3d(affine, eps) = per sample and channel statistics over D,H,W (biased variance).
 *   Written with ones-vector matMul reductions and a hand-written gradient: a `Sum` over non-innermost axes makes
 *   wasm transpose the whole tensor (docs/performance.md).
 * - layerNorm: LayerNorm over the last axis (innermost, so plain ops and autodiff are fast).
 */
import * as tf from "@tensorflow/tfjs";
import { instanceNormFused, layerNormFused, nativeKernelsLoaded } from "../backend/native.js";
import { customOp } from "./custom.js";
import { colSum } from "./linear.js";

export function instanceNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): T {
  // cpu + native addon: one fused kernel each way (ADR 0008), keeping no full-size intermediate for autodiff.
  if (useFused(x)) return instanceNormFused(x, gamma, beta, eps);
  const shape = x.shape;
  const b = shape[0];
  const c = shape[shape.length - 1]!;
  const s = x.size / (b * c);
  return customOp([x, gamma, beta], ([x_, g_, be_], save) => {
    const [value, xhat, rstd] = tf.tidy(() => {
      const x2 = tf.reshape<tf.Rank.R2>(x_!, [b * s, c]);
      const xh: tf.Tensor2D[] = [];
      const rs: tf.Tensor2D[] = [];
      for (let i = 0; i < b; i++) {
        const xb = b === 1 ? x2 : tf.slice(x2, [i * s, 0], [s, c]);
        const xc = tf.sub(xb, tf.div(colSum(xb), s));
        const r = tf.rsqrt(tf.add(tf.div(colSum(tf.mul(xc, xc)), s), eps)) as tf.Tensor2D;
        xh.push(tf.mul(xc, r));
        rs.push(r);
      }
      const xhat_ = b === 1 ? xh[0]! : tf.concat(xh, 0);
      const y = tf.reshape(tf.add(tf.mul(xhat_, g_!), be_!), shape);
      return [y, xhat_, b === 1 ? rs[0]! : tf.concat(rs, 0)] as const;
    });
    save([xhat, rstd, g_!]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const dy2 = tf.reshape<tf.Rank.R2>(dy, [b * s, c]);
        const dgamma = tf.reshape(colSum(tf.mul(dy2, sx)), [c]);
        const dbeta = tf.reshape(colSum(dy2), [c]);
        const g = tf.mul<tf.Tensor2D>(dy2, sg);
        const dxs: tf.Tensor[] = [];
        for (let i = 0; i < b; i++) {
          const gb = b === 1 ? g : tf.slice(g, [i * s, 0], [s, c]);
          const xb = b === 1 ? sx : tf.slice(sx, [i * s, 0], [s, c]);
          const rb = b === 1 ? sr : tf.slice(sr, [i, 0], [1, c]);
          const m1 = tf.div(colSum(gb), s);
          const m2 = tf.div(colSum(tf.mul(gb, xb)), s);
          dxs.push(tf.mul(tf.sub(tf.sub(gb, m1), tf.mul(xb, m2)), rb));
        }
        const dx = tf.reshape(b === 1 ? dxs[0]! : tf.concat(dxs, 0), shape);
        return [dx, dgamma, dbeta];
      },
    };
  }) as T;
}

/**
 * instanceNorm followed by LeakyReLU (nnU-Net's norm → nonlin pair). On cpu + native one fused kernel each way that
 * recomputes the activation's input in the gradient, so autodiff keeps neither the norm's output nor the activation's
 * (ADR 0008: halves a ResEnc step's peak memory); elsewhere the two composed ops.
 */
export function instanceNormLeakyRelu<T extends tf.Tensor>(
  x: T,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
  slope = 0.01,
): T {
  if (useFused(x)) return instanceNormFused(x, gamma, beta, eps, { leakyReluAlpha: slope });
  return tf.tidy(() => tf.leakyRelu(instanceNorm(x, gamma, beta, eps), slope));
}

/** LayerNorm over the last axis (biased variance), affine. torch default eps 1e-5; LayerNormNd uses 1e-6. */
export function layerNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): T {
  if (useFused(x)) return layerNormFused(x, gamma, beta, eps);
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add<T>(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
  });
}

function useFused(x: tf.Tensor): boolean {
  return x.dtype === "float32" && nativeKernelsLoaded() && tf.getBackend() === "cpu";
}
