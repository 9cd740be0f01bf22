/**
 * Native cpu kernels against tfjs's stock cpu kernels, same process: each case runs once with the native kernels
 * registered and once with the stock ones restored. Random shapes with odd sizes, strides 1/2, same/valid padding,
 * channel counts that are not multiples of the SIMD width; forward values and gradients (tf.grads through the ops).
 * Both native code paths are covered: oneDNN + OpenBLAS (when built in) and the portable im2col + own GEMM.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { instanceNorm, instanceNormLeakyRelu, layerNorm } from "../ops/norm.js";
import { sparseInstanceNorm, sparseInstanceNormComposed, sparseInstanceNormLeakyRelu } from "../ops/sparse-norm.js";
import { addBias, addLeakyRelu, applyRope, linear, mm, multiHeadAttention, type Rope } from "../ops/index.js";
import {
  attentionFused,
  fusedSparseNormAvailable,
  instanceNormFused,
  sparseInstanceNormFused,
  layerNormFused,
  loadNativeKernels,
  nativeAddon,
  nativeInfo,
  nativeKernelsLoaded,
  setNativeOptions,
  unloadNativeKernels,
} from "./native.js";
import { nativeSkipReason } from "../../../../test/helpers/native.js";

const available = loadNativeKernels();
const skipReason = nativeSkipReason(available);

function maxAbs(t: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]!);
}

function assertClose(actual: tf.Tensor, expected: tf.Tensor, what: string, rtol = 2e-5): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  if (expected.size === 0) return;
  const diff = tf.tidy(() => maxAbs(tf.sub(actual, expected)));
  const scale = Math.max(1, maxAbs(expected));
  assert.ok(
    Number.isFinite(diff) && diff <= rtol * scale * 10,
    `${what}: max |native - stock| = ${diff} (scale ${scale})`,
  );
}

/** Runs fn with the native kernels, then with tfjs's stock kernels; returns both results. */
function both<T extends tf.Tensor | tf.Tensor[]>(fn: () => T): { native: T; stock: T } {
  assert.ok(nativeKernelsLoaded());
  const native = fn();
  unloadNativeKernels();
  try {
    return { native, stock: fn() };
  } finally {
    loadNativeKernels();
  }
}

interface ConvCase {
  x: [number, number, number, number, number];
  k: [number, number, number];
  out: number;
  strides: [number, number, number] | number;
  pad: "same" | "valid";
  dilations?: number;
}

const convCases: ConvCase[] = [
  { x: [1, 5, 6, 7, 3], k: [3, 3, 3], out: 5, strides: 1, pad: "same" },
  { x: [2, 7, 9, 5, 5], k: [3, 3, 3], out: 17, strides: 2, pad: "same" },
  { x: [2, 7, 6, 9, 4], k: [3, 3, 3], out: 6, strides: [2, 1, 2], pad: "valid" },
  { x: [1, 6, 5, 4, 9], k: [1, 1, 1], out: 3, strides: 1, pad: "valid" },
  { x: [2, 8, 7, 6, 4], k: [1, 1, 1], out: 7, strides: 2, pad: "same" },
  { x: [1, 8, 6, 4, 3], k: [2, 2, 2], out: 10, strides: 2, pad: "valid" },
  { x: [1, 4, 4, 4, 33], k: [3, 3, 3], out: 19, strides: 1, pad: "same" },
];

const impls = [
  { name: "default (oneDNN convolutions and sgemm when built in)", opts: { dnnl: true, blas: false } },
  { name: "OpenBLAS GEMM (when built in)", opts: { dnnl: true, blas: true } },
  { name: "portable (im2col + own GEMM)", opts: { dnnl: false, blas: false } },
];

describe("native cpu kernels", { skip: skipReason }, () => {
  before(async () => {
    await tf.setBackend("cpu");
  });
  after(() => {
    setNativeOptions({ dnnl: true, blas: false });
  });

  test("reports its build features", () => {
    const info = nativeInfo();
    assert.ok(info !== null);
    assert.ok(info.threads >= 1);
    assert.match(info.gemmIsa, /^(avx2-fma|generic)$/);
  });

  for (const impl of impls) {
    describe(impl.name, () => {
      before(() => {
        setNativeOptions(impl.opts);
      });

      for (const c of convCases) {
        const label = `conv3d x=[${c.x.join(",")}] k=${c.k.join("x")} out=${c.out} s=${JSON.stringify(c.strides)} ${c.pad}`;
        test(`${label}: forward and gradients`, () => {
          const x = tf.randomNormal<tf.Rank.R5>(c.x, 0, 1, "float32", 11);
          const w = tf.randomNormal<tf.Rank.R5>([...c.k, c.x[4], c.out], 0, 1, "float32", 12);
          const y0 = tf.conv3d(x, w, c.strides, c.pad);
          const dy = tf.randomNormal(y0.shape, 0, 1, "float32", 13);
          const before = tf.memory().numTensors;
          const r = both(() => {
            const y = tf.conv3d(x, w, c.strides, c.pad);
            const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
              tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, c.strides, c.pad),
            );
            return [y, ...g([x, w], dy)];
          });
          assertClose(r.native[0]!, r.stock[0]!, `${label} forward`);
          assertClose(r.native[1]!, r.stock[1]!, `${label} dx`);
          assertClose(r.native[2]!, r.stock[2]!, `${label} dw`);
          tf.dispose([...r.native, ...r.stock]);
          assert.equal(tf.memory().numTensors, before, "no leaked tensors");
          tf.dispose([x, w, y0, dy]);
        });
      }

      test("conv3d with dilation 2 (forward)", () => {
        const x = tf.randomNormal<tf.Rank.R5>([1, 9, 8, 7, 3], 0, 1, "float32", 21);
        const w = tf.randomNormal<tf.Rank.R5>([3, 3, 3, 3, 5], 0, 1, "float32", 22);
        const r = both(() => tf.conv3d(x, w, 1, "valid", "NDHWC", 2));
        assertClose(r.native, r.stock, "dilated conv3d");
        tf.dispose([x, w, r.native, r.stock]);
      });

      test("conv3dTranspose k2 s2 (Conv3DBackpropInputV2 as upsampling)", () => {
        const x = tf.randomNormal<tf.Rank.R5>([2, 3, 4, 5, 6], 0, 1, "float32", 31);
        const w = tf.randomNormal<tf.Rank.R5>([2, 2, 2, 3, 6], 0, 1, "float32", 32);
        const r = both(() => tf.conv3dTranspose(x, w, [2, 6, 8, 10, 3], 2, "valid"));
        assertClose(r.native, r.stock, "conv3dTranspose");
        tf.dispose([x, w, r.native, r.stock]);
      });

      const mmCases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
        { a: [5, 7], b: [7, 3], ta: false, tb: false },
        { a: [7, 5], b: [3, 7], ta: true, tb: true },
        { a: [2, 3, 17, 9], b: [2, 3, 17, 33], ta: true, tb: false },
        { a: [4, 19, 6], b: [4, 6, 21], ta: false, tb: false },
        { a: [3, 13, 8], b: [3, 10, 8], ta: false, tb: true },
        { a: [2, 40, 130], b: [2, 130, 70], ta: false, tb: false },
        // attention-like batches (one product per thread) and one large product (threads inside), odd sizes
        { a: [2, 3, 67, 29], b: [2, 3, 67, 29], ta: false, tb: true },
        { a: [301, 257], b: [190, 257], ta: false, tb: true },
        { a: [257, 301], b: [257, 190], ta: true, tb: false },
        // vector shapes (ones-vector reductions): the GEMV paths
        { a: [1, 3000], b: [3000, 9], ta: false, tb: false },
        { a: [3000, 1], b: [9, 3000], ta: true, tb: true },
        { a: [37, 300], b: [300, 1], ta: false, tb: false },
        { a: [37, 300], b: [1, 300], ta: false, tb: true },
        // small output, long reduction: the split-K path
        { a: [8, 9000], b: [9000, 7], ta: false, tb: false },
        { a: [9000, 8], b: [7, 9000], ta: true, tb: true },
      ];
      for (const m of mmCases) {
        const label = `matMul [${m.a.join(",")}]${m.ta ? "^T" : ""} x [${m.b.join(",")}]${m.tb ? "^T" : ""}`;
        test(`${label}: forward and gradients`, () => {
          const a = tf.randomNormal(m.a, 0, 1, "float32", 41);
          const b = tf.randomNormal(m.b, 0, 1, "float32", 42);
          const r = both(() => {
            const y = tf.matMul(a, b, m.ta, m.tb);
            const dy = tf.randomNormal(y.shape, 0, 1, "float32", 43);
            const g = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q, m.ta, m.tb))([a, b], dy);
            dy.dispose();
            return [y, ...g];
          });
          assertClose(r.native[0]!, r.stock[0]!, `${label} forward`);
          assertClose(r.native[1]!, r.stock[1]!, `${label} da`);
          assertClose(r.native[2]!, r.stock[2]!, `${label} db`);
          tf.dispose([a, b, ...r.native, ...r.stock]);
        });
      }

      // tfjs's BatchMatMul gradient does not reduce over broadcast batch dims (on any kernel), so broadcasting is
      // checked forward only, against 2-D products (the stock kernel's bi % batch indexing is not numpy broadcasting).
      test("matMul with numpy batch broadcasting [3,1,5,7] x [4,7,6]", () => {
        const a = tf.randomNormal([3, 1, 5, 7], 0, 1, "float32", 51);
        const b = tf.randomNormal([4, 7, 6], 0, 1, "float32", 52);
        const y = tf.matMul(a, b);
        assert.deepEqual(y.shape, [3, 4, 5, 6]);
        // Reference: each output batch (i, j) is a[i, 0] x b[j] (computed with 2-D matMuls).
        for (let i = 0; i < 3; i++) {
          for (let j = 0; j < 4; j++) {
            const ref = tf.tidy(() =>
              tf.matMul(
                a.slice([i, 0, 0, 0], [1, 1, 5, 7]).reshape([5, 7]),
                b.slice([j, 0, 0], [1, 7, 6]).reshape([7, 6]),
              ),
            );
            const got = y.slice([i, j, 0, 0], [1, 1, 5, 6]).reshape([5, 6]);
            assertClose(got, ref, `batch (${i},${j})`);
            tf.dispose([ref, got]);
          }
        }
        tf.dispose([a, b, y]);
      });

      test("matMul broadcasting a rank-2 operand [4,19,6] x [6,21] (forward)", () => {
        const a = tf.randomNormal([4, 19, 6], 0, 1, "float32", 53);
        const b = tf.randomNormal([6, 21], 0, 1, "float32", 54);
        const r = both(() => tf.matMul(a, b));
        assertClose(r.native, r.stock, "broadcast rank-2");
        tf.dispose([a, b, r.native, r.stock]);
      });

      for (const activation of ["linear", "relu", "leakyrelu", "sigmoid"] as const) {
        test(`fused matMul with bias and ${activation}: forward and gradients`, () => {
          const a = tf.randomNormal([2, 9, 11], 0, 1, "float32", 61);
          const b = tf.randomNormal([2, 11, 13], 0, 1, "float32", 62);
          const bias = tf.randomNormal([13], 0, 1, "float32", 63);
          const f = (p: tf.Tensor, q: tf.Tensor, s: tf.Tensor): tf.Tensor =>
            tf.fused.matMul({ a: p, b: q, bias: s, activation, leakyreluAlpha: 0.01 });
          const r = both(() => [f(a, b, bias), ...tf.grads(f)([a, b, bias])]);
          r.native.forEach((t, i) => {
            assertClose(t, r.stock[i]!, `fused ${activation} output ${i}`);
          });
          tf.dispose([a, b, bias, ...r.native, ...r.stock]);
        });
      }
    });
  }

  describe("memory-bound kernels", () => {
    const pairs: [number[], number[]][] = [
      [
        [2, 5, 4, 3, 7],
        [2, 5, 4, 3, 7],
      ],
      [[2, 5, 4, 3, 7], [7]],
      [
        [2, 5, 4, 3, 7],
        [2, 1, 1, 1, 7],
      ],
      [
        [2, 1, 1, 1, 7],
        [2, 5, 4, 3, 7],
      ],
      [
        [3, 1, 6],
        [1, 4, 1],
      ],
      [[9, 13], []],
      [[], [4, 1]],
      [[0, 3], [3]],
    ];
    const ops = [
      ["add", tf.add],
      ["sub", tf.sub],
      ["mul", tf.mul],
      ["div", tf.div],
      ["squaredDifference", tf.squaredDifference],
    ] as const;
    for (const [sa, sb] of pairs) {
      for (const [name, op] of ops) {
        test(`${name} [${sa.join(",")}] with [${sb.join(",")}]: forward and gradients`, () => {
          const a = tf.randomNormal(sa, 0, 1, "float32", 71);
          const b = tf.add(tf.abs(tf.randomNormal(sb, 0, 1, "float32", 72)), 0.5);
          // tfjs's SquaredDifference gradient does not reduce broadcast axes (any kernel): forward only there.
          const withGrad = name !== "squaredDifference" || sa.join() === sb.join();
          const r = both(() => [
            op(a, b),
            ...(withGrad ? tf.grads((p: tf.Tensor, q: tf.Tensor) => op(p, q))([a, b]) : []),
          ]);
          r.native.forEach((t, i) => {
            assertClose(t, r.stock[i]!, `${name} output ${i}`);
          });
          tf.dispose([a, b, ...r.native, ...r.stock]);
        });
      }
    }

    for (const [sa, sb] of [
      [[2, 5, 4, 3, 7], []],
      [
        [2, 5, 4, 3, 7],
        [2, 1, 1, 1, 7],
      ],
      [
        [6, 1],
        [1, 5],
      ],
    ] as const) {
      test(`comparisons and select [${sa.join(",")}] with [${sb.join(",")}]`, () => {
        const a = tf.round(tf.randomNormal([...sa], 0, 2, "float32", 141));
        const b = tf.round(tf.randomNormal([...sb], 0, 2, "float32", 142));
        const r = both(() => {
          const outs: tf.Tensor[] = [
            tf.greater(a, b),
            tf.greaterEqual(a, b),
            tf.less(a, b),
            tf.lessEqual(a, b),
            tf.equal(a, b),
          ];
          const m = tf.greater(a, tf.zerosLike(a));
          outs.push(tf.where(m, a, tf.mul(a, 0.01)), m);
          // LeakyRelu's gradient is where(greater(x, 0), dy, dy * alpha).
          outs.push(tf.grad((p: tf.Tensor) => tf.leakyRelu(p, 0.01))(a));
          return outs;
        });
        r.native.forEach((t, i) => {
          assert.equal(t.dtype, r.stock[i]!.dtype);
          assertClose(tf.cast(t, "float32"), tf.cast(r.stock[i]!, "float32"), `comparison/select output ${i}`);
        });
        tf.dispose([a, b, ...r.native, ...r.stock]);
      });
    }

    const reductions: { shape: number[]; axis: number | number[]; keepDims: boolean }[] = [
      { shape: [2, 6, 5, 7, 9], axis: [1, 2, 3], keepDims: true },
      { shape: [2, 6, 5, 7, 9], axis: [1, 2, 3], keepDims: false },
      { shape: [3, 40, 17], axis: -1, keepDims: true },
      { shape: [3, 40, 17], axis: 0, keepDims: false },
      { shape: [300, 5], axis: [0, 1], keepDims: false },
      { shape: [4, 3, 5], axis: [0, 2], keepDims: true },
    ];
    for (const c of reductions) {
      for (const [name, op] of [
        ["sum", tf.sum],
        ["mean", tf.mean],
      ] as const) {
        test(`${name} [${c.shape.join(",")}] axis ${JSON.stringify(c.axis)} keepDims ${c.keepDims}: forward and gradient`, () => {
          const x = tf.randomNormal(c.shape, 0, 1, "float32", 81);
          const r = both(() => [
            op(x, c.axis, c.keepDims),
            tf.grad((p: tf.Tensor) => op(tf.square(p), c.axis, c.keepDims))(x),
          ]);
          assertClose(r.native[0]!, r.stock[0]!, `${name} value`);
          assertClose(r.native[1]!, r.stock[1]!, `${name} gradient`);
          tf.dispose([x, ...r.native, ...r.stock]);
        });
      }
    }

    for (const shape of [
      [2, 3, 64, 200],
      [7, 13],
      [1, 5, 1],
    ]) {
      test(`softmax [${shape.join(",")}]: forward and gradient`, () => {
        const x = tf.mul(tf.randomNormal(shape, 0, 1, "float32", 111), 4);
        const dy = tf.randomNormal(shape, 0, 1, "float32", 112);
        const r = both(() => [tf.softmax(x), tf.grad((p: tf.Tensor) => tf.softmax(p))(x, dy)]);
        r.native.forEach((t, i) => {
          assertClose(t, r.stock[i]!, `softmax output ${i}`);
        });
        tf.dispose([x, dy, ...r.native, ...r.stock]);
      });
    }

    const perms: { shape: number[]; perm: number[] }[] = [
      { shape: [2, 5, 3, 3, 4], perm: [2, 0, 3, 1, 4] },
      { shape: [2, 3, 7, 5], perm: [0, 2, 1, 3] },
      { shape: [6, 9], perm: [1, 0] },
      { shape: [2, 3, 4, 5, 6], perm: [4, 3, 2, 1, 0] },
      { shape: [3, 1, 4], perm: [1, 0, 2] },
      // depth-to-space with a unit channel axis (mergeable neighbours, unit axes between merged ones)
      { shape: [2, 3, 5, 3, 2, 2, 2, 1], perm: [0, 1, 4, 2, 5, 3, 6, 7] },
      { shape: [2, 3, 2, 5, 2, 3, 2, 1], perm: [0, 1, 3, 5, 2, 4, 6, 7] },
      { shape: [1, 4, 1, 3, 1, 5], perm: [3, 2, 1, 4, 5, 0] },
      { shape: [4, 1, 3, 1, 5], perm: [0, 3, 2, 1, 4] },
      { shape: [1, 1, 7], perm: [2, 1, 0] },
      { shape: [5, 1, 1], perm: [1, 2, 0] },
    ];
    for (const c of perms) {
      test(`transpose [${c.shape.join(",")}] perm [${c.perm.join(",")}]: forward and gradient`, () => {
        const x = tf.randomNormal(c.shape, 0, 1, "float32", 121);
        const r = both(() => [
          tf.transpose(x, c.perm),
          tf.grad((p: tf.Tensor) => tf.square(tf.transpose(p, c.perm)))(x),
        ]);
        r.native.forEach((t, i) => {
          assertClose(t, r.stock[i]!, `transpose output ${i}`);
        });
        tf.dispose([x, ...r.native, ...r.stock]);
      });
    }

    const slices: { shape: number[]; begin: number[]; size: number[] }[] = [
      { shape: [2, 6, 5, 7, 3], begin: [0, 1, 0, 2, 0], size: [2, 4, 5, 3, 3] },
      { shape: [2, 6, 5, 7, 3], begin: [1, 0, 1, 0, 1], size: [1, -1, 3, -1, 2] },
      { shape: [9, 8], begin: [2, 3], size: [5, 4] },
      { shape: [9, 8], begin: [2, 0], size: [5, 8] },
    ];
    for (const c of slices) {
      test(`slice [${c.shape.join(",")}] begin [${c.begin.join(",")}] size [${c.size.join(",")}]: forward and gradient (PadV2)`, () => {
        const x = tf.randomNormal(c.shape, 0, 1, "float32", 171);
        const r = both(() => [
          tf.slice(x, c.begin, c.size),
          tf.grad((p: tf.Tensor) => tf.square(tf.slice(p, c.begin, c.size)))(x),
          tf.pad(
            x,
            c.shape.map((_, i) => [i % 2, (i + 1) % 3] as [number, number]),
            1.5,
          ),
        ]);
        r.native.forEach((t, i) => {
          assertClose(t, r.stock[i]!, `slice/pad output ${i}`);
        });
        tf.dispose([x, ...r.native, ...r.stock]);
      });
    }

    const pools: {
      shape: [number, number, number, number, number];
      k: number | [number, number, number];
      s: number | [number, number, number];
      pad: "valid" | "same";
    }[] = [
      { shape: [2, 8, 6, 4, 5], k: 2, s: 2, pad: "valid" },
      { shape: [1, 7, 9, 5, 3], k: [3, 2, 1], s: [2, 2, 1], pad: "valid" },
      { shape: [2, 5, 5, 5, 4], k: 3, s: 1, pad: "valid" },
      { shape: [1, 5, 6, 7, 2], k: 2, s: 2, pad: "same" },
    ];
    for (const c of pools) {
      test(`avgPool3d [${c.shape.join(",")}] k ${JSON.stringify(c.k)} s ${JSON.stringify(c.s)} ${c.pad}: forward and gradient`, () => {
        const x = tf.randomNormal<tf.Rank.R5>(c.shape, 0, 1, "float32", 191);
        const f = (p: tf.Tensor): tf.Tensor => tf.avgPool3d(p as tf.Tensor5D, c.k, c.s, c.pad);
        const r = both(() => {
          const y = f(x);
          const dy = tf.randomNormal(y.shape, 0, 1, "float32", 192);
          const g = tf.grad(f)(x, dy);
          dy.dispose();
          return [y, g];
        });
        r.native.forEach((t, i) => {
          assertClose(t, r.stock[i]!, `avgPool3d output ${i}`);
        });
        tf.dispose([x, ...r.native, ...r.stock]);
      });
    }

    const unaries = [
      ["neg", tf.neg],
      ["exp", tf.exp],
      ["erf", tf.erf],
      ["leakyRelu", (t: tf.Tensor) => tf.leakyRelu(t, 0.01)],
      ["square", tf.square],
      ["rsqrt", (t: tf.Tensor) => tf.rsqrt(tf.add(tf.abs(t), 0.1))],
      ["relu", tf.relu],
      ["sqrt", (t: tf.Tensor) => tf.sqrt(tf.add(tf.abs(t), 0.1))],
      ["sigmoid", (t: tf.Tensor) => tf.sigmoid(tf.mul(t, 8))],
    ] as const;
    for (const [name, op] of unaries) {
      test(`${name} over 3x17x1025 elements: forward and gradient`, () => {
        const x = tf.randomNormal([3, 17, 1025], 0, 1, "float32", 131);
        const r = both(() => [op(x), tf.grad((p: tf.Tensor) => op(p))(x)]);
        r.native.forEach((t, i) => {
          assertClose(t, r.stock[i]!, `${name} output ${i}`);
        });
        tf.dispose([x, ...r.native, ...r.stock]);
      });
    }

    test("a mean over 2^21 elements stays accurate (double accumulation, parallel partial sums)", () => {
      const x = tf.add(tf.randomUniform([2, 64, 64, 64, 4], 0, 1, "float32", 91), 1000);
      const m = tf.mean(x, [1, 2, 3]);
      const expected = tf.tidy(() => tf.add(tf.mean(tf.sub(x, 1000), [1, 2, 3]), 1000));
      assertClose(m, expected, "mean of large values", 1e-7);
      tf.dispose([x, m, expected]);
    });

    for (const axis of [0, 2, 4, -1]) {
      test(`concat and its gradient (SplitV) along axis ${axis}`, () => {
        const shapes = [
          [2, 3, 4, 5, 6],
          [2, 3, 4, 5, 6],
        ].map((s) => s.map((d, i) => (i === (axis + 5) % 5 ? d + i : d)));
        const xs = shapes.map((s, i) => tf.randomNormal(s, 0, 1, "float32", 100 + i));
        const third = tf.randomNormal(shapes[0]!, 0, 1, "float32", 103);
        const f = (p: tf.Tensor, q: tf.Tensor, u: tf.Tensor): tf.Tensor => tf.mul(tf.concat([p, q, u], axis), 2);
        const r = both(() => [f(xs[0]!, xs[1]!, third), ...tf.grads(f)([xs[0]!, xs[1]!, third])]);
        r.native.forEach((t, i) => {
          assertClose(t, r.stock[i]!, `concat axis ${axis} output ${i}`);
        });
        const parts = both(() =>
          tf.split(r.native[0]!, [1, 2, shapes[0]![(axis + 5) % 5]! * 2 + shapes[1]![(axis + 5) % 5]! - 3], axis),
        );
        parts.native.forEach((t, i) => {
          assertClose(t, parts.stock[i]!, `split part ${i}`);
        });
        tf.dispose([...xs, third, ...r.native, ...r.stock, ...parts.native, ...parts.stock]);
      });
    }
  });

  describe("fused instance norm", () => {
    const composed = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor => {
      const axes = Array.from({ length: x.rank - 2 }, (_, i) => i + 1);
      const { mean, variance } = tf.moments(x, axes, true);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
    };
    const cases: [number[], number | undefined][] = [
      [[2, 5, 6, 7, 3], undefined],
      [[1, 4, 4, 4, 33], 0.01],
      [[3, 10, 8], undefined],
      [[2, 16, 16, 16, 8], 0.01],
      [[2, 3, 4, 5, 6], 0.3],
    ];
    for (const [shape, alpha] of cases) {
      test(`[${shape.join(",")}]${alpha === undefined ? "" : ` + LeakyReLU(${alpha})`} equals the composed tf ops, forward and gradients`, () => {
        const c = shape[shape.length - 1]!;
        const reference = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor): tf.Tensor =>
          alpha === undefined ? composed(p, q, r) : tf.leakyRelu(composed(p, q, r), alpha);
        const x = tf.add(tf.mul(tf.randomNormal(shape, 0, 1, "float32", 151), 3), 2);
        const g = tf.randomNormal<tf.Rank.R1>([c], 1, 0.2, "float32", 152);
        const b = tf.randomNormal<tf.Rank.R1>([c], 0, 0.2, "float32", 153);
        const dy = tf.randomNormal(shape, 0, 1, "float32", 154);
        const before = tf.memory().numTensors;
        const opts = alpha === undefined ? {} : { leakyReluAlpha: alpha };
        const fused = [
          instanceNormFused(x, g, b, 1e-5, opts),
          ...tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
            instanceNormFused(p, q as tf.Tensor1D, r as tf.Tensor1D, 1e-5, opts),
          )([x, g, b], dy),
        ];
        assert.equal(tf.memory().numTensors, before + 4, "only the 4 results are new tensors");
        const ref = tf.tidy(() => [reference(x, g, b), ...tf.grads(reference)([x, g, b], dy)]);
        fused.forEach((t, i) => {
          assertClose(t, ref[i]!, `instance norm output ${i}`, 1e-4);
        });
        tf.dispose([...fused, ...ref]);
        tf.dispose([x, g, b, dy]);
      });
    }
  });

  describe("fused layer norm", () => {
    const composed = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor => {
      const { mean, variance } = tf.moments(t, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(t, mean), tf.rsqrt(tf.add(variance, 1e-6))), g), b);
    };
    for (const shape of [
      [2, 5, 7],
      [3, 33],
      [2, 512, 192],
      [4, 1],
    ]) {
      test(`[${shape.join(",")}] equals the composed tf ops, forward and gradients`, () => {
        const c = shape[shape.length - 1]!;
        const x = tf.add(tf.mul(tf.randomNormal(shape, 0, 1, "float32", 161), 2), 1);
        const g = tf.randomNormal<tf.Rank.R1>([c], 1, 0.2, "float32", 162);
        const b = tf.randomNormal<tf.Rank.R1>([c], 0, 0.2, "float32", 163);
        const dy = tf.randomNormal(shape, 0, 1, "float32", 164);
        const before = tf.memory().numTensors;
        const fused = [
          layerNormFused(x, g, b, 1e-6),
          ...tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
            layerNormFused(p, q as tf.Tensor1D, r as tf.Tensor1D, 1e-6),
          )([x, g, b], dy),
        ];
        assert.equal(tf.memory().numTensors, before + 4, "only the 4 results are new tensors");
        const ref = tf.tidy(() => [composed(x, g, b), ...tf.grads(composed)([x, g, b], dy)]);
        fused.forEach((t, i) => {
          assertClose(t, ref[i]!, `layer norm output ${i}`, 1e-4);
        });
        tf.dispose([...fused, ...ref, x, g, b, dy]);
      });
    }
  });

  test("the models' op layer (ops/norm.ts) uses the fused kernels on cpu and matches its own composed form", async () => {
    const x = tf.randomNormal([2, 6, 5, 4, 7], 0.5, 2, "float32", 181);
    const t = tf.randomNormal([2, 9, 12], 0.5, 2, "float32", 182);
    const g7 = tf.randomNormal<tf.Rank.R1>([7], 1, 0.2, "float32", 183),
      b7 = tf.randomNormal<tf.Rank.R1>([7], 0, 0.2, "float32", 184);
    const g12 = tf.randomNormal<tf.Rank.R1>([12], 1, 0.2, "float32", 185),
      b12 = tf.randomNormal<tf.Rank.R1>([12], 0, 0.2, "float32", 186);
    const prof = await tf.profile(() => [instanceNorm(x, g7, b7), layerNorm(t, g12, b12)]);
    const names = prof.kernels.map((k) => k.name);
    assert.ok(
      names.includes("Ssl3dInstanceNorm") && names.includes("Ssl3dLayerNorm"),
      `kernels run: ${names.join(",")}`,
    );
    tf.dispose(prof.result);
    const r = both(() =>
      tf.tidy(() => [
        instanceNorm(x, g7, b7),
        layerNorm(t, g12, b12, 1e-6),
        ...tf.grads((p: tf.Tensor, q: tf.Tensor) =>
          tf.add(tf.sum(tf.square(instanceNorm(p, g7, b7))), tf.sum(tf.square(layerNorm(q, g12, b12)))),
        )([x, t]),
      ]),
    );
    r.native.forEach((u, i) => {
      assertClose(u, r.stock[i]!, `ops norm output ${i}`, 1e-4);
    });
    // norm → LeakyReLU: one fused kernel each way on native, the composed ops on stock kernels
    const prof2 = await tf.profile(() => instanceNormLeakyRelu(x, g7, b7, 1e-5, 0.01));
    const fusedNames = prof2.kernels.map((k) => k.name);
    tf.dispose(prof2.result);
    assert.ok(
      fusedNames.includes("Ssl3dInstanceNorm") && !fusedNames.includes("LeakyRelu"),
      `kernels run: ${fusedNames.join(",")}`,
    );
    const r2 = both(() =>
      tf.tidy(() => [
        instanceNormLeakyRelu(x, g7, b7, 1e-5, 0.01),
        ...tf.grads((p: tf.Tensor, q: tf.Tensor, u: tf.Tensor) =>
          tf.sum(tf.square(instanceNormLeakyRelu(p, q as tf.Tensor1D, u as tf.Tensor1D, 1e-5, 0.01))),
        )([x, g7, b7]),
      ]),
    );
    r2.native.forEach((u, i) => {
      assertClose(u, r2.stock[i]!, `ops norm+leakyRelu output ${i}`, 1e-4);
    });
    tf.dispose([x, t, g7, b7, g12, b12, ...r.native, ...r.stock, ...r2.native, ...r2.stock]);
  });

  describe("fused sparse instance norm (SparK) equals the composed form on stock kernels", () => {
    /** Visible-voxel mask [B,D,H,W,1]: per sample "all", "none", a count of visible voxels, or a fraction of them. */
    const maskOf = (
      shape: readonly [number, number, number, number],
      kinds: readonly (string | number)[],
      seed: number,
    ): tf.Tensor5D => {
      const [d, h, w] = [shape[1], shape[2], shape[3]];
      const s = d * h * w;
      const data = new Float32Array(shape[0] * s);
      let state = seed;
      const rnd = (): number => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
      kinds.forEach((k, b) => {
        for (let i = 0; i < s; i++) {
          data[b * s + i] =
            k === "all"
              ? 1
              : k === "none"
                ? 0
                : typeof k === "number" && k >= 1
                  ? (i * 7919) % s < k
                    ? 1
                    : 0
                  : rnd() < Number(k)
                    ? 1
                    : 0;
        }
      });
      return tf.tensor5d(data, [shape[0], d, h, w, 1]);
    };
    // odd shapes, channels not a multiple of the SIMD width (8), very different visible counts per sample (all
    // visible, 2 voxels, ~half, ~10 %, none), and one shape large enough (S·C ≥ 2^18) for the threaded passes
    const cases = [
      { x: [4, 5, 4, 7, 13], kinds: ["all", 2, 0.5, 0.1] },
      { x: [3, 3, 5, 3, 1], kinds: [1, "none", 0.7] },
      { x: [2, 9, 11, 10, 19], kinds: [0.25, "all"] },
      { x: [2, 24, 24, 24, 20], kinds: [3, 0.75] },
    ] as const;
    for (const cs of cases) {
      for (const slope of [undefined, 0.01]) {
        test(`x [${cs.x.join(",")}] visible ${cs.kinds.join("/")}${slope === undefined ? "" : " + LeakyReLU"}: forward and gradients (x, gamma, beta)`, () => {
          assert.ok(fusedSparseNormAvailable(), "the addon built from these sources has the sparse-norm kernels");
          const [b, d, h, w, c] = cs.x;
          const mask = maskOf([b, d, h, w], cs.kinds, 7 + c);
          // masked voxels hold large values: they must be ignored, not zeroed by the caller
          const raw = tf.randomNormal<tf.Rank.R5>([b, d, h, w, c], 0.7, 2, "float32", 300 + c);
          const x = tf.tidy(() => tf.add<tf.Tensor5D>(raw, tf.mul(tf.sub(1, mask), 1e3)));
          const g = tf.randomNormal<tf.Rank.R1>([c], 1, 0.3, "float32", 301),
            be = tf.randomNormal<tf.Rank.R1>([c], 0, 0.3, "float32", 302);
          const dy = tf.randomNormal([b, d, h, w, c], 0, 1, "float32", 303);
          const fused = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor): tf.Tensor =>
            sparseInstanceNormFused(
              p,
              mask,
              q as tf.Tensor1D,
              r as tf.Tensor1D,
              1e-5,
              slope === undefined ? {} : { leakyReluAlpha: slope },
            );
          const composed = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor): tf.Tensor => {
            const y = sparseInstanceNormComposed(p as tf.Tensor5D, mask, q as tf.Tensor1D, r as tf.Tensor1D, 1e-5);
            return slope === undefined ? y : tf.leakyRelu(y, slope);
          };
          const before = tf.memory().numTensors;
          const got = tf.tidy(() => [fused(x, g, be), ...tf.grads(fused)([x, g, be], dy)]);
          assert.equal(tf.memory().numTensors, before + 4, "only the results are new tensors");
          unloadNativeKernels();
          let ref: tf.Tensor[];
          try {
            ref = tf.tidy(() => [composed(x, g, be), ...tf.grads(composed)([x, g, be], dy)]);
          } finally {
            loadNativeKernels();
          }
          got.forEach((u, i) => {
            assertClose(u, ref[i]!, `sparse norm ${["y", "dx", "dgamma", "dbeta"][i]}`, 1e-4);
          });
          // exactly 0 at masked voxels, output and dx
          const zeroOff = tf.tidy(() => [
            maxAbs(tf.mul(got[0]!, tf.sub(1, mask))),
            maxAbs(tf.mul(got[1]!, tf.sub(1, mask))),
          ]);
          assert.deepEqual(zeroOff, [0, 0]);
          tf.dispose([raw, x, g, be, dy, mask, ...got, ...ref]);
        });
      }
    }

    test("the op layer (ops/sparse-norm.ts) runs one fused kernel on cpu + native and the composed form on stock kernels", async () => {
      const mask = maskOf([2, 4, 5, 3], [0.5, "all"], 11);
      const x = tf.randomNormal<tf.Rank.R5>([2, 4, 5, 3, 9], 0, 1, "float32", 320);
      const g = tf.randomNormal<tf.Rank.R1>([9], 1, 0.3, "float32", 321),
        be = tf.randomNormal<tf.Rank.R1>([9], 0, 0.3, "float32", 322);
      const prof = await tf.profile(() => [
        sparseInstanceNorm(x, mask, g, be),
        sparseInstanceNormLeakyRelu(x, mask, g, be, 1e-5, 0.01),
      ]);
      const names = prof.kernels.map((k) => k.name);
      tf.dispose(prof.result);
      assert.deepEqual(names, ["Ssl3dSparseInstanceNorm", "Ssl3dSparseInstanceNorm"]);
      const f = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor): tf.Tensor =>
        tf.add(
          tf.sum(tf.square(sparseInstanceNorm(p as tf.Tensor5D, mask, q as tf.Tensor1D, r as tf.Tensor1D))),
          tf.sum(
            tf.square(
              sparseInstanceNormLeakyRelu(p as tf.Tensor5D, mask, q as tf.Tensor1D, r as tf.Tensor1D, 1e-5, 0.01),
            ),
          ),
        );
      const r = both(() =>
        tf.tidy(() => [
          sparseInstanceNorm(x, mask, g, be),
          sparseInstanceNormLeakyRelu(x, mask, g, be, 1e-5, 0.01),
          ...tf.grads(f)([x, g, be]),
        ]),
      );
      r.native.forEach((u, i) => {
        assertClose(u, r.stock[i]!, `ops sparse norm output ${i}`, 1e-4);
      });
      unloadNativeKernels();
      try {
        const stockProf = await tf.profile(() => sparseInstanceNormLeakyRelu(x, mask, g, be, 1e-5, 0.01));
        tf.dispose(stockProf.result);
        assert.ok(!stockProf.kernels.some((k) => k.name.startsWith("Ssl3d")), "stock kernels: composed ops");
      } finally {
        loadNativeKernels();
      }
      tf.dispose([mask, x, g, be, ...r.native, ...r.stock]);
    });

    test("sparseInstanceNormFused rejects a mask that does not fit", () => {
      const x = tf.zeros([2, 3, 3, 3, 4]);
      assert.throws(
        () => sparseInstanceNormFused(x, tf.ones([2, 3, 3, 2, 1]), tf.ones([4]), tf.zeros([4])),
        /does not fit/,
      );
      x.dispose();
    });
  });

  describe("the op layer's batched (native) form of attention, rope and linear equals its 2-D (wasm) form", () => {
    const ropeOf = (lead: number[], hd: number, seed: number): Rope => {
      const ang = tf.randomUniform([...lead, hd], 0, 6, "float32", seed);
      const r = { sin: tf.sin(ang), cos: tf.cos(ang) } as unknown as Rope;
      ang.dispose();
      return r;
    };
    // odd token counts, head dims not a multiple of the SIMD width, shared [T,hd] and per-sample [B,T,hd] rope
    const attnCases = [
      { b: 2, t: 7, c: 12, heads: 2, rope: "none" },
      { b: 1, t: 9, c: 18, heads: 3, rope: "shared" },
      { b: 3, t: 5, c: 20, heads: 2, rope: "per-sample" },
      { b: 2, t: 33, c: 48, heads: 4, rope: "shared" },
      // more query rows than one block of the fused kernel (64), and a partial last block
      { b: 1, t: 130, c: 20, heads: 2, rope: "per-sample" },
    ] as const;
    for (const ac of attnCases) {
      test(`attention B=${ac.b} T=${ac.t} C=${ac.c} heads=${ac.heads} rope ${ac.rope}: forward and gradients`, async () => {
        const hd = ac.c / ac.heads;
        const [q, k, v] = [1, 2, 3].map((s) =>
          tf.randomNormal<tf.Rank.R3>([ac.b, ac.t, ac.c], 0, 1, "float32", 190 + s),
        ) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
        const rope = ac.rope === "none" ? undefined : ropeOf(ac.rope === "shared" ? [ac.t] : [ac.b, ac.t], hd, 194);
        const dy = tf.randomNormal([ac.b, ac.t, ac.c], 0, 1, "float32", 195);
        const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Tensor =>
          multiHeadAttention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, ac.heads, rope);
        const prof = await tf.profile(() => f(q, k, v));
        const names = prof.kernels.map((x) => x.name);
        assert.ok(names.filter((n) => n === "BatchMatMul").length <= 4, `batched over heads: ${names.join(",")}`);
        assert.equal(
          names.filter((n) => n === "Ssl3dAttention").length,
          1,
          `one fused attention kernel: ${names.join(",")}`,
        );
        tf.dispose(prof.result);
        const before = tf.memory().numTensors;
        const r = both(() => tf.tidy(() => [f(q, k, v), ...tf.grads(f)([q, k, v], dy)]));
        assert.equal(tf.memory().numTensors, before + 8, "only the results are new tensors");
        r.native.forEach((u, i) => {
          assertClose(u, r.stock[i]!, `attention output ${i}`, 1e-4);
        });
        tf.dispose([q, k, v, dy, ...r.native, ...r.stock, ...(rope === undefined ? [] : [rope.sin, rope.cos])]);
      });
    }
    for (const sh of [
      { lead: [2, 3], t: 70, s: 70, d: 5 },
      { lead: [1, 2], t: 20, s: 45, d: 16 },
      { lead: [3], t: 1, s: 129, d: 7 },
    ]) {
      test(`attentionFused [${sh.lead.join(",")},${sh.t},${sh.d}] x [${sh.s}] keys: equals softmax(q·kᵀ·s)·v on stock kernels, forward and gradients`, () => {
        const q = tf.randomNormal([...sh.lead, sh.t, sh.d], 0, 1.5, "float32", 210);
        const k = tf.randomNormal([...sh.lead, sh.s, sh.d], 0, 1.5, "float32", 211);
        const v = tf.randomNormal([...sh.lead, sh.s, sh.d], 0, 1, "float32", 212);
        const dy = tf.randomNormal([...sh.lead, sh.t, sh.d], 0, 1, "float32", 213);
        const scale = 1 / Math.sqrt(sh.d);
        const fused = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Tensor => attentionFused(a, b, c, scale);
        const composed = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Tensor =>
          tf.matMul(tf.softmax(tf.mul(tf.matMul(a, b, false, true), scale)), c);
        const before = tf.memory().numTensors;
        const got = tf.tidy(() => [fused(q, k, v), ...tf.grads(fused)([q, k, v], dy)]);
        assert.equal(tf.memory().numTensors, before + 4, "only the results are new tensors");
        unloadNativeKernels();
        let ref: tf.Tensor[];
        try {
          ref = tf.tidy(() => [composed(q, k, v), ...tf.grads(composed)([q, k, v], dy)]);
        } finally {
          loadNativeKernels();
        }
        got.forEach((u, i) => {
          assertClose(u, ref[i]!, `attentionFused output ${i}`, 1e-4);
        });
        tf.dispose([q, k, v, dy, ...got, ...ref]);
      });
    }
    test("attentionFused rejects mismatched shapes", () => {
      const q = tf.zeros([2, 4, 3]);
      assert.throws(() => attentionFused(q, tf.zeros([2, 5, 4]), tf.zeros([2, 5, 4]), 1), /do not fit/);
      assert.throws(() => attentionFused(q, tf.zeros([2, 5, 3]), tf.zeros([2, 6, 3]), 1), /do not fit/);
      q.dispose();
    });
    test("rope [2,3,7,10] with a per-sample [2,1,7,10] table: forward and gradient", () => {
      const x = tf.randomNormal([2, 3, 7, 10], 0, 1, "float32", 196);
      const r0 = ropeOf([2, 1, 7], 10, 197);
      const dy = tf.randomNormal([2, 3, 7, 10], 0, 1, "float32", 198);
      const f = (a: tf.Tensor): tf.Tensor => applyRope(a, r0);
      const r = both(() => tf.tidy(() => [f(x), ...tf.grads(f)([x], dy)]));
      r.native.forEach((u, i) => {
        assertClose(u, r.stock[i]!, `rope output ${i}`, 1e-5);
      });
      tf.dispose([x, dy, r0.sin, r0.cos, ...r.native, ...r.stock]);
    });
    test("addLeakyRelu (output-saving gradient) equals LeakyReLU(a + b): forward and gradients", () => {
      const a = tf.randomNormal([2, 3, 5, 7, 3], 0, 1, "float32", 203);
      const b = tf.randomNormal([2, 3, 5, 7, 3], 0, 1, "float32", 204);
      const dy = tf.randomNormal([2, 3, 5, 7, 3], 0, 1, "float32", 205);
      const before = tf.memory().numTensors;
      const got = tf.tidy(() => [
        addLeakyRelu(a, b, 0.01),
        ...tf.grads((p: tf.Tensor, q: tf.Tensor) => addLeakyRelu(p, q, 0.01))([a, b], dy),
      ]);
      assert.equal(tf.memory().numTensors, before + 3, "only the results are new tensors");
      const ref = tf.tidy(() => [
        tf.leakyRelu(tf.add(a, b), 0.01),
        ...tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.leakyRelu(tf.add(p, q), 0.01))([a, b], dy),
      ]);
      got.forEach((u, i) => {
        assertClose(u, ref[i]!, `addLeakyRelu output ${i}`, 1e-6);
      });
      tf.dispose([a, b, dy, ...got, ...ref]);
    });
    test("linear (with and without bias), mm and addBias on odd shapes: forward and gradients", () => {
      const x = tf.randomNormal([3, 5, 13], 0, 1, "float32", 199);
      const w = tf.randomNormal<tf.Rank.R2>([13, 11], 0, 0.3, "float32", 200);
      const bias = tf.randomNormal<tf.Rank.R1>([11], 0, 1, "float32", 201);
      const a2 = tf.randomNormal<tf.Rank.R2>([7, 13], 0, 1, "float32", 202);
      const f = (p: tf.Tensor, q: tf.Tensor, c: tf.Tensor, d: tf.Tensor): tf.Tensor =>
        tf.addN([
          tf.sum(tf.square(linear(p, q as tf.Tensor2D, c as tf.Tensor1D))),
          tf.sum(tf.sin(linear(p, q as tf.Tensor2D))),
          tf.sum(tf.square(addBias(mm(d as tf.Tensor2D, q as tf.Tensor2D), c as tf.Tensor1D))),
        ]);
      const r = both(() => tf.tidy(() => [f(x, w, bias, a2), ...tf.grads(f)([x, w, bias, a2])]));
      r.native.forEach((u, i) => {
        assertClose(u, r.stock[i]!, `linear output ${i}`, 1e-4);
      });
      tf.dispose([x, w, bias, a2, ...r.native, ...r.stock]);
    });
  });

  test("the addon rejects buffers whose size does not match the geometry", () => {
    const a = nativeAddon()!;
    const geometry = Int32Array.from([1, 2, 2, 2, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
    assert.throws(() => {
      a.conv3d(new Float32Array(7), new Float32Array(1), new Float32Array(8), geometry);
    }, /x: expected 8 elements, got 7/);
    assert.throws(() => {
      a.matmul(
        new Float32Array(6),
        new Float32Array(6),
        new Float32Array(4),
        2,
        2,
        3,
        false,
        false,
        Int32Array.from([1]),
        Int32Array.from([0]),
      );
    }, /batch index out of range/);
  });

  test("loadNativeKernels is idempotent and unload restores the stock kernels", () => {
    assert.equal(loadNativeKernels(), true);
    const nativeConv = tf.getKernel("Conv3D", "cpu").kernelFunc;
    assert.equal(loadNativeKernels(), true);
    assert.equal(tf.getKernel("Conv3D", "cpu").kernelFunc, nativeConv);
    unloadNativeKernels();
    assert.notEqual(tf.getKernel("Conv3D", "cpu").kernelFunc, nativeConv);
    assert.equal(loadNativeKernels(), true);
    assert.equal(tf.getKernel("Conv3D", "cpu").kernelFunc, nativeConv);
  });
});
