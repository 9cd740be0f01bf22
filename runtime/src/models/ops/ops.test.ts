/**
 * Gradient checks of every custom-gradient op, on cpu, wasm and node (TensorFlow 2.21 on the CPU through
 * @tensorflow/tfjs-node, built by `npm run setup:tensorflow`): against the cpu backend's autodiff of the plain tfjs
 * formulation (the trusted reference, docs/decisions/0008-native-cpu-kernels.md) and against central finite differences.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import {
  finiteDiff,
  input,
  relDiff,
  useBackend,
  valueAndGrads,
  type Input,
} from "../../../../test/helpers/tf-check.js";
import { gatherRows, scatterRows } from "../gather-rows.js";
import { gelu, leakyRelu, silu } from "./activations.js";
import {
  applyRope,
  concatChannels,
  conv3d,
  convTranspose3d,
  instanceNorm,
  layerNorm,
  mm,
  addBias,
  multiHeadAttention,
  setConvImpl,
  type ConvImpl,
} from "./index.js";

type F = (...xs: tf.Tensor[]) => tf.Tensor;

interface Case {
  readonly name: string;
  readonly ours: F;
  /** Plain tfjs formulation; autodiff on cpu is the reference. Omitted when tfjs has no differentiable equivalent. */
  readonly ref?: F;
  readonly inputs: Input[];
  readonly convImpl?: ConvImpl;
}

function conv3dRef(stride: number): F {
  return (x, w) => {
    const p = (w.shape[0] - 1) / 2;
    const xp =
      p === 0
        ? x
        : tf.pad(x, [
            [0, 0],
            [p, p],
            [p, p],
            [p, p],
            [0, 0],
          ]);
    return tf.conv3d(xp as tf.Tensor5D, w as tf.Tensor5D, stride, "valid");
  };
}

function instanceNormRef(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, [1, 2, 3], true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
}

/** ConvTranspose3d k2s2 by definition: y[2d+i,2h+j,2w+k,o] = Σ_c x[d,h,w,c]·W[i,j,k,o,c]. Differentiable. */
function convTRef(x: tf.Tensor, w: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const [b, d, h, wd] = x.shape as [number, number, number, number, number];
  const co = w.shape[3]!;
  const parts: tf.Tensor[] = [];
  for (let i = 0; i < 2; i++)
    for (let j = 0; j < 2; j++)
      for (let k = 0; k < 2; k++) {
        const wk = tf.squeeze(tf.slice(w, [i, j, k, 0, 0], [1, 1, 1, -1, -1]), [0, 1, 2]); // [co, ci]
        parts.push(
          tf.reshape(tf.matMul(tf.reshape(x, [-1, x.shape[4]!]), wk as tf.Tensor2D, false, true), [b, d, h, wd, co]),
        );
      }
  const st = tf.reshape(tf.stack(parts, 4), [b, d, h, wd, 2, 2, 2, co]);
  return tf.add(tf.reshape(tf.transpose(st, [0, 1, 4, 2, 5, 3, 6, 7]), [b, 2 * d, 2 * h, 2 * wd, co]), bias);
}

function ropeTables(t: number, hd: number): { sin: tf.Tensor2D; cos: tf.Tensor2D } {
  const ang = new Float32Array(t * hd);
  for (let i = 0; i < t; i++) for (let j = 0; j < hd; j++) ang[i * hd + j] = (i + 1) * 0.37 * (Math.floor(j / 2) + 1);
  const a = tf.tensor2d(ang, [t, hd]);
  return { sin: tf.sin(a), cos: tf.cos(a) };
}

function attnRef(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number): tf.Tensor {
  const [b, t, c] = q.shape as [number, number, number];
  const hd = c / heads;
  const split = (z: tf.Tensor): tf.Tensor => tf.transpose(tf.reshape(z, [b, t, heads, hd]), [0, 2, 1, 3]);
  const s = tf.mul(tf.matMul(split(q) as tf.Tensor4D, split(k) as tf.Tensor4D, false, true), 1 / Math.sqrt(hd));
  const o = tf.matMul(tf.softmax(s), split(v));
  return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, t, c]);
}

function ropeRef(x: tf.Tensor, sin: tf.Tensor, cos: tf.Tensor): tf.Tensor {
  const hd = x.shape[x.shape.length - 1]!;
  // rot as an explicit matrix: (x0,x1) → (−x1,x0)
  const r = new Float32Array(hd * hd);
  for (let i = 0; i < hd; i += 2) {
    r[(i + 1) * hd + i] = -1;
    r[i * hd + i + 1] = 1;
  }
  const rot = tf.reshape(tf.matMul(tf.reshape(x, [-1, hd]), tf.tensor2d(r, [hd, hd])), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rot, sin));
}

const cases: Case[] = [
  ...(["tf", "conv2d"] as const).flatMap((impl): Case[] => [
    {
      name: `conv3d[${impl}] k3 s1`,
      convImpl: impl,
      ours: (x, w) => conv3d(x as tf.Tensor5D, w as tf.Tensor5D, { stride: 1 }),
      ref: conv3dRef(1),
      inputs: [input([2, 4, 5, 3, 3], 1), input([3, 3, 3, 3, 4], 2, 0.3)],
    },
    {
      name: `conv3d[${impl}] k3 s2 even`,
      convImpl: impl,
      ours: (x, w) => conv3d(x as tf.Tensor5D, w as tf.Tensor5D, { stride: 2 }),
      ref: conv3dRef(2),
      inputs: [input([2, 4, 6, 4, 2], 3), input([3, 3, 3, 2, 3], 4, 0.3)],
    },
    {
      name: `conv3d[${impl}] k3 s2 odd`,
      convImpl: impl,
      ours: (x, w) => conv3d(x as tf.Tensor5D, w as tf.Tensor5D, { stride: 2 }),
      ref: conv3dRef(2),
      inputs: [input([1, 5, 3, 7, 2], 5), input([3, 3, 3, 2, 2], 6, 0.3)],
    },
    {
      name: `conv3d[${impl}] k1 + bias`,
      convImpl: impl,
      ours: (x, w, b) => conv3d(x as tf.Tensor5D, w as tf.Tensor5D, { bias: b as tf.Tensor1D }),
      ref: (x, w, b) => tf.add(conv3dRef(1)(x, w), b),
      inputs: [input([2, 3, 2, 3, 4], 7), input([1, 1, 1, 4, 3], 8), input([3], 9)],
    },
    {
      name: `conv3d[${impl}] k3 s1 + bias`,
      convImpl: impl,
      ours: (x, w, b) => conv3d(x as tf.Tensor5D, w as tf.Tensor5D, { bias: b as tf.Tensor1D }),
      ref: (x, w, b) => tf.add(conv3dRef(1)(x, w), b),
      inputs: [input([1, 3, 4, 2, 2], 10), input([3, 3, 3, 2, 2], 11, 0.3), input([2], 12)],
    },
  ]),
  {
    name: "convTranspose3d k2s2 + bias",
    ours: (x, w, b) => convTranspose3d(x as tf.Tensor5D, w as tf.Tensor5D, b as tf.Tensor1D),
    ref: convTRef,
    inputs: [input([2, 2, 3, 2, 3], 13), input([2, 2, 2, 4, 3], 14), input([4], 15)],
  },
  {
    name: "instanceNorm B=2",
    ours: (x, g, b) => instanceNorm(x, g as tf.Tensor1D, b as tf.Tensor1D),
    ref: instanceNormRef,
    inputs: [input([2, 3, 4, 2, 3], 16, 2), input([3], 17), input([3], 18)],
  },
  {
    name: "instanceNorm B=1",
    ours: (x, g, b) => instanceNorm(x, g as tf.Tensor1D, b as tf.Tensor1D),
    ref: instanceNormRef,
    inputs: [input([1, 2, 2, 3, 4], 19, 2), input([4], 20), input([4], 21)],
  },
  {
    name: "concatChannels",
    ours: (a, b, c) => concatChannels([a, b, c]),
    ref: (a, b, c) => tf.concat([a, b, c], -1),
    inputs: [input([2, 2, 3, 2, 3], 22), input([2, 2, 3, 2, 1], 23), input([2, 2, 3, 2, 2], 24)],
  },
  {
    name: "mm",
    ours: (a, b) => mm(a as tf.Tensor2D, b as tf.Tensor2D),
    ref: (a, b) => tf.matMul(a, b),
    inputs: [input([5, 4], 25), input([4, 3], 26)],
  },
  {
    name: "addBias",
    ours: (x, b) => addBias(x, b as tf.Tensor1D),
    ref: (x, b) => tf.add(x, b),
    inputs: [input([2, 3, 4], 27), input([4], 28)],
  },
  {
    name: "layerNorm eps 1e-6",
    ours: (x, g, b) => layerNorm(x, g as tf.Tensor1D, b as tf.Tensor1D, 1e-6),
    ref: (x, g, b) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-6))), g), b);
    },
    inputs: [input([2, 3, 6], 29, 2), input([6], 30), input([6], 31)],
  },
  {
    name: "attention 2 heads",
    ours: (q, k, v) => multiHeadAttention(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, 2),
    ref: (q, k, v) => attnRef(q, k, v, 2),
    inputs: [input([2, 5, 8], 32), input([2, 5, 8], 33), input([2, 5, 8], 34)],
  },
  {
    name: "attention with per-sample rope (token dropping)",
    ours: (q, k, v) => {
      const a = ropeTables(6, 4);
      const sel = (t: tf.Tensor2D, rows: number[][]): tf.Tensor3D =>
        tf.stack(rows.map((r) => tf.gather(t, tf.tensor1d(r, "int32")))) as tf.Tensor3D;
      const idx = [
        [0, 2, 5],
        [1, 3, 4],
      ];
      return multiHeadAttention(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, 2, {
        sin: sel(a.sin, idx),
        cos: sel(a.cos, idx),
      });
    },
    ref: (q, k, v) => {
      const a = ropeTables(6, 4);
      const idx = [
        [0, 2, 5],
        [1, 3, 4],
      ];
      const outs = idx.map((rows, b) => {
        const sin = tf.gather(a.sin, tf.tensor1d(rows, "int32"));
        const cos = tf.gather(a.cos, tf.tensor1d(rows, "int32"));
        const one = (z: tf.Tensor): tf.Tensor => tf.slice(z, [b, 0, 0], [1, -1, -1]);
        const rs = (z: tf.Tensor): tf.Tensor => {
          const zh = tf.transpose(tf.reshape(one(z), [1, 3, 2, 4]), [0, 2, 1, 3]);
          return tf.reshape(tf.transpose(ropeRef(zh, sin, cos), [0, 2, 1, 3]), [1, 3, 8]);
        };
        return attnRef(rs(q), rs(k), one(v), 2);
      });
      return tf.concat(outs, 0);
    },
    inputs: [input([2, 3, 8], 42), input([2, 3, 8], 43), input([2, 3, 8], 44)],
  },
  {
    name: "gelu (erf)",
    ours: (x) => gelu(x),
    ref: (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2)))),
    inputs: [input([3, 7], 45, 3)],
  },
  {
    name: "silu",
    ours: (x) => silu(x),
    ref: (x) => tf.div(x, tf.add(1, tf.exp(tf.neg(x)))),
    inputs: [input([3, 7], 46, 3)],
  },
  {
    name: "leakyRelu 0.01",
    ours: (x) => leakyRelu(x),
    ref: (x) => tf.maximum(x, tf.mul(x, 0.01)),
    inputs: [input([3, 7], 47, 3)],
  },
  {
    name: "gatherRows",
    ours: (x) => gatherRows(x as tf.Tensor2D, [4, 1, 2]),
    ref: (x) => tf.gather(x, tf.tensor1d([4, 1, 2], "int32")),
    inputs: [input([6, 3], 40)],
  },
  {
    name: "scatterRows",
    ours: (x) => scatterRows(x as tf.Tensor2D, [4, 1, 2], 6),
    ref: (x) => {
      const oh = new Float32Array(18);
      [4, 1, 2].forEach((r, k) => (oh[r * 3 + k] = 1));
      return tf.matMul(tf.tensor2d(oh, [6, 3]), x);
    },
    inputs: [input([3, 5], 41)],
  },
  {
    name: "rope (interleaved pairs)",
    ours: (x) => {
      const r = ropeTables(5, 4);
      return applyRope(x, r);
    },
    ref: (x) => {
      const r = ropeTables(5, 4);
      return ropeRef(x, r.sin, r.cos);
    },
    inputs: [input([3, 5, 4], 35)],
  },
  {
    name: "attention with rope",
    ours: (q, k, v) => multiHeadAttention(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, 2, ropeTables(4, 4)),
    ref: (q, k, v) => {
      const r = ropeTables(4, 4);
      const rs = (z: tf.Tensor): tf.Tensor => {
        const [b, t] = z.shape as [number, number, number];
        const zh = tf.transpose(tf.reshape(z, [b, t, 2, 4]), [0, 2, 1, 3]);
        return tf.reshape(tf.transpose(ropeRef(zh, r.sin, r.cos), [0, 2, 1, 3]), [b, t, 8]);
      };
      return attnRef(rs(q), rs(k), v, 2);
    },
    inputs: [input([1, 4, 8], 36), input([1, 4, 8], 37), input([1, 4, 8], 38)],
  },
];

for (const backend of ["cpu", "wasm", "node"] as const) {
  describe(`ops on ${backend}`, () => {
    after(() => {
      setConvImpl(undefined);
    });
    // tf.conv3d's backprop kernels are wrong on wasm (docs/performance.md): the "tf" impl is never used there.
    for (const c of cases.filter((k) => !(backend === "wasm" && k.convImpl === "tf"))) {
      test(c.name, async () => {
        await useBackend("cpu");
        const ref = valueAndGrads(c.ref ?? c.ours, c.inputs);
        await useBackend(backend);
        setConvImpl(c.convImpl);
        const got = valueAndGrads(c.ours, c.inputs);
        // leaks: forward+backward outside any tidy, then dispose what we own
        const before = tf.memory().numTensors;
        const xs = c.inputs.map((i) => tf.tensor(i.data, i.shape));
        const vg = tf.valueAndGrads((...a: tf.Tensor[]) => tf.sum(c.ours(...a)))(xs);
        tf.dispose([vg.value, ...vg.grads, ...xs]);
        assert.equal(tf.memory().numTensors, before, "tensor leak across forward+backward");
        assert.deepEqual(got.shape, ref.shape);
        assert.ok(relDiff(got.value, ref.value) < 1e-5, `value: ${relDiff(got.value, ref.value)}`);
        got.grads.forEach((g, j) => {
          const r = relDiff(g, ref.grads[j]!);
          assert.ok(r < 1e-4, `grad of input ${j} vs cpu autodiff: rel ${r}`);
        });
        // finite differences at a few positions of every input
        for (let j = 0; j < c.inputs.length; j++) {
          const n = c.inputs[j]!.data.length;
          for (const idx of [0, Math.floor(n / 2), n - 1]) {
            const fd = finiteDiff(c.ours, c.inputs, j, idx);
            const an = got.grads[j]![idx]!;
            assert.ok(
              Math.abs(fd - an) <= 2e-2 * Math.max(1, Math.abs(an)),
              `input ${j}[${idx}]: finite diff ${fd} vs analytic ${an}`,
            );
          }
        }
        setConvImpl(undefined);
      });
    }
  });
}

test("dropPath: identity in eval, per-sample 0 or 1/(1-p) in training, deterministic per seed", async () => {
  await useBackend("cpu");
  const { dropPath } = await import("./drop-path.js");
  const { Rng } = await import("../rng.js");
  const x = tf.ones([64, 2, 3]);
  assert.equal(dropPath(x, 0.5, false, new Rng(1)), x);
  const y = dropPath(x, 0.25, true, new Rng(1));
  const v = y.dataSync();
  for (let b = 0; b < 64; b++) {
    const s = v.slice(b * 6, b * 6 + 6);
    assert.ok(s.every((e) => e === s[0]) && (s[0] === 0 || Math.abs(s[0]! - 1 / 0.75) < 1e-6));
  }
  const kept = Array.from({ length: 64 }, (_, b) => v[b * 6]! > 0).filter(Boolean).length;
  assert.ok(kept > 32 && kept < 60, `kept ${kept} of 64 at p=0.25`);
  assert.deepEqual(dropPath(x, 0.25, true, new Rng(1)).dataSync(), v);
  tf.dispose([x, y]);
});
