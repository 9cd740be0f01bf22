/**
 * Multi-head softmax attention written as per-head plain 2-D matMuls (batched/transposed matMul is a scalar
 * loop on wasm, tfjs-on-cpu.md §3b), with optional interleaved-pair rotary embedding on q and k.
 */
import * as tf from "@tensorflow/tfjs";
import { concatChannels } from "./concat.js";
import { mm } from "./linear.js";

export interface Rope {
  /** [T, headDim] shared by the batch, or [B, T, headDim] per sample (after token dropping). */
  readonly sin: tf.Tensor2D | tf.Tensor3D;
  readonly cos: tf.Tensor2D | tf.Tensor3D;
}

/** rot(x): adjacent pairs (x0,x1,x2,x3,…) → (−x1,x0,−x3,x2,…) along the last axis. */
export function rotatePairs<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const pairs = tf.reshape<tf.Rank.R2>(x, [-1, 2]);
    const a = tf.slice(pairs, [0, 0], [-1, 1]);
    const b = tf.slice(pairs, [0, 1], [-1, 1]);
    return tf.reshape(concatChannels([tf.neg(b), a]), x.shape) as T;
  });
}

/** x·cos + rot(x)·sin with x [..., T, headDim]. */
export function applyRope<T extends tf.Tensor>(x: T, rope: Rope): T {
  return tf.tidy(() => tf.add<T>(tf.mul(x, rope.cos), tf.mul(rotatePairs(x), rope.sin)));
}

/** [B,T,H·hd] → B·H tensors [T,hd] (b-major). unstack's gradient is a single stack. */
function splitHeads(x: tf.Tensor3D, heads: number): tf.Tensor3D {
  const [b, t, c] = x.shape;
  return tf.reshape(tf.transpose(tf.reshape(x, [b, t, heads, c / heads]), [0, 2, 1, 3]), [b * heads, t, c / heads]);
}

/**
 * softmax(q·kᵀ·scale)·v per head, heads merged back to [B,T,C]. q,k,v: [B,T,C] already projected.
 * RoPE (if given) is applied to q and k of every head.
 */
export function multiHeadAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number, rope?: Rope): tf.Tensor3D {
  const [b, t, c] = q.shape;
  const hd = c / heads;
  if (!Number.isInteger(hd)) throw new Error(`attention: ${c} channels not divisible by ${heads} heads`);
  const scale = 1 / Math.sqrt(hd);
  return tf.tidy(() => {
    let qh = splitHeads(q, heads);
    let kh = splitHeads(k, heads);
    const vh = splitHeads(v, heads);
    if (rope !== undefined) {
      if (rope.sin.rank === 3) {
        // per-sample tables: [B,1,T,hd] against heads [B,H,T,hd]
        const r4 = { sin: tf.expandDims(rope.sin, 1), cos: tf.expandDims(rope.cos, 1) } as unknown as Rope;
        qh = tf.reshape(applyRope(tf.reshape(qh, [b, heads, t, hd]), r4), [b * heads, t, hd]);
        kh = tf.reshape(applyRope(tf.reshape(kh, [b, heads, t, hd]), r4), [b * heads, t, hd]);
      } else {
        qh = applyRope(qh, rope);
        kh = applyRope(kh, rope);
      }
    }
    const qs = tf.unstack(tf.mul(qh, scale)) as tf.Tensor2D[];
    const ks = tf.unstack(kh) as tf.Tensor2D[];
    const vs = tf.unstack(vh) as tf.Tensor2D[];
    // one tidy per head: without a gradient tape the [T,T] matrices are freed head by head (a tape keeps what
    // backward needs on its own, so this is safe in training too)
    const outs = qs.map((qi, i) => tf.tidy(() => mm(tf.softmax(mm(qi, tf.transpose(ks[i]!))), vs[i]!)));
    const o = tf.reshape(tf.stack(outs), [b, heads, t, hd]);
    return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, t, c]);
  });
}
