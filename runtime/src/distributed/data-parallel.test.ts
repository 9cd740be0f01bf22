/**
 * The data-parallel view of a process group: with one process it is the identity (no copies); over a real TCP ring of
 * two ranks (in one process) it sums share-weighted gradients, losses and stop flags in one collective, reduces
 * validation values, votes, and broadcasts rank 0's weights; no tensor is left behind.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { freePort } from "../../../test/helpers/net.js";
import { selectBackend } from "../models/backend/select.js";
import { dataParallel } from "./data-parallel.js";
import { SingleProcessGroup, initProcessGroup } from "./process-group.js";

await selectBackend("cpu");

test("one process: the step's gradients come back as they are, values only pass through float32", async () => {
  const dp = dataParallel(new SingleProcessGroup(), 1);
  const g = new Map([["w", tf.tensor([1, 2, 3])]]);
  const r = await dp.reduceStep(g, 0.5, true, new Map([["w", [3]]]));
  assert.equal(r.grads, g);
  assert.equal(r.loss, 0.5);
  assert.equal(r.stop, true);
  assert.equal(await dp.reduceValue(0.1), Math.fround(0.1));
  assert.equal(await dp.anyRank(false), false);
  tf.dispose([...g.values()]);
});

test("two ranks: share-weighted sums of gradients and losses, any-rank stop, votes, weight broadcast", async () => {
  const port = await freePort();
  const cfg = (rank: number) => ({ rank, worldSize: 2, masterAddr: "127.0.0.1", masterPort: port, timeoutMs: 30_000 });
  const groups = await Promise.all([initProcessGroup(cfg(0)), initProcessGroup(cfg(1))]);
  const before = tf.memory().numTensors;
  try {
    // rank 0 holds 3 of the global batch of 4, rank 1 holds 1
    const dps = [dataParallel(groups[0], 0.75), dataParallel(groups[1], 0.25)];
    const shapes = new Map([["w", [2, 2]]]);
    const steps = await Promise.all(
      dps.map((dp, r) =>
        dp.reduceStep(new Map([["w", tf.fill([2, 2], r === 0 ? 4 : 8)]]), r === 0 ? 1 : 2, r === 1, shapes),
      ),
    );
    for (const s of steps) {
      assert.deepEqual(s.grads.get("w")!.shape, [2, 2]);
      assert.deepEqual(Array.from(s.grads.get("w")!.dataSync()), [5, 5, 5, 5]); // 4·0.75 + 8·0.25
      assert.equal(s.loss, 1.25);
      assert.equal(s.stop, true);
      tf.dispose([...s.grads.values()]);
    }
    assert.deepEqual(await Promise.all(dps.map((dp, r) => dp.reduceValue(r === 0 ? 2 : 6))), [3, 3]);
    assert.deepEqual(await Promise.all(dps.map((dp) => dp.anyRank(false))), [false, false]);
    assert.deepEqual(await Promise.all(dps.map((dp, r) => dp.anyRank(r === 0))), [true, true]);
    const vars = [0, 1].map((r) =>
      tf.tidy(() => [tf.variable(tf.fill([3], r + 1)), tf.variable(tf.fill([2, 1], 10 * (r + 1)))]),
    );
    await Promise.all(dps.map((dp, r) => dp.broadcastWeights(vars[r]!)));
    for (const vs of vars)
      assert.deepEqual(
        vs.map((v) => Array.from(v.dataSync())),
        [
          [1, 1, 1],
          [10, 10],
        ],
      );
    tf.dispose(vars.flat());
    assert.equal(tf.memory().numTensors, before);
  } finally {
    await Promise.all(groups.map((g) => g.close()));
  }
});

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Gradients of mixed sizes (empty, one element, odd lengths, one larger than a ring segment's share). */
const MIXED: [string, number[]][] = [
  ["conv.w", [3, 3, 3, 2, 5]],
  ["empty", [0]],
  ["bias", [1]],
  ["odd", [7]],
  ["empty2", [4, 0, 2]],
  ["big", [1_050_001]],
  ["norm.g", [13]],
];

function mixedGrads(rank: number): Map<string, tf.Tensor> {
  return new Map(
    MIXED.map(([n, s], k) => {
      const size = s.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.37 + k + 11 * rank) * 10 ** ((i % 5) - 2));
      return [n, tf.tensor(v, s)] as const;
    }),
  );
}

test("one fused collective per step: every tensor comes back in order and shape, the same bits on every rank, within two float32 roundings of its exact share-weighted sum; nothing leaks", async () => {
  const port = await freePort();
  const world = 3;
  const cfg = (rank: number) => ({
    rank,
    worldSize: world,
    masterAddr: "127.0.0.1",
    masterPort: port,
    timeoutMs: 30_000,
  });
  const groups = await Promise.all([0, 1, 2].map((r) => initProcessGroup(cfg(r))));
  const shares = [1 / 3, 1 / 6, 1 / 2]; // 1/3 and 1/6 are not float32 numbers: scaled as fround(share)
  const shapes = new Map(MIXED);
  try {
    const inputs = [0, 1, 2].map((r) => mixedGrads(r));
    // the reference, tensor by tensor: fround(g · fround(share)) summed over ranks in float32 (the ring's order per
    // element depends on where it falls in the buffer, so compare against an exact sum rounded once and require
    // every rank to hold the same bits)
    const ref = new Map(
      MIXED.map(([n]) => {
        const parts = inputs.map((g, r) => {
          const d = g.get(n)!.dataSync();
          return Float32Array.from(d, (x) => Math.fround(x * Math.fround(shares[r]!)));
        });
        return [n, parts] as const;
      }),
    );
    const before = tf.memory().numTensors;
    const dps = groups.map((g, r) => dataParallel(g, shares[r]!));
    const steps = await Promise.all(dps.map((dp, r) => dp.reduceStep(inputs[r]!, r + 1, false, shapes)));
    assert.equal(tf.memory().numTensors, before); // the inputs were disposed, as many outputs came back
    for (const s of steps) {
      assert.deepEqual(
        [...s.grads.keys()],
        MIXED.map(([n]) => n),
      );
      for (const [n, shape] of MIXED) assert.deepEqual(s.grads.get(n)!.shape, shape, n);
      assert.equal(s.loss, Math.fround(1 / 3 + 2 / 6 + 3 / 2));
    }
    for (const [n] of MIXED) {
      const got = steps.map((s) => s.grads.get(n)!.dataSync() as Float32Array);
      for (const g of got.slice(1)) assert.deepEqual(bits(g), bits(got[0]!), n);
      const [a, b, c] = ref.get(n)!;
      for (let i = 0; i < got[0]!.length; i += 997) {
        const exact = a![i]! + b![i]! + c![i]!;
        const scale = Math.abs(a![i]!) + Math.abs(b![i]!) + Math.abs(c![i]!);
        assert.ok(Math.abs(got[0]![i]! - exact) <= 2 * scale * 2 ** -24, `${n}[${i}]: ${got[0]![i]} vs ${exact}`);
      }
    }
    for (const s of steps) tf.dispose([...s.grads.values()]);
    assert.equal(tf.memory().numTensors, before - world * MIXED.length);
  } finally {
    await Promise.all(groups.map((g) => g.close()));
  }
});

test("two ranks: the fused step is bit-identical to summing each tensor on its own (one float32 rounding per element)", async () => {
  const port = await freePort();
  const cfg = (rank: number) => ({ rank, worldSize: 2, masterAddr: "127.0.0.1", masterPort: port, timeoutMs: 30_000 });
  const groups = await Promise.all([initProcessGroup(cfg(0)), initProcessGroup(cfg(1))]);
  const shares = [0.3, 0.7];
  try {
    const inputs = [0, 1].map((r) => mixedGrads(r));
    const want = new Map(
      MIXED.map(([n]) => {
        const [a, b] = inputs.map((g) => g.get(n)!.dataSync());
        const f = shares.map((x) => Math.fround(x));
        return [n, Float32Array.from(a!, (x, i) => Math.fround(x * f[0]!) + Math.fround(b![i]! * f[1]!))] as const;
      }),
    );
    const before = tf.memory().numTensors;
    const steps = await Promise.all(
      groups.map((g, r) => dataParallel(g, shares[r]!).reduceStep(inputs[r]!, 1, r === 0, new Map(MIXED))),
    );
    for (const s of steps) {
      assert.equal(s.stop, true);
      for (const [n] of MIXED) {
        const got = s.grads.get(n)!.dataSync() as Float32Array;
        assert.deepEqual(bits(got), bits(want.get(n)!), n);
      }
      tf.dispose([...s.grads.values()]);
    }
    assert.equal(tf.memory().numTensors, before - 2 * MIXED.length);
  } finally {
    await Promise.all(groups.map((g) => g.close()));
  }
});

test("the step buffer is reused only once the backend has released last step's gradients (a clone keeps its values)", async () => {
  const port = await freePort();
  const cfg = (rank: number) => ({ rank, worldSize: 2, masterAddr: "127.0.0.1", masterPort: port, timeoutMs: 30_000 });
  const groups = await Promise.all([initProcessGroup(cfg(0)), initProcessGroup(cfg(1))]);
  const dps = groups.map((g) => dataParallel(g, 0.5));
  const shapes = new Map([
    ["a", [3]],
    ["b", [2, 2]],
  ]);
  const step = (v: number) =>
    Promise.all(
      dps.map((dp) =>
        dp.reduceStep(
          new Map([
            ["a", tf.fill([3], v)],
            ["b", tf.fill([2, 2], 2 * v)],
          ]),
          0,
          false,
          shapes,
        ),
      ),
    );
  const memoryOf = (s: Awaited<ReturnType<typeof step>>) => (s[0]!.grads.get("a")!.dataSync() as Float32Array).buffer;
  const before = tf.memory().numTensors;
  try {
    const s1 = await step(1);
    const kept = s1[0]!.grads.get("b")!.clone(); // e.g. an optimizer keeping a gradient past the step
    const m1 = memoryOf(s1);
    for (const s of s1) tf.dispose([...s.grads.values()]);
    const s2 = await step(3);
    assert.notEqual(memoryOf(s2), m1, "a clone of last step's gradient is alive: fresh memory");
    assert.deepEqual(Array.from(kept.dataSync()), [2, 2, 2, 2]);
    assert.deepEqual(Array.from(s2[1]!.grads.get("b")!.dataSync()), [6, 6, 6, 6]);
    const m2 = memoryOf(s2);
    for (const s of s2) tf.dispose([...s.grads.values()]);
    kept.dispose();
    const s3 = await step(5);
    assert.equal(memoryOf(s3), m2, "everything released: last step's memory is written again");
    assert.deepEqual(Array.from(s3[0]!.grads.get("a")!.dataSync()), [5, 5, 5]);
    for (const s of s3) tf.dispose([...s.grads.values()]);
    assert.equal(tf.memory().numTensors, before);
  } finally {
    await Promise.all(groups.map((g) => g.close()));
  }
});
