/**
 * Trilinear ×2 upsampling with PyTorch's `F.interpolate(scale_factor=2, mode="trilinear", align_corners=False)`
 * semantics, channels-last. Separable: along each spatial axis, output index o samples the input at
 * src = (o + 0.5)/2 − 0.5 clamped below at 0, so
 *
 *   out[2i]   = 0.75·x[i] + 0.25·x[max(i − 1, 0)]
 *   out[2i+1] = 0.75·x[i] + 0.25·x[min(i + 1, n − 1)]
 *
 * (edge clamping). Built from slice/concat/mul/add/stack/reshape, so the gradient is tfjs autodiff of the same
 * linear map (its exact transpose); `ops.test.ts` checks forward and gradient against PyTorch.
 */
import * as tf from "@tensorflow/tfjs";

/** ×2 linear upsampling along one axis of x (align_corners=False, edge clamped). */
export function upsampleLinear2x<T extends tf.Tensor>(x: T, axis: number): T {
  return tf.tidy(() => {
    const n = x.shape[axis]!;
    const begin = x.shape.map(() => 0);
    const slice = (start: number, len: number): tf.Tensor => {
      const b = [...begin];
      b[axis] = start;
      const s = [...x.shape];
      s[axis] = len;
      return tf.slice(x, b, s);
    };
    // x shifted by one towards lower / higher indices, with the border element repeated
    const prev = n === 1 ? x : tf.concat([slice(0, 1), slice(0, n - 1)], axis);
    const next = n === 1 ? x : tf.concat([slice(1, n - 1), slice(n - 1, 1)], axis);
    const x75 = tf.mul(x, 0.75);
    const even = tf.add(x75, tf.mul(prev, 0.25));
    const odd = tf.add(x75, tf.mul(next, 0.25));
    const shape = [...x.shape];
    shape[axis] = 2 * n;
    return tf.reshape(tf.stack([even, odd], axis + 1), shape) as T;
  });
}

/** Trilinear ×2 upsampling of [B,D,H,W,C] → [B,2D,2H,2W,C] (nn.Upsample(scale_factor=2, mode="trilinear")). */
export function upsampleTrilinear2x(x: tf.Tensor5D): tf.Tensor5D {
  return tf.tidy(() => upsampleLinear2x(upsampleLinear2x(upsampleLinear2x(x, 1), 2), 3));
}
