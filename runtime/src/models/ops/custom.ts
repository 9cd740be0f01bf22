/** Typed wrapper around `tf.customGrad` for ops with a hand-written gradient. */
import * as tf from "@tensorflow/tfjs";

export type GradFn = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];

export function customOp(
  inputs: readonly tf.Tensor[],
  body: (xs: tf.Tensor[], save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: GradFn },
): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    return body(args.slice(0, -1) as tf.Tensor[], save);
  });
  return f(...inputs);
}
