/**
 * valueAndGrads (releasing backprop) against tf.variableGrads: the same value and gradients on the real networks
 * (native and stock cpu kernels, and wasm), tricky tape shapes (shared variables, multi-output kernels, custom
 * gradients that return their dy, unused variables, shape-only saves), no leaked tensors, the engine restored, and a
 * lower peak of live tensor bytes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { nativeSkipReason } from "../../../test/helpers/native.js";
import { useBackend, seeded } from "../../../test/helpers/tf-check.js";
import { loadNativeKernels, unloadNativeKernels } from "../models/backend/native.js";
import { createNetwork } from "../models/registry.js";
import { valueAndGrads } from "./backprop.js";

await useBackend("cpu");
const haveNative = loadNativeKernels();
const nativeSkip = nativeSkipReason(haveNative);

type Loss = () => tf.Scalar;

function both(
  f: Loss,
  vars: tf.Variable[],
): {
  ref: { value: Float32Array; grads: Map<string, Float32Array> };
  ours: { value: Float32Array; grads: Map<string, Float32Array> };
} {
  const read = (r: {
    value: tf.Scalar;
    grads: Record<string, tf.Tensor>;
  }): { value: Float32Array; grads: Map<string, Float32Array> } => {
    const out = {
      value: r.value.dataSync() as Float32Array,
      grads: new Map(
        Object.entries(r.grads as Record<string, tf.Tensor | null>).flatMap(([k, g]) =>
          g === null ? [] : [[k, g.dataSync() as Float32Array] as const],
        ),
      ),
    };
    tf.dispose([r.value, ...Object.values(r.grads)]);
    return out;
  };
  const ref = read(tf.variableGrads(f, vars));
  const before = tf.memory().numTensors;
  const ours = read(valueAndGrads(f, vars));
  assert.equal(tf.memory().numTensors, before, "valueAndGrads leaked tensors");
  return { ref, ours };
}

function assertSame(
  ref: { value: Float32Array; grads: Map<string, Float32Array> },
  ours: { value: Float32Array; grads: Map<string, Float32Array> },
  tol = 0,
): void {
  assert.deepEqual([...ours.grads.keys()].sort(), [...ref.grads.keys()].sort());
  assert.ok(
    Math.abs(ours.value[0]! - ref.value[0]!) <= tol * Math.abs(ref.value[0]!),
    `value ${ours.value[0]} vs ${ref.value[0]}`,
  );
  for (const [k, g] of ref.grads) {
    const o = ours.grads.get(k)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]!));
      diff = Math.max(diff, Math.abs(g[i]! - o[i]!));
    }
    assert.ok(diff <= tol * scale, `gradient of ${k}: max diff ${diff} (scale ${scale})`);
  }
}

function netCase(key: string, patch: number, backend: string): void {
  const x = tf.tensor5d(seeded(2 * patch ** 3, 11), [2, patch, patch, patch, 1]);
  const target = tf.tensor5d(seeded(2 * patch ** 3, 12), [2, patch, patch, patch, 1]);
  const net = createNetwork(key, { patchSize: [patch, patch, patch], seed: 3 });
  const vars = [...net.weights.values()].filter((v) => v.trainable);
  const { ref, ours } = both(
    () => tf.mean(tf.squaredDifference(net.apply(x, { training: true, seed: 5 }), target)),
    vars,
  );
  assert.ok(ref.grads.size > vars.length / 2, `${key} on ${backend}: most weights get a gradient`);
  // the same kernels in the same order on the same data: bit-identical
  assertSame(ref, ours, 0);
  net.dispose();
  tf.dispose([x, target]);
}

for (const key of ["resenc-xs", "primus-xs"]) {
  test(`${key}: same value and gradients as tf.variableGrads (cpu + native kernels)`, { skip: nativeSkip }, () => {
    loadNativeKernels();
    netCase(key, key === "resenc-xs" ? 16 : 32, "cpu+native");
  });
  test(`${key}: same value and gradients as tf.variableGrads (stock cpu kernels)`, () => {
    unloadNativeKernels();
    try {
      netCase(key, key === "resenc-xs" ? 8 : 16, "cpu");
    } finally {
      if (haveNative) loadNativeKernels();
    }
  });
}

test("resenc-xs on wasm: same value and gradients as tf.variableGrads", async () => {
  await useBackend("wasm");
  try {
    netCase("resenc-xs", 8, "wasm");
  } finally {
    await useBackend("cpu");
  }
});

test("tape edge cases: shared variable, multi-output split, custom gradients returning their dy or a saved tensor, unused and frozen variables", () => {
  const a = tf.variable(tf.tensor2d(seeded(12, 1), [3, 4]), true, "bp_a");
  const b = tf.variable(tf.tensor1d(seeded(4, 2)), true, "bp_b");
  const unused = tf.variable(tf.tensor1d([1, 2]), true, "bp_unused");
  const frozen = tf.variable(tf.tensor1d(seeded(4, 3)), false, "bp_frozen");
  const passThrough = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.add(args[0] as tf.Tensor, args[1] as tf.Tensor),
    // hands the SAME dy object back for both inputs
    gradFunc: (dy: tf.Tensor) => [dy, dy],
  }));
  // hands back the tensor it saved as the gradient of its input (d(x + c)/dx · dy with dy ≡ saved here is not the
  // point: the gradient VALUE is a saved tensor, which must outlive the release of the node's saved tensors)
  const savedAsGrad = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const twos = tf.fill(x.shape, 2);
    save([twos]);
    return { value: tf.mul(x, 2), gradFunc: (_dy: tf.Tensor, saved: tf.Tensor[]) => [saved[0]!] };
  });
  const f: Loss = () => {
    const h = tf.add(tf.mul(savedAsGrad(a), b), frozen); // broadcast Add (shape-only save) + Mul
    const [p, q] = tf.split(h, [1, 2, 1], 1) as [tf.Tensor, tf.Tensor, tf.Tensor]; // multi-output kernel; 3rd never used
    const s = passThrough(tf.reshape(p, [3]), tf.reshape(tf.slice(q, [0, 1], [3, 1]), [3]));
    const t = tf.concat([tf.pad(s, [[1, 0]]), tf.relu(b)], 0); // b used twice
    return tf.sum(tf.mul(t, tf.mean(tf.square(a))));
  };
  const { ref, ours } = both(f, [a, b, unused, frozen]);
  assertSame(ref, ours);
  assert.equal(ours.grads.has("bp_unused"), false);
  assert.equal(ours.grads.has("bp_frozen"), false);
  tf.dispose([a, b, unused, frozen]);
});

test("engine state is restored: no tape left, no patched methods, and errors leak nothing", () => {
  const v = tf.variable(tf.tensor1d([1, 2, 3]), true, "bp_v");
  const engine = tf.engine() as unknown as Record<string, unknown> & {
    state: { activeTape: unknown; gradientDepth: number };
  };
  const own = Object.keys(engine).sort();
  const r = valueAndGrads(() => tf.sum(tf.square(v)), [v]);
  tf.dispose([r.value, ...Object.values(r.grads)]);
  assert.deepEqual(Object.keys(engine).sort(), own);
  assert.equal(engine.state.activeTape, null);
  assert.equal(engine.state.gradientDepth, 0);
  const before = tf.memory().numTensors;
  assert.throws(() => valueAndGrads(() => tf.square(v) as unknown as tf.Scalar, [v]), /scalar/);
  assert.throws(
    () =>
      valueAndGrads(() => {
        tf.square(v);
        throw new Error("boom in f");
      }, [v]),
    /boom in f/,
  );
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(Object.keys(engine).sort(), own);
  assert.equal(engine.state.gradientDepth, 0);
  // nested inside another gradient computation: falls back to tf.variableGrads
  const outer = tf.grads((x: tf.Tensor) => {
    const inner = valueAndGrads(() => tf.sum(tf.mul(v, x)), [v]);
    return tf.add(inner.value, tf.sum(inner.grads["bp_v"]!));
  })([tf.tensor1d([1, 1, 1])]);
  assert.deepEqual([...outer[0]!.dataSync()], [2, 3, 4]);
  tf.dispose(outer);
  v.dispose();
});

test("peak of live tensor bytes is lower than tf.variableGrads on a deep conv chain", async () => {
  // a ResEnc-like chain: conv + bias + norm + leaky relu, 6 deep at 2×16³×8; tf.profile reports the engine's peak
  const ws = Array.from({ length: 6 }, (_, i) =>
    tf.variable(tf.tensor5d(seeded(27 * 8 * 8, 20 + i, 0.2), [3, 3, 3, 8, 8]), true, `bp_w${i}`),
  );
  const bs = Array.from({ length: 6 }, (_, i) => tf.variable(tf.zeros([8]), true, `bp_bias${i}`));
  const x = tf.tensor5d(seeded(2 * 16 ** 3 * 8, 9), [2, 16, 16, 16, 8]);
  const f: Loss = () => {
    let h: tf.Tensor5D = x;
    ws.forEach((w, i) => {
      const c = tf.add(tf.conv3d(h, w, 1, "same"), bs[i]!);
      const m = tf.mean(c, [1, 2, 3], true);
      h = tf.leakyRelu(tf.sub(c, m), 0.01) as tf.Tensor5D;
    });
    return tf.mean(tf.square(h));
  };
  const vars = [...ws, ...bs];
  const peak = async (g: () => { value: tf.Scalar; grads: Record<string, tf.Tensor> }): Promise<number> =>
    (
      await tf.profile(() => {
        const r = g();
        return [r.value, ...Object.values(r.grads)];
      })
    ).peakBytes;
  const theirs = await peak(() => tf.variableGrads(f, vars));
  const ours = await peak(() => valueAndGrads(f, vars));
  // tf.variableGrads holds every activation gradient and the bias adds' conv outputs to the end
  assert.ok(ours < 0.7 * theirs, `peak bytes: valueAndGrads ${ours}, tf.variableGrads ${theirs}`);
  tf.dispose([...vars, x]);
});
