/**
 * The Trainer's protocol (ADR 0077): listeners see the run's events in order with a serializable state; a deadline
 * stops the run like a signal (after the step, checkpoint_latest) and a resume continues the same loss sequence; a
 * divergence reaches the listeners as a stop before the run fails with its TrainingError.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { pino } from "pino";
import { writeRawVolume } from "../../../test/helpers/raw-volume.js";
import type { TrainingImage } from "../data/source.js";
import { TrainingError } from "../errors.js";
import { CnnMae, MaeOptionsSchema } from "../methods/mae.js";
import type { PretrainMethod } from "../methods/method.js";
import type { Network } from "../models/architecture.js";
import { selectBackend } from "../models/backend/select.js";
import { CONV_PERM } from "../models/params.js";
import { checkpointPath, loadCheckpoint } from "./checkpoint.js";
import type { StopEvent, TrainerListener } from "./listeners.js";
import { train } from "./loop.js";
import { resolveTrainer } from "./registry.js";
import { Trainer, type TrainingRun } from "./trainer.js";

await selectBackend("cpu");
const READER = new URL("../../../test/helpers/raw-volume.ts", import.meta.url).href;

/** conv3d 3³ (1→2) → relu → conv3d 1³ (2→1). */
function net(seed: number): Network {
  const w = new Map<string, tf.Variable>([
    [
      "c1.weight",
      tf.variable(tf.randomNormal([3, 3, 3, 1, 2], 0, 0.3, "float32", seed), true, `t1-${seed}-${Math.random()}`),
    ],
    [
      "c2.weight",
      tf.variable(tf.randomNormal([1, 1, 1, 2, 1], 0, 0.3, "float32", seed + 1), true, `t2-${seed}-${Math.random()}`),
    ],
  ]);
  const apply = (x: tf.Tensor5D): tf.Tensor5D =>
    tf.tidy(() =>
      tf.conv3d(
        tf.relu(tf.conv3d(x, w.get("c1.weight") as tf.Tensor5D, 1, "same")),
        w.get("c2.weight") as tf.Tensor5D,
        1,
        "same",
      ),
    );
  return {
    config: {
      name: "t",
      family: "cnn",
      inChannels: 1,
      outChannels: 1,
      patchSize: [8, 8, 8],
      seed,
      hyper: {},
      adaptation: {
        archClassName: "T",
        archKwargs: null,
        archKwargsRequiringImport: null,
        keyToEncoder: "c1",
        keyToStem: "c1",
        keysToInProj: ["c1"],
        keyToLpe: null,
      },
    },
    weights: w,
    declarations: [
      { name: "c1.weight", shape: [3, 3, 3, 1, 2], torchPerm: CONV_PERM, init: { kind: "normal", std: 0.3 } },
      { name: "c2.weight", shape: [1, 1, 1, 2, 1], torchPerm: CONV_PERM, init: { kind: "normal", std: 0.3 } },
    ],
    apply,
    encode: (x) => [apply(x)],
    parameterCount: () => 54 + 2,
    dispose: () => {
      for (const v of w.values()) v.dispose();
    },
  };
}

function images(dir: string): TrainingImage[] {
  return [0, 1].map((i) => {
    writeRawVolume(
      join(dir, `im${i}`),
      Float32Array.from({ length: 10 * 10 * 10 }, (_, k) => Math.sin(k * 0.3 + i)),
      [1, 10, 10, 10],
    );
    return { uniqueId: `im${i}`, uniqueSubjectId: `s${i}`, modality: "T1w", image: join(dir, `im${i}`) };
  });
}

function runOf(dir: string, extra: Partial<TrainingRun> = {}): TrainingRun {
  const options = resolveTrainer("BaseMAETrainer", {
    architecture: "tiny",
    numEpochs: 2,
    itersPerEpoch: 3,
    valIters: 1,
    batchSize: 1,
    patchSize: [8, 8, 8],
    loaderWorkers: 0,
    prefetch: 1,
    augment: false,
    methodOptions: { blockSize: 4 },
    optimizer: { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.9, weightDecay: 0 },
  }).options;
  return {
    trainerName: "BaseMAETrainer",
    options,
    network: net(3),
    method: new CnnMae(MaeOptionsSchema.parse({ blockSize: 4 })),
    trainImages: images(join(dir, "data")),
    valImages: [],
    outputDir: join(dir, "out"),
    checkpointDir: join(dir, "ck"),
    resume: false,
    readerModule: READER,
    initArgs: {},
    adaptationPlan: null,
    logger: pino({ level: "silent" }),
    ...extra,
  };
}

test("listeners see start, epochs, steps, end and close in order; the state is serializable and counts the steps", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-trainer-"));
  const run = runOf(dir);
  const events: string[] = [];
  const trainer = new Trainer(run);
  const listener: TrainerListener = {
    onStart: () => void events.push("start"),
    onEpochStart: (e) => void events.push(`epoch${e.epoch}@${e.iteration}/${e.itersPerEpoch}`),
    onStep: (s) => void events.push(`step${s.globalStep}`),
    onEpochEnd: async (e, t) => {
      events.push(`end${e.epoch}`);
      const s = await t.state();
      assert.deepEqual(
        [s.epoch, s.iteration, s.globalStep, s.logging.train_losses.length, s.rng.trainLoader.nextIndex],
        [e.epoch + 1, 0, 3 * (e.epoch + 1), e.epoch + 1, 3 * (e.epoch + 1)],
      );
      assert.deepEqual(s.optimizer.slots.momentum_buffer!["c1.weight"]!.shape, [3, 3, 3, 1, 2]);
      const { optimizer: _o, ...plain } = s;
      assert.deepEqual(JSON.parse(JSON.stringify(plain)), plain);
    },
    onStop: () => void events.push("stop"),
    onComplete: () => void events.push("complete"),
    onClose: () => void events.push("close"),
  };
  try {
    const r = await trainer.on(listener).fit();
    assert.equal(r.status, "completed");
    assert.equal(r.stopReason, undefined);
    assert.deepEqual(events, [
      "start",
      "epoch0@0/3",
      "step1",
      "step2",
      "step3",
      "end0",
      "epoch1@0/3",
      "step4",
      "step5",
      "step6",
      "end1",
      "complete",
      "close",
    ]);
  } finally {
    trainer.dispose();
    run.network.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a passed deadline stops after the current step with checkpoint_latest; the resume gives the uninterrupted losses", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-trainer-"));
  try {
    const lossesOf = (sink: number[]) => (s: { loss: number }) => void sink.push(s.loss);
    const full: number[] = [];
    const a = runOf(join(dir, "a"), { onStep: lossesOf(full) });
    assert.equal((await train(a)).status, "completed");
    const parts: number[] = [];
    const b1 = runOf(join(dir, "b"), { deadline: Date.now() - 1, onStep: lossesOf(parts) });
    const r1 = await train(b1);
    assert.equal(r1.status, "stopped");
    assert.equal(r1.stopReason?.kind, "deadline");
    assert.equal(r1.globalStep, 1);
    const ck = loadCheckpoint(checkpointPath(join(dir, "b", "ck"), "latest"), ["momentum_buffer"]);
    assert.deepEqual([ck.meta.current_epoch, ck.meta.iteration, ck.meta.global_step], [0, 1, 1]);
    const b2 = runOf(join(dir, "b"), { resume: true, onStep: lossesOf(parts) });
    assert.equal((await train(b2)).status, "completed");
    assert.deepEqual(parts, full);
    for (const r of [a, b1, b2]) r.network.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a divergence is a stop the listeners see, then the run fails with the TrainingError and writes no checkpoint", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-trainer-"));
  const base = runOf(dir);
  const nan: PretrainMethod = {
    ...base.method,
    loss: (n, b, o) => tf.tidy(() => tf.mul<tf.Scalar>(base.method.loss(n, b, o), NaN)),
  };
  const run = { ...base, method: nan, options: { ...base.options, maxNonFiniteSteps: 2 } };
  const stops: StopEvent[] = [];
  const trainer = new Trainer(run).on({ onStop: (e) => void stops.push(e) });
  try {
    await assert.rejects(
      trainer.fit(),
      (e: unknown) => e instanceof TrainingError && /2 consecutive non-finite/.test(e.message),
    );
    assert.equal(stops.length, 1);
    assert.equal(stops[0]!.reason.kind, "divergence");
    assert.equal(trainer.progress.globalStep, 1);
    assert.ok(!existsSync(checkpointPath(join(dir, "ck"), "latest")));
  } finally {
    trainer.dispose();
    run.network.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
