/** Element-wise activations with PyTorch semantics. */
import * as tf from "@tensorflow/tfjs";
import { customOp } from "./custom.js";
import { nativeCpu } from "./dispatch.js";

/** LeakyReLU, PyTorch default slope 0.01. */
export function leakyRelu<T extends tf.Tensor>(x: T, slope = 0.01): T {
  return tf.leakyRelu(x, slope);
}

/** Exact GELU: 0.5·x·(1 + erf(x/√2)) (torch.nn.GELU default). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** SiLU: x·sigmoid(x). */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/**
 * LeakyReLU(a + b) (the residual join of a ResEnc block). On cpu + native, autodiff keeps only the output y: for a
 * positive slope sign(y) = sign(a + b), so the gradient dy·(y > 0 ? 1 : slope) needs neither the sum nor a copy of
 * it, and y is the next layer's input (kept anyway). One full-size tensor less per block than the composed ops,
 * which keep the sum for LeakyRelu's gradient. Elsewhere (wasm) the composed ops.
 */
export function addLeakyRelu<T extends tf.Tensor>(a: T, b: T, slope = 0.01): T {
  if (!nativeCpu() || slope <= 0) return tf.tidy(() => tf.leakyRelu(tf.add<T>(a, b), slope));
  return customOp([a, b], ([a_, b_], save) => {
    const y = tf.tidy(() => tf.leakyRelu(tf.add(a_!, b_!), slope));
    save([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = tf.tidy(() =>
          tf.mul(dy, tf.where(tf.greater(saved[0]!, 0), tf.onesLike(dy), tf.fill(dy.shape, slope))),
        );
        return [g, g.clone()];
      },
    };
  }) as T;
}
