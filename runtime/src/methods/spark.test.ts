/**
 * SparK method (spark.ts): the block mask per sample (same draws as CNN MAE), the loss = masked MSE of the wrapper's
 * sparse forward with that mask, the architecture mapping and the trainer (`SparkMAETrainer` + suffixes).
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import { Rng } from "../data/rng.js";
import { selectBackend } from "../models/backend/select.js";
import { createNetwork } from "../models/registry.js";
import { isSparkNetwork } from "../models/spark.js";
import { resolveTrainer } from "../training/registry.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { writeRawVolume } from "../../../test/helpers/raw-volume.js";
import type { TrainingImage } from "../data/source.js";
import { checkpointPath, loadCheckpoint } from "../training/checkpoint.js";
import { JSONL_LOG, train, type StopSignal } from "../training/loop.js";

const READER = new URL("../../../test/helpers/raw-volume.ts", import.meta.url).href;
import { blockMask, maskedMse } from "./mae.js";
import { getMethod } from "./registry.js";
import { Spark, SparkOptionsSchema } from "./spark.js";

const P = 16;
const OPTS = { patchSize: [P, P, P] as const, seed: 2, features: [4, 8, 16], blocks: [1, 1, 1], strides: [1, 2, 2] };

before(async () => {
  await selectBackend("auto");
});

test("mask: per sample int(0.75·blocks) blocks masked, the same draws as blockMask from the step seed", () => {
  const s = new Spark(SparkOptionsSchema.parse({ blockSize: 4 }));
  const m = s.mask([3, P, P, P, 1], 11);
  const v = m.dataSync();
  const rng = new Rng(11);
  for (let b = 0; b < 3; b++) {
    const want = blockMask(rng, [P, P, P], 4, 0.75);
    assert.equal(want.masked.length, 48);
    assert.deepEqual(v.slice(b * P ** 3, (b + 1) * P ** 3), want.mask);
  }
  m.dispose();
});

test("loss = MSE over masked voxels of the sparse forward on the UNmasked input", () => {
  const net = createNetwork("spark-resenc-xs", OPTS);
  assert.ok(isSparkNetwork(net));
  const s = new Spark(SparkOptionsSchema.parse({ blockSize: 4 }));
  tf.tidy(() => {
    const x = tf.randomNormal<tf.Rank.R5>([2, P, P, P, 1], 0, 1, "float32", 1);
    const got = s.loss(net, { x }, { training: true, seed: 5 }).dataSync()[0]!;
    const mask = s.mask(x.shape, 5);
    const pred = net.forwardSparse(x, { mask, blockSize: 4 }, { training: true });
    const want = maskedMse(pred, x, tf.sub(1, mask)).dataSync()[0]!;
    assert.ok(Math.abs(got - want) < 1e-6 * Math.max(1, want), `${got} vs ${want}`);
    // by hand: mean of squared errors over masked voxels only
    const pv = pred.dataSync(),
      xv = x.dataSync(),
      mv = mask.dataSync();
    let num = 0,
      den = 0;
    for (let i = 0; i < pv.length; i++)
      if (mv[i] === 0) {
        num += (pv[i]! - xv[i]!) ** 2;
        den++;
      }
    assert.equal(den, 2 * 48 * 64);
    assert.ok(Math.abs(got - num / den) < 1e-5 * Math.max(1, want));
  });
  net.dispose();
});

test("a network without the SparK wrapper is a ConfigError; resenc-* maps to spark-resenc-*", () => {
  const plain = createNetwork("resenc-xs", OPTS);
  const s = new Spark(SparkOptionsSchema.parse({}));
  tf.tidy(() => {
    assert.throws(
      () => s.loss(plain, { x: tf.zeros([1, P, P, P, 1]) }, { training: true, seed: 0 }),
      (e: unknown) => e instanceof ConfigError && e.message.includes("spark-resenc"),
    );
  });
  plain.dispose();
  const entry = getMethod("spark");
  const exists = (k: string) => ["resenc-xs", "resenc-l", "spark-resenc-xs", "spark-resenc-l"].includes(k);
  assert.equal(entry.architectureFor!("resenc-xs", exists), "spark-resenc-xs");
  assert.equal(entry.architectureFor!("resenc-l", exists), "spark-resenc-l");
  assert.equal(entry.architectureFor!("spark-resenc-xs", exists), "spark-resenc-xs");
  assert.deepEqual(entry.families, ["cnn"]);
});

test("trainer: SparkMAETrainer(_BS8, _maskblock<n>) = spark on spark-resenc-l with the CNN recipe", () => {
  const t = resolveTrainer("SparkMAETrainer_BS8");
  assert.equal(t.entry.key, "spark-resenc-l");
  assert.equal(t.options.method, "spark");
  assert.equal(t.options.architecture, "spark-resenc-l");
  assert.equal(t.options.batchSize, 8);
  assert.deepEqual(t.options.optimizer, { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.99, weightDecay: 3e-5 });
  assert.equal(t.options.gradClip, 12);
  assert.deepEqual(t.options.methodOptions, { maskRatio: 0.75, blockSize: 16 });
  assert.equal(resolveTrainer("SparkMAETrainer_BS8_1000ep").options.numEpochs, 1000);
  assert.equal(resolveTrainer("spark-resenc-l_maskblock4").options.methodOptions.blockSize, 4);
  assert.throws(
    () => resolveTrainer("SparkMAETrainer_ANON"),
    (e: unknown) => e instanceof ConfigError && e.message.includes("methodOptions"),
  );
});

test("training loop: stop mid-run and resume reproduces the uninterrupted run (SparK tensors and their momentum in the checkpoint)", async () => {
  const root = mkdtempSync(join(tmpdir(), "ssl3d-spark-resume-"));
  try {
    const images: TrainingImage[] = [];
    for (let i = 0; i < 2; i++) {
      const n = 12 * 12 * 12;
      writeRawVolume(
        join(root, "data", `im${i}`),
        Float32Array.from({ length: n }, (_, k) => Math.sin((k % 12) * 0.5 + i) + Math.cos(Math.floor(k / 144) * 0.4)),
        [1, 12, 12, 12],
      );
      images.push({
        uniqueId: `im${i}`,
        uniqueSubjectId: `s${i}`,
        modality: "T1w",
        image: join(root, "data", `im${i}`),
      });
    }
    const options = resolveTrainer("SparkMAETrainer_maskblock2", {
      architecture: "spark-resenc-xs",
      numEpochs: 2,
      itersPerEpoch: 3,
      valIters: 1,
      batchSize: 2,
      patchSize: [8, 8, 8],
      loaderWorkers: 1,
      prefetch: 2,
      augment: false,
    }).options;
    const run = (
      dir: string,
      extra: { resume?: boolean; stop?: StopSignal; onStep?: (s: { globalStep: number }) => void } = {},
    ) => ({
      trainerName: "SparkMAETrainer_maskblock2",
      options,
      network: createNetwork("spark-resenc-xs", {
        patchSize: [8, 8, 8],
        seed: 1,
        features: [2, 4],
        blocks: [1, 1],
        strides: [1, 2],
      }),
      method: new Spark(SparkOptionsSchema.parse({ blockSize: 2 })),
      trainImages: images,
      valImages: images.slice(0, 1),
      outputDir: join(dir, "out"),
      checkpointDir: join(dir, "ck"),
      resume: extra.resume ?? false,
      readerModule: READER,
      initArgs: {},
      adaptationPlan: null,
      logger: pino({ level: "silent" }),
      ...(extra.stop === undefined ? {} : { stop: extra.stop }),
      ...(extra.onStep === undefined ? {} : { onStep: extra.onStep }),
    });
    const losses = (dir: string): number[] =>
      readFileSync(join(dir, "out", JSONL_LOG), "utf8")
        .trim()
        .split("\n")
        .flatMap((l) => (JSON.parse(l) as { step_losses: number[] }).step_losses);
    const a = join(root, "a"),
      b = join(root, "b");
    const ra = run(a);
    await train(ra);
    ra.network.dispose();
    const stop: StopSignal = { requested: false };
    const rb1 = run(b, {
      stop,
      onStep: (s) => {
        if (s.globalStep === 4) {
          stop.requested = true;
          stop.reason = "test";
        }
      },
    });
    assert.equal((await train(rb1)).status, "stopped");
    rb1.network.dispose();
    const mid = loadCheckpoint(checkpointPath(join(b, "ck"), "latest"), ["momentum_buffer"]);
    assert.ok(
      mid.weights.has("mask_tokens.1") &&
        mid.optimizerState.slots.momentum_buffer!["densify_projs.1.weight"] !== undefined,
    );
    const rb2 = run(b, { resume: true });
    assert.equal((await train(rb2)).status, "completed");
    rb2.network.dispose();
    const la = losses(a),
      lb = losses(b);
    assert.equal(lb.length, 6);
    la.forEach((v, i) => {
      assert.ok(Math.abs(v - lb[i]!) <= 1e-6 * Math.max(1, Math.abs(v)), `step ${i}: ${v} vs ${lb[i]}`);
    });
    const fa = loadCheckpoint(checkpointPath(join(a, "ck"), "final"), ["momentum_buffer"]);
    const fb = loadCheckpoint(checkpointPath(join(b, "ck"), "final"), ["momentum_buffer"]);
    for (const k of [
      "mask_tokens.0",
      "densify_projs.1.weight",
      "densify_norms.1.weight",
      "encoder.stem.convs.0.conv.weight",
    ])
      assert.deepEqual(Array.from(fb.weights.get(k)!.data), Array.from(fa.weights.get(k)!.data), k);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
