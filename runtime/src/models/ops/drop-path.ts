/** Stochastic depth (timm DropPath): drop the whole residual branch per sample, rescale survivors by 1/(1−p). */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../rng.js";

export function dropPath<T extends tf.Tensor>(x: T, p: number, training: boolean, rng: Rng): T {
  if (!training || p <= 0) return x;
  const b = x.shape[0];
  const keep = 1 - p;
  const mask = Array.from({ length: b }, () => (rng.uniform() < keep ? 1 / keep : 0));
  return tf.tidy(() => tf.mul<T>(x, tf.tensor(mask, [b, ...x.shape.slice(1).map(() => 1)])));
}
