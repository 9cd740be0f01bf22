/**
 * Multi-head softmax attention written as per-head plain 2-D matMuls (batched/transposed matMul is a scalar
 * loop on wasm, docs/performance.md), with optional interleaved-pair rotary embedding on q and k.
 */
import * as tf from "@tensorflow/tfjs";
import { concatChannels } from "./concat.js";
import { customOp } from "./custom.js";
import { nativeCpu } from "./dispatch.js";
import { attentionFused, fusedAttentionAvailable } from "../backend/native.js";

export interface Rope {
  /** [T, headDim] shared by the batch, or [B, T, headDim] per sample (after token dropping). */
  readonly sin: tf.Tensor2D | tf.Tensor3D;
  readonly cos: tf.Tensor2D | tf.Tensor3D;
}

/** rot(x): adjacent pairs (x0,x1,x2,x3,…) → (−x1,x0,−x3,x2,…) along the last axis. */
export function rotatePairs<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    if (nativeCpu()) {
      // one native GEMM with the [hd,hd] pair-rotation matrix (gradient: one more GEMM) instead of slices + concat
      const hd = x.shape[x.rank - 1]!;
      return tf.reshape(tf.matMul(tf.reshape<tf.Rank.R2>(x, [-1, hd]), rotationMatrix(hd)), x.shape) as T;
    }
    const pairs = tf.reshape<tf.Rank.R2>(x, [-1, 2]);
    const a = tf.slice(pairs, [0, 0], [-1, 1]);
    const b = tf.slice(pairs, [0, 1], [-1, 1]);
    return tf.reshape(concatChannels([tf.neg(b), a]), x.shape) as T;
  });
}

const rotations = new Map<number, Float32Array>();
/** R with x·R = rot(x): R[2i+1][2i] = −1, R[2i][2i+1] = 1. */
function rotationMatrix(hd: number): tf.Tensor2D {
  if (hd % 2 !== 0) throw new Error(`rope: head dim ${hd} is odd`);
  let r = rotations.get(hd);
  if (r === undefined) {
    r = new Float32Array(hd * hd);
    for (let i = 0; i < hd; i += 2) {
      r[(i + 1) * hd + i] = -1;
      r[i * hd + i + 1] = 1;
    }
    rotations.set(hd, r);
  }
  return tf.tensor2d(r, [hd, hd]);
}

/** x·cos + rot(x)·sin with x [..., T, headDim]. */
export function applyRope<T extends tf.Tensor>(x: T, rope: Rope): T {
  return tf.tidy(() => tf.add<T>(tf.mul(x, rope.cos), tf.mul(rotatePairs(x), rope.sin)));
}

/**
 * Rope tables widened from [T,hd] (or [B,T,hd]) to the merged-heads layout [T,C] (or [B·T,C]): the same rotation
 * for every head, so RoPE can be applied to the projected q/k without splitting heads.
 */
function ropeForHeads(rope: Rope, heads: number): Rope {
  const widen = (t: tf.Tensor): tf.Tensor2D => {
    const hd = t.shape[t.shape.length - 1]!;
    const rows = t.size / hd;
    return tf.reshape<tf.Rank.R2>(tf.tile(tf.reshape(t, [rows, 1, hd]), [1, heads, 1]), [rows, heads * hd]);
  };
  return { sin: widen(rope.sin), cos: widen(rope.cos) };
}

/**
 * Softmax attention core on merged-heads matrices q,k,v [B·T, C] → [B·T, C], with a hand-written gradient:
 * per (sample, head) 2-D column slices and plain matMuls only, and the [T,T] probabilities recomputed in the
 * backward pass instead of stored (memory O(T·C) per layer instead of O(H·T²)).
 */
export function attentionCore(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  batch: number,
  heads: number,
): tf.Tensor2D {
  const [bt, c] = q.shape;
  const t = bt / batch;
  const hd = c / heads;
  const scale = 1 / Math.sqrt(hd);
  const part = (m: tf.Tensor2D, b: number, h: number): tf.Tensor2D => tf.slice(m, [b * t, h * hd], [t, hd]);
  const probs = (qh: tf.Tensor2D, kh: tf.Tensor2D): tf.Tensor2D => {
    const qs = tf.mul<tf.Tensor2D>(qh, scale);
    const kt = tf.transpose<tf.Tensor2D>(kh);
    return tf.softmax(tf.matMul(qs, kt)) as tf.Tensor2D;
  };
  const assemble = (blocks: tf.Tensor2D[][]): tf.Tensor2D => {
    const rows = blocks.map((hs) => (hs.length === 1 ? hs[0]! : tf.concat(hs, 1)));
    return rows.length === 1 ? rows[0]! : tf.concat(rows, 0);
  };
  return customOp([q, k, v], ([q_, k_, v_], save) => {
    save([q_!, k_!, v_!]);
    const value = tf.tidy(() => {
      const out: tf.Tensor2D[][] = [];
      for (let b = 0; b < batch; b++) {
        const hs: tf.Tensor2D[] = [];
        for (let h = 0; h < heads; h++) {
          hs.push(
            tf.tidy(() =>
              tf.matMul(
                probs(part(q_ as tf.Tensor2D, b, h), part(k_ as tf.Tensor2D, b, h)),
                part(v_ as tf.Tensor2D, b, h),
              ),
            ),
          );
        }
        out.push(hs);
      }
      return assemble(out);
    });
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const dO = dy as tf.Tensor2D;
        const dq: tf.Tensor2D[][] = [];
        const dk: tf.Tensor2D[][] = [];
        const dv: tf.Tensor2D[][] = [];
        for (let b = 0; b < batch; b++) {
          dq.push([]);
          dk.push([]);
          dv.push([]);
          for (let h = 0; h < heads; h++) {
            const [gq, gk, gv] = tf.tidy(() => {
              const qh = part(sq, b, h);
              const kh = part(sk, b, h);
              const vh = part(sv, b, h);
              const p = probs(qh, kh);
              const dOh = part(dO, b, h);
              const gV = tf.matMul(tf.transpose(p), dOh);
              const dP = tf.matMul(dOh, tf.transpose(vh));
              const dS = tf.mul(p, tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)));
              const gQ = tf.mul(tf.matMul(dS, kh), scale);
              const gK = tf.mul(tf.matMul(tf.transpose(dS), qh), scale);
              return [gQ, gK, gV] as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
            });
            dq[b]!.push(gq);
            dk[b]!.push(gk);
            dv[b]!.push(gv);
          }
        }
        return [assemble(dq), assemble(dk), assemble(dv)];
      },
    };
  }) as tf.Tensor2D;
}

/**
 * softmax(q·kᵀ·scale)·v per head, heads merged back to [B,T,C]. q,k,v: [B,T,C] already projected.
 * RoPE (if given) is applied to q and k of every head.
 */
export function multiHeadAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  heads: number,
  rope?: Rope,
): tf.Tensor3D {
  const [b, t, c] = q.shape;
  const hd = c / heads;
  if (!Number.isInteger(hd)) throw new Error(`attention: ${c} channels not divisible by ${heads} heads`);
  if (nativeCpu()) return attentionBatched(q, k, v, heads, 1 / Math.sqrt(hd), rope);
  return tf.tidy(() => {
    let q2 = tf.reshape<tf.Rank.R2>(q, [b * t, c]);
    let k2 = tf.reshape<tf.Rank.R2>(k, [b * t, c]);
    const v2 = tf.reshape<tf.Rank.R2>(v, [b * t, c]);
    if (rope !== undefined) {
      const r = ropeForHeads(rope, heads);
      // shared tables [T,C] broadcast over the batch through a [B,T,C] view; per-sample tables are already [B·T,C]
      const apply = (m: tf.Tensor2D): tf.Tensor2D =>
        rope.sin.rank === 3
          ? applyRope(m, r)
          : tf.reshape<tf.Rank.R2>(applyRope(tf.reshape(m, [b, t, c]), r), [b * t, c]);
      q2 = apply(q2);
      k2 = apply(k2);
    }
    return tf.reshape<tf.Rank.R3>(attentionCore(q2, k2, v2, b, heads), [b, t, c]);
  });
}

/**
 * cpu + native addon: all heads at once, [B,H,T,hd] tensors, one fused attention kernel (`attentionFused`: scores,
 * softmax and weighted sum per block of query rows; its gradient recomputes the probabilities). A per-sample rope [B,T,hd] broadcasts over
 * heads as [B,1,T,hd].
 */
function attentionBatched(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  heads: number,
  scale: number,
  rope?: Rope,
): tf.Tensor3D {
  const [b, t, c] = q.shape;
  const hd = c / heads;
  return tf.tidy(() => {
    const split = (z: tf.Tensor3D): tf.Tensor4D => tf.transpose(tf.reshape(z, [b, t, heads, hd]), [0, 2, 1, 3]);
    let qh = split(q);
    let kh = split(k);
    if (rope !== undefined) {
      const r =
        rope.sin.rank === 3
          ? ({ sin: tf.expandDims(rope.sin, 1), cos: tf.expandDims(rope.cos, 1) } as unknown as Rope)
          : rope;
      qh = applyRope(qh, r);
      kh = applyRope(kh, r);
    }
    // one fused kernel pair: the [B,H,T,T] probabilities are neither stored for the gradient nor materialised
    const o = fusedAttentionAvailable()
      ? attentionFused(qh, kh, split(v), scale)
      : tf.matMul(tf.softmax(tf.matMul(tf.mul(qh, scale), kh, false, true)), split(v));
    return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, t, c]);
  });
}
