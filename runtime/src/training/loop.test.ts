import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { pino } from "pino";
import { PNG } from "pngjs";
import { writeRawVolume } from "../../../test/helpers/raw-volume.js";
import { NO_INTENSITY, type IntensityRecipe } from "../data/intensity.js";
import type { TrainingImage } from "../data/source.js";
import type { PretrainMethod } from "../methods/method.js";
import { MaeOptionsSchema, CnnMae } from "../methods/mae.js";
import { ModelsGenesis, ModelsGenesisOptionsSchema } from "../methods/models-genesis.js";
import { VoCo, VoCoOptionsSchema } from "../methods/voco.js";
import { createNetwork } from "../models/registry.js";
import type { Network, Vec3 } from "../models/architecture.js";
import { CONV_PERM } from "../models/params.js";
import { createServer } from "node:net";
import { initProcessGroup, type ProcessGroup } from "../distributed/process-group.js";
import { TrainingError } from "../errors.js";
import { COLORS, PROGRESS_WIDTH } from "../observability/progress-png.js";
import { TrainingMetrics } from "../observability/training-metrics.js";
import { checkpointPath, loadCheckpoint } from "./checkpoint.js";
import { JSONL_LOG, train, type StopSignal } from "./loop.js";
import { resolveTrainer } from "./registry.js";
import { selectBackend } from "../models/backend/select.js";

// the default cpu path: native kernels when the addon is built (SSL3D_NATIVE=0: stock tfjs kernels)
await selectBackend("cpu");
const READER = new URL("../../../test/helpers/raw-volume.ts", import.meta.url).href;
const silent = pino({ level: "silent" });

/** Stand-in CNN for loop tests: conv3d 3³ (1→4) → relu → conv3d 1³ (4→1), deterministic init from the seed. */
function tinyCnn(seed: number, patch: Vec3): Network {
  const w = new Map<string, tf.Variable>([
    [
      "conv1.weight",
      tf.variable(tf.randomNormal([3, 3, 3, 1, 4], 0, 0.3, "float32", seed), true, `c1w-${seed}-${Math.random()}`),
    ],
    ["conv1.bias", tf.variable(tf.zeros([4]), true, `c1b-${seed}-${Math.random()}`)],
    [
      "conv2.weight",
      tf.variable(tf.randomNormal([1, 1, 1, 4, 1], 0, 0.3, "float32", seed + 1), true, `c2w-${seed}-${Math.random()}`),
    ],
    ["conv2.bias", tf.variable(tf.zeros([1]), true, `c2b-${seed}-${Math.random()}`)],
  ]);
  const apply = (x: tf.Tensor5D): tf.Tensor5D =>
    tf.tidy(() => {
      const h = tf.relu(tf.add(tf.conv3d(x, w.get("conv1.weight") as tf.Tensor5D, 1, "same"), w.get("conv1.bias")!));
      return tf.add<tf.Tensor5D>(
        tf.conv3d(h as tf.Tensor5D, w.get("conv2.weight") as tf.Tensor5D, 1, "same"),
        w.get("conv2.bias")!,
      );
    });
  return {
    config: {
      name: "tiny",
      family: "cnn",
      inChannels: 1,
      outChannels: 1,
      patchSize: patch,
      seed,
      hyper: {},
      adaptation: {
        archClassName: "Tiny",
        archKwargs: null,
        archKwargsRequiringImport: null,
        keyToEncoder: "conv1",
        keyToStem: "conv1",
        keysToInProj: ["conv1"],
        keyToLpe: null,
      },
    },
    weights: w,
    declarations: [
      { name: "conv1.weight", shape: [3, 3, 3, 1, 4], torchPerm: CONV_PERM, init: { kind: "normal", std: 0.3 } },
      { name: "conv1.bias", shape: [4], torchPerm: null, init: { kind: "const", value: 0 } },
      { name: "conv2.weight", shape: [1, 1, 1, 4, 1], torchPerm: CONV_PERM, init: { kind: "normal", std: 0.3 } },
      { name: "conv2.bias", shape: [1], torchPerm: null, init: { kind: "const", value: 0 } },
    ],
    apply,
    encode: (x) => [apply(x)],
    parameterCount: () => 3 * 3 * 3 * 4 + 4 + 4 + 1,
    dispose: () => {
      for (const v of w.values()) v.dispose();
    },
  };
}

function makeImages(dir: string): TrainingImage[] {
  const out: TrainingImage[] = [];
  for (let i = 0; i < 3; i++) {
    const shape = [1, 14, 12, 12];
    const n = 14 * 12 * 12;
    // smooth structured volumes: learnable from neighbours
    writeRawVolume(
      join(dir, `im${i}`),
      Float32Array.from({ length: n }, (_, k) => Math.sin((k % 12) * 0.5 + i) + Math.cos(Math.floor(k / 144) * 0.4)),
      shape,
    );
    out.push({ uniqueId: `im${i}`, uniqueSubjectId: `s${i}`, modality: "T1w", image: join(dir, `im${i}`) });
  }
  return out;
}

function options(epochs: number) {
  return resolveTrainer("BaseMAETrainer", {
    architecture: "tiny",
    numEpochs: epochs,
    itersPerEpoch: 4,
    valIters: 2,
    batchSize: 2,
    patchSize: [8, 8, 8],
    loaderWorkers: 1,
    prefetch: 2,
    methodOptions: { blockSize: 4 },
    optimizer: { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.9, weightDecay: 3e-5 },
  }).options;
}

function runOf(
  dir: string,
  epochs: number,
  extra: {
    resume?: boolean;
    stop?: StopSignal;
    onStep?: (s: { globalStep: number; loss: number }) => void;
    metrics?: TrainingMetrics;
  } = {},
) {
  const o = options(epochs);
  return {
    trainerName: "BaseMAETrainer",
    options: o,
    network: tinyCnn(1, [8, 8, 8]),
    method: new CnnMae(MaeOptionsSchema.parse({ blockSize: 4 })),
    trainImages: makeImages(join(dir, "data")),
    valImages: [],
    outputDir: join(dir, "out"),
    checkpointDir: join(dir, "ck"),
    resume: extra.resume ?? false,
    readerModule: READER,
    initArgs: { plans_name: "nnsslPlans" },
    adaptationPlan: { architecture_plans: { arch_class_name: "Tiny" } },
    logger: silent,
    ...(extra.stop === undefined ? {} : { stop: extra.stop }),
    ...(extra.onStep === undefined ? {} : { onStep: extra.onStep }),
    ...(extra.metrics === undefined ? {} : { metrics: extra.metrics }),
  };
}

function jsonlLosses(dir: string): number[] {
  return readFileSync(join(dir, "out", JSONL_LOG), "utf8")
    .trim()
    .split("\n")
    .flatMap((l) => (JSON.parse(l) as { step_losses: number[] }).step_losses);
}

test("loop: epochs × iterations, checkpoints latest/best/final, JSONL + progress.png, no tensor leak per step, metrics", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loop-"));
  try {
    const counts: number[] = [];
    const metrics = new TrainingMetrics({ defaultMetrics: false });
    const run = runOf(dir, 3, { metrics, onStep: () => counts.push(tf.memory().numTensors) });
    const r = await train(run);
    assert.equal(r.status, "completed");
    assert.equal(r.globalStep, 12);
    assert.equal(new Set(counts.slice(1)).size, 1, `tensor count changed across steps: ${counts.join(",")}`);
    assert.ok(existsSync(checkpointPath(join(dir, "ck"), "final")));
    assert.ok(existsSync(checkpointPath(join(dir, "ck"), "best")));
    assert.ok(!existsSync(checkpointPath(join(dir, "ck"), "latest")));
    const ck = loadCheckpoint(checkpointPath(join(dir, "ck"), "final"), ["momentum_buffer"]);
    assert.equal(ck.meta.current_epoch, 3);
    assert.equal(ck.meta.global_step, 12);
    assert.equal(ck.meta.trainer_name, "BaseMAETrainer");
    assert.equal(ck.meta.logging.train_losses.length, 3);
    assert.deepEqual(ck.meta.rng.train_loader, { stream: "train", nextIndex: 12 });
    assert.deepEqual(ck.meta.nnssl_adaptation_plan, { architecture_plans: { arch_class_name: "Tiny" } });
    assert.deepEqual([...ck.weights.keys()].sort(), ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight"]);
    assert.deepEqual(ck.weights.get("conv1.weight")!.shape, [4, 1, 3, 3, 3]); // PyTorch (out, in, k, k, k)
    assert.deepEqual(Object.keys(ck.optimizerState.slots.momentum_buffer!).sort(), [
      "conv1.bias",
      "conv1.weight",
      "conv2.bias",
      "conv2.weight",
    ]);
    assert.equal(jsonlLosses(dir).length, 12);
    const png = PNG.sync.read(readFileSync(join(dir, "out", "progress.png")));
    assert.equal(png.width, PROGRESS_WIDTH);
    const count = (hex: string) => {
      const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      let n = 0;
      for (let i = 0; i < png.data.length; i += 4)
        if (png.data[i] === c[0] && png.data[i + 1] === c[1] && png.data[i + 2] === c[2]) n++;
      return n;
    };
    assert.ok(
      count(COLORS.train) > 100 && count(COLORS.val) > 100 && count(COLORS.lr) > 100,
      "loss/LR curves missing in progress.png",
    );
    const text = await metrics.registry.metrics();
    assert.match(text, /pretrain_global_step 12/);
    assert.match(text, /pretrain_samples_total 24/);
    assert.match(text, /pretrain_step_duration_seconds_count 12/);
    run.network.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loop: stop after a step mid-epoch, resume → the same loss sequence as an uninterrupted run", async () => {
  const a = mkdtempSync(join(tmpdir(), "ssl3d-loopA-"));
  const b = mkdtempSync(join(tmpdir(), "ssl3d-loopB-"));
  try {
    const runA = runOf(a, 3);
    await train(runA);
    runA.network.dispose();
    const stop: StopSignal = { requested: false };
    const runB1 = runOf(b, 3, {
      stop,
      onStep: (s) => {
        if (s.globalStep === 6) {
          stop.requested = true;
          stop.reason = "test";
        }
      },
    });
    const r1 = await train(runB1);
    runB1.network.dispose();
    assert.equal(r1.status, "stopped");
    assert.equal(r1.globalStep, 6);
    const mid = loadCheckpoint(checkpointPath(join(b, "ck"), "latest"), ["momentum_buffer"]);
    assert.equal(mid.meta.current_epoch, 1);
    assert.equal(mid.meta.iteration, 2);
    const runB2 = runOf(b, 3, { resume: true });
    const r2 = await train(runB2);
    runB2.network.dispose();
    assert.equal(r2.status, "completed");
    assert.equal(r2.globalStep, 12);
    const la = jsonlLosses(a);
    const lb = jsonlLosses(b);
    assert.equal(lb.length, 12);
    la.forEach((v, i) => {
      assert.ok(Math.abs(v - lb[i]!) <= 1e-6 * Math.max(1, Math.abs(v)), `step ${i}: ${v} vs ${lb[i]}`);
    });
    const fa = loadCheckpoint(checkpointPath(join(a, "ck"), "final"), ["momentum_buffer"]);
    const fb = loadCheckpoint(checkpointPath(join(b, "ck"), "final"), ["momentum_buffer"]);
    assert.deepEqual(
      Array.from(fb.weights.get("conv1.weight")!.data),
      Array.from(fa.weights.get("conv1.weight")!.data),
    );
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

test("loop: non-finite steps are skipped and counted; too many in a row fail with TrainingError", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loopnan-"));
  try {
    const base = runOf(dir, 1);
    let calls = 0;
    const inner = base.method;
    const flaky = {
      key: inner.key,
      needsAnon: inner.needsAnon,
      outChannels: (c: number) => inner.outChannels(c),
      loss: (...args: Parameters<typeof inner.loss>) => {
        calls += 1;
        const l = inner.loss(...args);
        return calls === 2 || calls === 3 ? tf.mul<tf.Scalar>(l, Number.NaN) : l;
      },
    };
    const metrics = new TrainingMetrics({ defaultMetrics: false });
    const snapshots: number[][] = [];
    const r = await train({
      ...base,
      options: { ...base.options, valIters: 0, maxNonFiniteSteps: 3 },
      method: flaky,
      metrics,
      onStep: () => snapshots.push(Array.from(base.network.weights.get("conv2.bias")!.dataSync())),
    });
    assert.equal(r.status, "completed");
    assert.match(await metrics.registry.metrics(), /pretrain_nonfinite_steps_total 2/);
    assert.deepEqual(snapshots[1], snapshots[0]); // step 2 skipped: no update
    assert.deepEqual(snapshots[2], snapshots[0]); // step 3 skipped
    assert.notDeepEqual(snapshots[3], snapshots[2]);
    const lines = readFileSync(join(dir, "out", JSONL_LOG), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step_losses: (number | null)[]; nonfinite_total: number });
    assert.equal(lines[0]!.step_losses[1], null);
    assert.equal(lines[0]!.nonfinite_total, 2);
    base.network.dispose();

    const base2 = runOf(join(dir, "b"), 1);
    const alwaysNan = {
      ...flaky,
      loss: (...args: Parameters<typeof inner.loss>) => tf.mul<tf.Scalar>(inner.loss(...args), Number.NaN),
    };
    await assert.rejects(
      train({ ...base2, options: { ...base2.options, maxNonFiniteSteps: 3 }, method: alwaysNan }),
      (e: unknown) => e instanceof TrainingError && /3 consecutive non-finite/.test(e.message),
    );
    base2.network.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loop: two data-parallel ranks (TCP ring, in one process) keep identical weights; only rank 0 writes", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loopddp-"));
  try {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => {
          resolve(p);
        });
      });
    });
    const cfg = (rank: number) => ({
      rank,
      worldSize: 2,
      masterAddr: "127.0.0.1",
      masterPort: port,
      timeoutMs: 30_000,
    });
    const [g0, g1] = await Promise.all([initProcessGroup(cfg(0)), initProcessGroup(cfg(1))]);
    const mk = (rank: number, group: ProcessGroup) => {
      const base = runOf(join(dir, `r${rank}`), 2);
      // different init per rank: the broadcast must make them equal
      const network = tinyCnn(1 + rank * 100, [8, 8, 8]);
      return {
        ...base,
        network,
        group,
        globalBatchSize: 2,
        options: { ...base.options, batchSize: 1 },
        outputDir: join(dir, `out${rank}`),
        checkpointDir: join(dir, `ck${rank}`),
      };
    };
    const r0 = mk(0, g0);
    const r1 = mk(1, g1);
    const [a, b] = await Promise.all([train(r0), train(r1)]);
    assert.equal(a.status, "completed");
    assert.equal(b.status, "completed");
    assert.equal(a.finalTrainLoss, b.finalTrainLoss);
    for (const k of r0.network.weights.keys()) {
      assert.deepEqual(
        Array.from(r1.network.weights.get(k)!.dataSync()),
        Array.from(r0.network.weights.get(k)!.dataSync()),
        k,
      );
    }
    assert.ok(existsSync(checkpointPath(join(dir, "ck0"), "final")));
    assert.ok(!existsSync(checkpointPath(join(dir, "ck1"), "final")));
    assert.ok(!existsSync(join(dir, "out1", JSONL_LOG)));
    r0.network.dispose();
    r1.network.dispose();
    await Promise.all([g0.close(), g1.close()]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loop honours method data needs (ADR 0040): 2 patches per sample, centre crops, intensity on training batches only", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loop-needs-"));
  try {
    const base = runOf(dir, 1);
    const seen: { training: boolean; shape: number[]; data: Float32Array }[] = [];
    const brightOnly: IntensityRecipe = { ...NO_INTENSITY, brightness: { p: 1, multiplier: [2, 3] } };
    const method: PretrainMethod = {
      key: "recording",
      needsAnon: false,
      data: { imagesPerSample: 2, crop: "center", trainIntensity: brightOnly },
      outChannels: () => 1,
      loss: (net, batch, ctx) => {
        seen.push({ training: ctx.training, shape: batch.x.shape, data: batch.x.dataSync() as Float32Array });
        return tf.mean<tf.Scalar>(
          tf.square(net.apply(tf.slice(batch.x, [0, 0, 0, 0, 0], [2, -1, -1, -1, -1]), { training: ctx.training })),
        );
      },
    };
    const metrics = new TrainingMetrics({ defaultMetrics: false });
    const r = await train({ ...base, options: { ...base.options, augment: false }, method, metrics });
    assert.equal(r.status, "completed");
    assert.ok(seen.length === 4 + 2);
    for (const s of seen) assert.deepEqual(s.shape, [4, 8, 8, 8, 1]);
    // centre crop of a 14×12×12 image with an 8³ patch: corner (3, 2, 2); validation patches are exactly such crops
    const crops = base.trainImages.map((_, i) => {
      const c = new Float32Array(512);
      let o = 0;
      for (let x = 3; x < 11; x++)
        for (let y = 2; y < 10; y++)
          for (let z = 2; z < 10; z++, o++) {
            const k = (x * 12 + y) * 12 + z;
            c[o] = Math.fround(Math.sin((k % 12) * 0.5 + i) + Math.cos(Math.floor(k / 144) * 0.4));
          }
      return c;
    });
    const isCrop = (d: Float32Array, b: number) =>
      crops.some((c) => c.every((v, j) => Math.abs(v - d[b * 512 + j]!) < 1e-6));
    for (const s of seen.filter((q) => !q.training))
      for (let b = 0; b < 4; b++) assert.ok(isCrop(s.data, b), "validation patch is a plain centre crop");
    // training patches: a centre crop times one factor in [2, 3)
    const isScaledCrop = (d: Float32Array, b: number) =>
      crops.some((c) => {
        let dc = 0;
        let cc = 0;
        c.forEach((v, j) => {
          dc += v * d[b * 512 + j]!;
          cc += v * v;
        });
        const f = dc / cc;
        return f >= 2 && f < 3 && c.every((v, j) => Math.abs(v * f - d[b * 512 + j]!) < 1e-4);
      });
    for (const s of seen.filter((q) => q.training))
      for (let b = 0; b < 4; b++)
        assert.ok(
          !isCrop(s.data, b) && isScaledCrop(s.data, b),
          "training patch is a brightness-augmented centre crop",
        );
    const text = await metrics.registry.metrics();
    assert.match(text, /pretrain_samples_total 8\b/); // 4 steps × 2 network samples (not 4 loaded patches)
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Models Genesis corrupts in the loader workers (ADR 0040 transform): same train and validation losses with 0 or 2 workers, and after a stop + resume", async () => {
  const a = mkdtempSync(join(tmpdir(), "ssl3d-loop-mg0-"));
  const b = mkdtempSync(join(tmpdir(), "ssl3d-loop-mg2-"));
  try {
    const mg = () => new ModelsGenesis(ModelsGenesisOptionsSchema.parse({ shuffleBlocks: 20, bezierPoints: 2000 }));
    const seen: { training: boolean; hasTarget: boolean }[] = [];
    const runWith = (dir: string, workers: number, extra: Parameters<typeof runOf>[2] = {}) => {
      const base = runOf(dir, 2, extra);
      const method = mg();
      const loss = method.loss.bind(method);
      method.loss = (net, batch, ctx) => {
        seen.push({ training: ctx.training, hasTarget: batch.target !== undefined });
        return loss(net, batch, ctx);
      };
      return {
        ...base,
        trainerName: "ModelGenesisTrainer",
        method,
        options: { ...base.options, augment: false, loaderWorkers: workers },
      };
    };
    const runA = runWith(a, 0);
    assert.equal((await train(runA)).status, "completed");
    runA.network.dispose();
    const stop: StopSignal = { requested: false };
    const runB1 = runWith(b, 2, {
      stop,
      onStep: (s) => {
        if (s.globalStep === 3) {
          stop.requested = true;
          stop.reason = "test";
        }
      },
    });
    assert.equal((await train(runB1)).status, "stopped");
    runB1.network.dispose();
    const runB2 = runWith(b, 2, { resume: true });
    assert.equal((await train(runB2)).status, "completed");
    runB2.network.dispose();
    // validation is corrupted too: every call, training or not, got the loader's clean target
    assert.ok(seen.some((q) => !q.training) && seen.every((q) => q.hasTarget));
    const read = (d: string) =>
      readFileSync(join(d, "out", JSONL_LOG), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { step_losses: number[]; val_step_losses: number[] });
    const [la, lb] = [read(a), read(b)];
    assert.equal(la.length, 2);
    assert.equal(lb.length, 2);
    const flat = (l: typeof la) => l.flatMap((e) => [...e.step_losses, ...e.val_step_losses]);
    assert.equal(flat(la).length, 2 * (4 + 2));
    flat(la).forEach((v, i) => {
      assert.ok(
        Number.isFinite(v) && Math.abs(v - flat(lb)[i]!) <= 1e-6 * Math.max(1, Math.abs(v)),
        `loss ${i}: ${v} vs ${flat(lb)[i]}`,
      );
    });
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

test("VoCo crops in the loader workers: batches of crops + overlap truth through the loop, same train and validation losses with 0 or 2 workers, samples counted per loaded patch", async () => {
  const losses: number[][] = [];
  for (const workers of [0, 2]) {
    const dir = mkdtempSync(join(tmpdir(), `ssl3d-loop-voco${workers}-`));
    try {
      const base = runOf(dir, 1);
      const net = createNetwork("voco-resenc-xs", {
        features: [4, 8],
        strides: [1, 2],
        patchSize: [2, 2, 8],
        headDim: 16,
        seed: 1,
      });
      const shapes: number[][] = [];
      const method = new VoCo(VoCoOptionsSchema.parse({ targetCrops: 2 }));
      const loss = method.loss.bind(method);
      method.loss = (n, batch, ctx) => {
        shapes.push([...batch.x.shape, ...(batch.aux?.shape ?? [])]);
        return loss(n, batch, ctx);
      };
      const metrics = new TrainingMetrics({ defaultMetrics: false });
      const r = await train({
        ...base,
        trainerName: "VoCoTrainer",
        network: net,
        method,
        metrics,
        options: { ...base.options, augment: false, loaderWorkers: workers },
      });
      net.dispose();
      assert.equal(r.status, "completed");
      // 2 images × (16 bases + 2 targets) crops of 2×2×8, truth [2, 2, 16]; training and validation alike
      assert.equal(shapes.length, 4 + 2);
      for (const sh of shapes) assert.deepEqual(sh, [36, 2, 2, 8, 1, 2, 2, 16]);
      assert.match(await metrics.registry.metrics(), /pretrain_samples_total 8\b/);
      const l = JSON.parse(readFileSync(join(dir, "out", JSONL_LOG), "utf8").trim()) as {
        step_losses: number[];
        val_step_losses: number[];
      };
      losses.push([...l.step_losses, ...l.val_step_losses]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.equal(losses[0]!.length, 6);
  losses[0]!.forEach((v, i) => {
    assert.ok(
      Number.isFinite(v) && Math.abs(v - losses[1]![i]!) <= 1e-6 * Math.max(1, Math.abs(v)),
      `loss ${i}: ${v} vs ${losses[1]![i]}`,
    );
  });
});
