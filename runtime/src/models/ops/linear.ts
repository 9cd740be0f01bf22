/**
 * Matrix products as plain 2-D, untransposed `tf.matMul` calls, in the forward AND the backward pass: on wasm only
 * that form runs in XNNPACK (batched or transposed matMul falls to a scalar loop, docs/performance.md).
 */
import * as tf from "@tensorflow/tfjs";
import { customOp } from "./custom.js";
import { nativeCpu } from "./dispatch.js";

/** a[M,K] × b[K,N] with a gradient made of explicit transposes and plain matMuls. */
export function mm(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  // native: tfjs's own matMul gradient (transposed BatchMatMul calls, native-accelerated) without the copies.
  if (nativeCpu()) return tf.matMul(a, b);
  return customOp([a, b], ([a_, b_], save) => {
    save([a_!, b_!]);
    return {
      value: tf.matMul(a_ as tf.Tensor2D, b_ as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dy2 = dy as tf.Tensor2D;
        return [tf.matMul(dy2, tf.transpose(sb)), tf.matMul(tf.transpose(sa), dy2)];
      },
    };
  }) as tf.Tensor2D;
}

/** Column sums of a [N,C] matrix as a [1,C] matrix, computed as ones[1,N] × x (no non-innermost Sum). */
export function colSum(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.matMul(tf.ones([1, x.shape[0]]), x));
}

/** x[..., C] + b[C], with db computed as a ones-vector matMul. */
export function addBias<T extends tf.Tensor>(x: T, b: tf.Tensor1D): T {
  if (nativeCpu()) return tf.add<T>(x, b); // db: the native Sum over the broadcast axes
  const c = b.shape[0];
  return customOp([x, b], ([x_, b_]) => ({
    value: tf.add(x_!, b_!),
    gradFunc: (dy: tf.Tensor) => [dy.clone(), tf.reshape(colSum(tf.reshape(dy, [-1, c])), [c])],
  })) as T;
}

/**
 * Linear layer on the last axis: x[..., in] × w[in,out] (+ b). PyTorch stores `weight` as [out,in]; our
 * variable is the transpose [in,out] (the exporter transposes).
 */
export function linear<T extends tf.Tensor>(x: T, w: tf.Tensor2D, b?: tf.Tensor1D): T {
  return tf.tidy(() => {
    const [cin, cout] = w.shape;
    if (nativeCpu()) {
      // one native _FusedMatMul (matMul + bias) forward; its gradient is BatchMatMul + Sum, all native.
      const y2 = tf.fused.matMul({
        a: tf.reshape<tf.Rank.R2>(x, [-1, cin]),
        b: w,
        ...(b === undefined ? {} : { bias: b }),
      });
      return tf.reshape(y2, [...x.shape.slice(0, -1), cout]) as T;
    }
    const y = mm(tf.reshape(x, [-1, cin]), w);
    const yb = b === undefined ? y : addBias(y, b);
    return tf.reshape(yb, [...x.shape.slice(0, -1), cout]) as T;
  });
}
