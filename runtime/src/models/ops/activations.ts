/** Element-wise activations with PyTorch semantics. */
import * as tf from "@tensorflow/tfjs";

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
