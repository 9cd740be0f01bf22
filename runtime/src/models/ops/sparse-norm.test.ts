/**
 * Known-answer tests of the sparse instance norm (SparK): statistics over visible voxels only, against a float64
 * reference written out below; gradients against central finite differences of that float64 reference; masked
 * voxels are 0 in the output and get zero gradient; an all-visible mask equals the dense instance norm. On the
 * default backend (cpu + native kernels when built) and on wasm.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { input, relDiff, useBackend } from "../../../../test/helpers/tf-check.js";
import { selectBackend } from "../backend/select.js";
import { instanceNorm } from "./norm.js";
import { sparseInstanceNorm, sparseInstanceNormComposed } from "./sparse-norm.js";

const B = 2,
  D = 3,
  H = 2,
  W = 3,
  C = 2;
const S = D * H * W;
const EPS = 1e-5;

// visible voxels: sample 0 has 7 of 18, sample 1 has 11 of 18 (different counts per sample)
const MASK = Float32Array.from({ length: B * S }, (_, i) =>
  (i < S ? [0, 2, 3, 7, 11, 12, 17].includes(i) : ![1, 4, 5, 9, 10, 14, 16].includes(i - S)) ? 1 : 0,
);
const X = input([B, D, H, W, C], 5, 3);
const GAMMA = Float32Array.from([1.5, -0.7]);
const BETA = Float32Array.from([0.25, -1.1]);
// a fixed weighting r: the scalar under test is L = Σ y·r
const R = input([B, D, H, W, C], 9).data;

/** float64 reference: per (sample, channel) mean and biased variance over visible voxels; 0 where masked. */
function reference(x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>): Float64Array {
  const y = new Float64Array(B * S * C);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      let n = 0,
        sum = 0;
      for (let s = 0; s < S; s++)
        if (MASK[b * S + s] === 1) {
          n++;
          sum += x[(b * S + s) * C + c]!;
        }
      const mean = sum / n;
      let sq = 0;
      for (let s = 0; s < S; s++) if (MASK[b * S + s] === 1) sq += (x[(b * S + s) * C + c]! - mean) ** 2;
      const rstd = 1 / Math.sqrt(sq / n + EPS);
      for (let s = 0; s < S; s++) {
        const i = (b * S + s) * C + c;
        y[i] = MASK[b * S + s] === 1 ? (x[i]! - mean) * rstd * gamma[c]! + beta[c]! : 0;
      }
    }
  }
  return y;
}

function lossRef(x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>): number {
  return reference(x, gamma, beta).reduce((a, v, i) => a + v * R[i]!, 0);
}

/** Central difference in float64 of the reference loss w.r.t. element i of argument j. */
function fd(j: 0 | 1 | 2, i: number, h = 1e-6): number {
  const args = [Float64Array.from(X.data), Float64Array.from(GAMMA), Float64Array.from(BETA)];
  const plus = args.map((a) => Float64Array.from(a));
  const minus = args.map((a) => Float64Array.from(a));
  plus[j]![i]! += h;
  minus[j]![i]! -= h;
  return (lossRef(plus[0]!, plus[1]!, plus[2]!) - lossRef(minus[0]!, minus[1]!, minus[2]!)) / (2 * h);
}

function ours(f = sparseInstanceNorm): { y: Float32Array; grads: Float32Array[] } {
  return tf.tidy(() => {
    const x = tf.tensor5d(X.data, [B, D, H, W, C]);
    const m = tf.tensor5d(MASK, [B, D, H, W, 1]);
    const g = tf.tensor1d(GAMMA),
      be = tf.tensor1d(BETA);
    const r = tf.tensor5d(R, [B, D, H, W, C]);
    const y = f(x, m, g, be, EPS);
    const { grads } = tf.valueAndGrads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.sum(tf.mul(f(a as tf.Tensor5D, m, b as tf.Tensor1D, c as tf.Tensor1D, EPS), r)),
    )([x, g, be]);
    return { y: y.dataSync() as Float32Array, grads: grads.map((t) => t.dataSync() as Float32Array) };
  });
}

for (const backend of ["default", "wasm"] as const) {
  describe(`sparse instance norm on ${backend === "default" ? "the default backend" : "wasm"}`, () => {
    const use = async (): Promise<void> => {
      if (backend === "default") await selectBackend("auto");
      else await useBackend("wasm");
    };

    test("values match the float64 reference (statistics over visible voxels only, 0 where masked)", async () => {
      await use();
      const { y } = ours();
      const ref = reference(X.data, GAMMA, BETA);
      for (let i = 0; i < y.length; i++)
        assert.ok(Math.abs(y[i]! - ref[i]!) < 2e-5, `y[${i}] = ${y[i]}, reference ${ref[i]}`);
      for (let v = 0; v < B * S; v++)
        if (MASK[v] === 0) for (let c = 0; c < C; c++) assert.ok(y[v * C + c] === 0, `masked y = ${y[v * C + c]}`);
      // visible outputs: per (sample, channel) mean beta and std |gamma|·sqrt(var/(var+eps)) ≈ |gamma|
      for (let b = 0; b < B; b++)
        for (let c = 0; c < C; c++) {
          const vis = Array.from({ length: S }, (_, s) => s)
            .filter((s) => MASK[b * S + s] === 1)
            .map((s) => y[(b * S + s) * C + c]!);
          const mean = vis.reduce((a, v) => a + v, 0) / vis.length;
          const sd = Math.sqrt(vis.reduce((a, v) => a + (v - mean) ** 2, 0) / vis.length);
          assert.ok(Math.abs(mean - BETA[c]!) < 1e-5, `sample ${b} channel ${c}: mean ${mean}`);
          assert.ok(Math.abs(sd - Math.abs(GAMMA[c]!)) < 1e-3, `sample ${b} channel ${c}: std ${sd}`);
        }
    });

    test("masked input values do not change the output", async () => {
      await use();
      const a = tf.tidy(() =>
        sparseInstanceNorm(
          tf.tensor5d(X.data, [B, D, H, W, C]),
          tf.tensor5d(MASK, [B, D, H, W, 1]),
          tf.tensor1d(GAMMA),
          tf.tensor1d(BETA),
        ).dataSync(),
      );
      const x2 = Float32Array.from(X.data, (v, i) => (MASK[Math.floor(i / C)] === 0 ? v * 100 + 7 : v));
      const b = tf.tidy(() =>
        sparseInstanceNorm(
          tf.tensor5d(x2, [B, D, H, W, C]),
          tf.tensor5d(MASK, [B, D, H, W, 1]),
          tf.tensor1d(GAMMA),
          tf.tensor1d(BETA),
        ).dataSync(),
      );
      assert.deepEqual(b, a);
    });

    test("gradients (x, gamma, beta) match float64 finite differences; masked voxels get zero gradient", async () => {
      await use();
      const { grads } = ours();
      const [gx, gg, gb] = grads as [Float32Array, Float32Array, Float32Array];
      for (let i = 0; i < gx.length; i++) {
        const want = fd(0, i);
        assert.ok(
          Math.abs(gx[i]! - want) <= 1e-3 * Math.max(1, Math.abs(want)),
          `dx[${i}] = ${gx[i]}, finite difference ${want}`,
        );
        if (MASK[Math.floor(i / C)] === 0) assert.ok(gx[i] === 0, `masked dx[${i}] = ${gx[i]}`);
      }
      for (let c = 0; c < C; c++) {
        assert.ok(
          Math.abs(gg[c]! - fd(1, c)) <= 1e-4 * Math.max(1, Math.abs(fd(1, c))),
          `dgamma[${c}] = ${gg[c]}, fd ${fd(1, c)}`,
        );
        assert.ok(
          Math.abs(gb[c]! - fd(2, c)) <= 1e-4 * Math.max(1, Math.abs(fd(2, c))),
          `dbeta[${c}] = ${gb[c]}, fd ${fd(2, c)}`,
        );
      }
    });

    test("hand-written gradient equals tfjs autodiff of the composed formulation", async () => {
      await use();
      const a = ours();
      const b = ours(sparseInstanceNormComposed);
      assert.ok(relDiff(a.y, b.y) < 1e-6, `value rel diff ${relDiff(a.y, b.y)}`);
      a.grads.forEach((g, j) => {
        assert.ok(relDiff(g, b.grads[j]!) < 1e-5, `grad ${j} rel diff ${relDiff(g, b.grads[j]!)}`);
      });
    });

    test("all-visible mask equals the dense instance norm; no tensor leak across forward+backward", async () => {
      await use();
      const x = tf.tensor5d(X.data, [B, D, H, W, C]);
      const ones = tf.ones<tf.Rank.R5>([B, D, H, W, 1]);
      const g = tf.tensor1d(GAMMA),
        be = tf.tensor1d(BETA);
      const a = tf.tidy(() => sparseInstanceNorm(x, ones, g, be).dataSync());
      const b = tf.tidy(() => instanceNorm(x, g, be).dataSync());
      assert.ok(relDiff(a, b) < 1e-5, `rel diff ${relDiff(a, b)}`);
      const m = tf.tensor5d(MASK, [B, D, H, W, 1]);
      const before = tf.memory().numTensors;
      const vg = tf.valueAndGrads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
        tf.sum(sparseInstanceNorm(p as tf.Tensor5D, m, q as tf.Tensor1D, r as tf.Tensor1D)),
      )([x, g, be]);
      tf.dispose([vg.value, ...vg.grads]);
      assert.equal(tf.memory().numTensors, before);
      tf.dispose([x, ones, g, be, m]);
    });
  });
}

test("a mask of the wrong shape is rejected", async () => {
  await selectBackend("auto");
  tf.tidy(() => {
    assert.throws(
      () => sparseInstanceNorm(tf.zeros([1, 2, 2, 2, 3]), tf.ones([1, 2, 2, 1, 1]), tf.ones([3]), tf.zeros([3])),
      /mask shape/,
    );
  });
});
