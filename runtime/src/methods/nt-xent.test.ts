import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { ntXent } from "./nt-xent.js";

await tf.setBackend("cpu");

/** Direct double-precision evaluation of the formula in nt-xent.ts. */
function reference(a: number[][], b: number[][], t: number): number {
  const z = [...a, ...b].map((r) => {
    const norm = Math.sqrt(r.reduce((s, v) => s + v * v, 0));
    return r.map((v) => v / norm);
  });
  const n = a.length;
  let total = 0;
  for (let i = 0; i < 2 * n; i++) {
    const s = z.map((zk) => zk.reduce((acc, v, d) => acc + v * z[i]![d]!, 0) / t);
    let den = 0;
    for (let k = 0; k < 2 * n; k++) if (k !== i) den += Math.exp(s[k]!);
    total += -Math.log(Math.exp(s[(i + n) % (2 * n)]!) / den);
  }
  return total / (2 * n);
}

test("ntXent equals the formula on random views, for several temperatures and batch sizes", () => {
  let seed = 7;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  for (const [n, d, t] of [
    [1, 3, 0.5],
    [3, 5, 0.5],
    [4, 16, 0.1],
    [2, 8, 1.0],
  ] as const) {
    const a = Array.from({ length: n }, () => Array.from({ length: d }, rnd));
    const b = Array.from({ length: n }, () => Array.from({ length: d }, rnd));
    const got = tf.tidy(() => ntXent(tf.tensor2d(a), tf.tensor2d(b), t).dataSync()[0]!);
    const want = reference(a, b, t);
    assert.ok(Math.abs(got - want) <= 1e-4 * Math.max(1, Math.abs(want)), `n=${n} d=${d} t=${t}: ${got} vs ${want}`);
  }
});

test("ntXent is low for matching views and high for swapped ones, and has gradients", () => {
  const a = tf.tensor2d([
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ]);
  const good = ntXent(a, a.clone(), 0.1).dataSync()[0]!;
  const bad = ntXent(
    a,
    tf.tensor2d([
      [0, 1, 0],
      [0, 0, 1],
      [1, 0, 0],
    ]),
    0.1,
  ).dataSync()[0]!;
  assert.ok(good < 0.01 && bad > 5, `good ${good}, bad ${bad}`);
  const g = tf.grad((x: tf.Tensor) =>
    ntXent(
      x as tf.Tensor2D,
      tf.tensor2d([
        [0.9, 0.1, 0],
        [0, 1, 0.2],
        [0.1, 0, 1],
      ]),
      0.5,
    ),
  )(a);
  assert.ok(g.dataSync().every(Number.isFinite));
  assert.throws(() => ntXent(a, tf.zeros([2, 3])), /differ/);
});
