/**
 * NT-Xent (normalised temperature-scaled cross-entropy, SimCLR), as used by nnssl's SimCLR and SwinUNETR pre-text
 * trainers (nnssl `src/nnssl/training/loss/swinunetr_loss.py`, `contrastive_loss.py`): rows `a[i]` and `b[i]` are two
 * views of the same thing (a positive pair); every other row of both views is a negative. With z = L2-normalised
 * concat(a, b) (2N rows) and s_ij = z_i·z_j / τ:
 *
 *   L = (1 / 2N) Σ_i −log( exp(s_i,pos(i)) / Σ_{k≠i} exp(s_ik) ),   pos(i) = i ± N
 *
 * computed as a log-softmax over each row with the diagonal excluded (numerically stable).
 */
import * as tf from "@tensorflow/tfjs";

export function ntXent(a: tf.Tensor2D, b: tf.Tensor2D, temperature = 0.5): tf.Scalar {
  if (a.shape[0] !== b.shape[0] || a.shape[1] !== b.shape[1])
    throw new Error(`ntXent: views differ in shape (${a.shape.join("x")} vs ${b.shape.join("x")})`);
  const n = a.shape[0];
  if (n < 1) throw new Error("ntXent: needs at least one pair");
  return tf.tidy(() => {
    const z = tf.concat([a, b], 0);
    const zn = tf.div(z, tf.maximum(tf.norm(z, "euclidean", 1, true), 1e-12));
    const sim = tf.div(tf.matMul(zn, zn, false, true), temperature); // [2N, 2N]
    // exclude k = i: a large negative on the diagonal (exp underflows to exactly 0)
    const logits = tf.sub(sim, tf.mul(tf.eye(2 * n), 1e9));
    const logProb = tf.logSoftmax(logits, 1);
    const pos = new Float32Array(4 * n * n);
    for (let i = 0; i < 2 * n; i++) pos[i * 2 * n + ((i + n) % (2 * n))] = 1;
    return tf.div<tf.Scalar>(tf.neg(tf.sum(tf.mul(logProb, tf.tensor2d(pos, [2 * n, 2 * n])))), 2 * n);
  });
}
