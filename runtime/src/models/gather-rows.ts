/**
 * Row gather/scatter pair with hand-written gradients (tf.gather's gradient needs UnsortedSegmentSum, missing on
 * wasm; ScatterNd has no gradient on any backend). Used for MAE token dropping and restoring.
 */
import * as tf from "@tensorflow/tfjs";
import { customOp } from "./ops/custom.js";

/** x[T,C] → x[idx] [K,C]. */
export function gatherRows(x: tf.Tensor2D, idx: readonly number[]): tf.Tensor2D {
  const t = x.shape[0];
  const c = x.shape[1];
  return customOp([x], ([x_]) => ({
    value: tf.tidy(() => tf.gather(x_!, tf.tensor1d([...idx], "int32"))),
    gradFunc: (dy: tf.Tensor) => [
      tf.tidy(() => tf.scatterND(tf.tensor2d([...idx], [idx.length, 1], "int32"), dy, [t, c])),
    ],
  })) as tf.Tensor2D;
}

/** y[T,C] = 0 except y[idx[k]] = x[k]. */
export function scatterRows(x: tf.Tensor2D, idx: readonly number[], t: number): tf.Tensor2D {
  const c = x.shape[1];
  return customOp([x], ([x_]) => ({
    value: tf.tidy(() => tf.scatterND(tf.tensor2d([...idx], [idx.length, 1], "int32"), x_!, [t, c])),
    gradFunc: (dy: tf.Tensor) => [tf.tidy(() => tf.gather(dy, tf.tensor1d([...idx], "int32")))],
  })) as tf.Tensor2D;
}
