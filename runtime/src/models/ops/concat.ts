/**
 * Concatenation along the last (channel) axis as a rank-2 column concat, with a gradient of rank-2 column
 * slices (tf.concat's own gradient goes through SplitV, 0.7 s per call on wasm; docs/performance.md).
 */
import * as tf from "@tensorflow/tfjs";
import { customOp } from "./custom.js";

export function concatChannels<T extends tf.Tensor>(parts: readonly T[]): T {
  if (parts.length === 0) throw new Error("concatChannels: no inputs");
  if (parts.length === 1) return parts[0]!.clone();
  const lead = parts[0]!.shape.slice(0, -1);
  const widths = parts.map((p) => p.shape[p.shape.length - 1]!);
  const total = widths.reduce((a, b) => a + b, 0);
  return customOp(parts, (xs) => {
    const value = tf.tidy(() =>
      tf.reshape(
        tf.concat(
          xs.map((x, i) => tf.reshape(x, [-1, widths[i]!])),
          1,
        ),
        [...lead, total],
      ),
    );
    return {
      value,
      gradFunc: (dy: tf.Tensor) => {
        const dy2 = tf.reshape(dy, [-1, total]);
        let off = 0;
        return widths.map((w, i) => {
          const g = tf.reshape(tf.slice(dy2, [0, off], [-1, w]), parts[i]!.shape);
          off += w;
          return g;
        });
      },
    };
  }) as T;
}
