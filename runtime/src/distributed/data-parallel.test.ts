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
