/**
 * The training state ↔ checkpoint mapping: a state written with `checkpointMeta` + `saveCheckpoint` and read back with
 * `loadCheckpoint` + `stateFromCheckpoint` is the same state (the `ssl3d-checkpoint/1` format is unchanged), and
 * upstream's truncation of the per-epoch lists applies on the way in.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CHECKPOINT_FORMAT, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import { checkpointMeta, freshProgress, stateFromCheckpoint, type TrainingState } from "./state.js";

function midEpochState(): TrainingState {
  return {
    epoch: 2,
    iteration: 3,
    globalStep: 11,
    bestLoss: 0.25,
    epochStepLosses: [0.3, null, 0.28],
    epochStartedAt: 1700000100.5,
    logging: {
      train_losses: [0.5, 0.4],
      val_losses: [0.45, null],
      lrs: [0.01, 0.009],
      epoch_start_timestamps: [1700000000, 1700000050],
      epoch_end_timestamps: [1700000049, 1700000099],
    },
    nonFiniteTotal: 1,
    rng: { seed: 7, trainLoader: { stream: "train", nextIndex: 11 }, valLoader: { stream: "val", nextIndex: 4 } },
    optimizer: {
      kind: "adamw",
      step: 10,
      lr: 0.009,
      hyper: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
      slots: {
        exp_avg: { "conv.weight": { shape: [2, 1], data: Float32Array.of(0.5, -1) } },
        exp_avg_sq: { "conv.weight": { shape: [2, 1], data: Float32Array.of(0.25, 1) } },
      },
    },
  };
}

test("state → checkpoint file → state is the identity", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-state-"));
  try {
    const s = midEpochState();
    const file = join(dir, "checkpoint_latest.safetensors");
    const meta = checkpointMeta(
      s,
      { trainerName: "T", initArgs: { plans_name: "p" }, adaptationPlan: { a: 1 } },
      1700000200,
    );
    assert.equal(meta.format, CHECKPOINT_FORMAT);
    assert.equal(meta.current_epoch, 2);
    assert.equal(meta._best_ema, 0.25);
    assert.deepEqual(meta.rng, {
      seed: 7,
      train_loader: { stream: "train", nextIndex: 11 },
      val_loader: { stream: "val", nextIndex: 4 },
    });
    await saveCheckpoint(
      file,
      meta,
      new Map([["conv.weight", { shape: [1, 2], data: Float32Array.of(1, 2) }]]),
      s.optimizer,
    );
    const back = stateFromCheckpoint(loadCheckpoint(file, ["exp_avg", "exp_avg_sq"]));
    assert.deepEqual(back, s);
    // everything but the optimizer slots is plain JSON
    const { optimizer: _o, ...plain } = back;
    assert.deepEqual(JSON.parse(JSON.stringify(plain)), plain);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("lists longer or shorter than current_epoch are truncated like upstream; a truncated run restarts its epoch", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-state-"));
  try {
    const s = { ...midEpochState(), epoch: 3 }; // three epochs claimed, two logged
    const file = join(dir, "c.safetensors");
    await saveCheckpoint(
      file,
      checkpointMeta(s, { trainerName: "T", initArgs: {}, adaptationPlan: null }),
      new Map(),
      s.optimizer,
    );
    const back = stateFromCheckpoint(loadCheckpoint(file, ["exp_avg", "exp_avg_sq"]));
    assert.equal(back.epoch, 2);
    assert.equal(back.iteration, 0);
    assert.deepEqual(back.epochStepLosses, []);
    assert.equal(back.epochStartedAt, null);
    assert.equal(back.globalStep, 11);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a fresh state starts at epoch 0 with empty logs", () => {
  const p = freshProgress();
  assert.deepEqual([p.epoch, p.iteration, p.globalStep, p.bestLoss, p.nonFiniteTotal], [0, 0, 0, null, 0]);
  assert.deepEqual(
    Object.values(p.logging).map((l) => l.length),
    [0, 0, 0, 0, 0],
  );
});
