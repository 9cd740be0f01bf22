/**
 * VoCo (nnssl `vocoTrainer.py`, `voco_loss.py`): overlap ground truth of hand-placed crops, crops inside the patch with
 * the right content and order, the loss against a direct double-precision evaluation, the stop-gradient on the bases,
 * one training step through the real voco-resenc-xs network (gradients reach encoder and head, no tensor leak), the
 * augmentation hook (training only) and the configuration errors.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform, validationTransform } from "../data/batch-transforms.js";
import { Rng } from "../data/rng.js";
import type { Vec3 } from "../models/architecture.js";
import { createNetwork } from "../models/registry.js";
import { valueAndGrads } from "../training/backprop.js";
import { ConfigError } from "../errors.js";
import {
  baseOffsets,
  overlapTruth,
  VoCo,
  vocoCropSize,
  vocoCrops,
  vocoLoss,
  vocoPredLoss,
  vocoRegLoss,
  VoCoOptionsSchema,
  voco,
} from "./voco.js";
import { getMethod } from "./registry.js";
import { defaultCropAugment } from "./crop-augment.js";
import { augmentIntensity, VOCO_RECIPE } from "../data/intensity.js";

await tf.setBackend("cpu");

/** A batch whose voxel value encodes (b, x, y, z, c), so a crop's content tells where it came from. */
function coordBatch(shape: [number, number, number, number, number]): Float32Array {
  const [B, X, Y, Z, C] = shape;
  const d = new Float32Array(B * X * Y * Z * C);
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let z = 0; z < Z; z++) for (let c = 0; c < C; c++) d[o++] = b * 1e6 + x * 1e4 + y * 100 + z + c * 0.5;
  return d;
}

test("crop size = patch / grid: upstream 256×256×64 / 4×4×1 → 64³; test patch 64×64×16 → 16³; bad grids are ConfigErrors", () => {
  assert.deepEqual(vocoCropSize([256, 256, 64], [4, 4, 1]), [64, 64, 64]);
  assert.deepEqual(vocoCropSize([64, 64, 16], [4, 4, 1]), [16, 16, 16]);
  assert.deepEqual(voco.networkPatchSize!([256, 256, 64], VoCoOptionsSchema.parse({})), [64, 64, 64]);
  assert.throws(() => vocoCropSize([250, 256, 64], [4, 4, 1]), ConfigError);
  assert.throws(() => vocoCropSize([64, 64, 64], [1, 1, 1]), ConfigError);
  assert.deepEqual(baseOffsets([2, 2, 1], [16, 16, 16]), [
    [0, 0, 0],
    [0, 16, 0],
    [16, 0, 0],
    [16, 16, 0],
  ]);
});

test("overlap ground truth of hand-placed targets on the 4×4×1 grid of 16³ crops", () => {
  const crop: Vec3 = [16, 16, 16];
  const bases = baseOffsets([4, 4, 1], crop);
  const targets: Vec3[] = [
    [0, 0, 0],
    [8, 8, 0],
    [8, 0, 0],
    [48, 48, 0],
    [20, 36, 0],
  ];
  const gt = overlapTruth(targets, bases, crop);
  const row = (t: number) => Array.from(gt.subarray(t * 16, (t + 1) * 16));
  const expect = (entries: Record<number, number>) => Array.from({ length: 16 }, (_, i) => entries[i] ?? 0);
  assert.deepEqual(row(0), expect({ 0: 1 }));
  assert.deepEqual(row(1), expect({ 0: 0.25, 1: 0.25, 4: 0.25, 5: 0.25 })); // base index = i·4 + j
  assert.deepEqual(row(2), expect({ 0: 0.5, 4: 0.5 }));
  assert.deepEqual(row(3), expect({ 15: 1 }));
  // x 20..36 covers bases i=1 (12 of 16) and i=2 (4); y 36..52 covers j=2 (12) and j=3 (4)
  assert.deepEqual(row(4), expect({ 6: (12 * 12) / 256, 7: (12 * 4) / 256, 10: (4 * 12) / 256, 11: (4 * 4) / 256 }));
});

test("crops: bases tile the patch in x-major order, targets lie inside it (z offset 0), content is the patch region, truth rows sum to 1", () => {
  const shape: [number, number, number, number, number] = [2, 64, 64, 16, 2];
  const data = coordBatch(shape);
  const c = vocoCrops(new Rng(5), data, shape, [4, 4, 1], 4);
  assert.deepEqual(c.cropSize, [16, 16, 16]);
  assert.equal(c.nBase, 16);
  assert.equal(c.crops.length, 2 * 20 * 16 ** 3 * 2);
  const len = 16 ** 3 * 2;
  const at = (crop: number, x: number, y: number, z: number, ch: number) =>
    c.crops[crop * len + ((x * 16 + y) * 16 + z) * 2 + ch]!;
  // base n of image b: corner (16·i, 16·j, 0), n = i·4 + j
  for (const [b, n] of [
    [0, 0],
    [0, 6],
    [1, 15],
  ] as const) {
    const i = Math.floor(n / 4),
      j = n % 4;
    assert.equal(at(b * 16 + n, 0, 0, 0, 0), b * 1e6 + 16 * i * 1e4 + 16 * j * 100);
    assert.equal(at(b * 16 + n, 15, 3, 7, 1), b * 1e6 + (16 * i + 15) * 1e4 + (16 * j + 3) * 100 + 7 + 0.5);
  }
  for (let b = 0; b < 2; b++) {
    for (let t = 0; t < 4; t++) {
      const o = c.targets[b]![t]!;
      assert.ok(o[0] >= 0 && o[0] <= 48 && o[1] >= 0 && o[1] <= 48 && o[2] === 0, `target ${o.join(",")}`);
      const k = 2 * 16 + b * 4 + t;
      assert.equal(at(k, 0, 0, 0, 0), b * 1e6 + o[0] * 1e4 + o[1] * 100);
      assert.equal(at(k, 9, 15, 15, 1), b * 1e6 + (o[0] + 9) * 1e4 + (o[1] + 15) * 100 + 15 + 0.5);
      const sum = Array.from(c.truth.subarray((b * 4 + t) * 16, (b * 4 + t + 1) * 16)).reduce((a, v) => a + v, 0);
      assert.ok(Math.abs(sum - 1) < 1e-6, `truth row sums to ${sum}`);
      assert.deepEqual(
        Array.from(c.truth.subarray((b * 4 + t) * 16, (b * 4 + t + 1) * 16)),
        Array.from(overlapTruth([o], baseOffsets([4, 4, 1], [16, 16, 16]), [16, 16, 16])),
      );
    }
  }
  // same seed, same targets; another seed, other targets
  assert.deepEqual(vocoCrops(new Rng(5), data, shape, [4, 4, 1], 4).targets, c.targets);
  assert.notDeepEqual(vocoCrops(new Rng(6), data, shape, [4, 4, 1], 4).targets, c.targets);
});

/** Direct double-precision evaluation of nnssl `VoCoLoss`. */
function reference(base: number[][][], target: number[][][], gt: number[][][]): number {
  const cos = (a: number[], b: number[]) => {
    const dot = a.reduce((s, v, i) => s + v * b[i]!, 0);
    const na = Math.sqrt(a.reduce((s, v) => s + v * v, 0));
    const nb = Math.sqrt(b.reduce((s, v) => s + v * v, 0));
    return dot / (na * nb);
  };
  let posNum = 0,
    posDen = 0,
    negNum = 0,
    negDen = 0;
  base.forEach((bs, b) => {
    target[b]!.forEach((tv, t) => {
      bs.forEach((bv, n) => {
        const s = Math.max(0, cos(tv, bv));
        const g = gt[b]![t]![n]!;
        posNum += -Math.log(1 - Math.abs(g - s) + 1e-6) * g;
        posDen += g;
        const isNeg = g === 0 ? 1 : 0;
        negNum += s * s * isNeg;
        negDen += isNeg + 1e-6;
      });
    });
  });
  const N = base[0]!.length;
  let reg = 0;
  for (const bs of base) {
    let s = 0;
    for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) s += Math.max(0, cos(bs[i]!, bs[j]!));
    reg += (s * 2) / (N * (N - 1));
  }
  return posNum / posDen + negNum / negDen + reg / base.length;
}

test("the VoCo loss equals a direct double-precision computation (B 2, 4 bases, 3 targets, D 6, zero and partial overlaps)", () => {
  const rng = new Rng(11);
  const B = 2,
    N = 4,
    T = 3,
    D = 6;
  const rand = (...dims: number[]): number[][][] =>
    Array.from({ length: dims[0]! }, () =>
      Array.from({ length: dims[1]! }, () => Array.from({ length: dims[2]! }, () => rng.uniform(-1, 1))),
    );
  const base = rand(B, N, D);
  const target = rand(B, T, D);
  // real overlaps of a 2×2×1 grid of 8³ crops on a 16×16×8 patch
  const bases = baseOffsets([2, 2, 1], [8, 8, 8]);
  const gtFlat = [
    overlapTruth(
      [
        [0, 0, 0],
        [4, 4, 0],
        [8, 2, 0],
      ],
      bases,
      [8, 8, 8],
    ),
    overlapTruth(
      [
        [8, 8, 0],
        [2, 8, 0],
        [0, 0, 0],
      ],
      bases,
      [8, 8, 8],
    ),
  ];
  const gt = gtFlat.map((g) => Array.from({ length: T }, (_, t) => Array.from(g.subarray(t * N, (t + 1) * N))));
  const got = tf.tidy(() => vocoLoss(tf.tensor3d(base), tf.tensor3d(target), tf.tensor3d(gt)).dataSync()[0]!);
  const want = reference(base, target, gt);
  assert.ok(Math.abs(got - want) < 1e-5 * Math.max(1, Math.abs(want)), `${got} vs ${want}`);
  // and the parts add up
  const parts = tf.tidy(() => [
    vocoPredLoss(tf.tensor3d(base), tf.tensor3d(target), tf.tensor3d(gt)).dataSync()[0]!,
    vocoRegLoss(tf.tensor3d(base)).dataSync()[0]!,
  ]);
  assert.ok(Math.abs(parts[0]! + parts[1]! - got) < 1e-6);
});

test("stop-gradient: the bases get no gradient through L_pred; through the total loss exactly L_reg's", () => {
  const rng = new Rng(3);
  const base = tf.tensor3d(
    Array.from({ length: 2 * 4 * 5 }, () => rng.uniform(-1, 1)),
    [2, 4, 5],
  );
  const target = tf.tensor3d(
    Array.from({ length: 2 * 3 * 5 }, () => rng.uniform(-1, 1)),
    [2, 3, 5],
  );
  const gt = tf.tensor3d(
    Array.from({ length: 2 * 3 * 4 }, (_, i) => [0, 0.25, 0.5, 1][i % 4]!),
    [2, 3, 4],
  );
  const [gBasePred, gTargetPred] = tf.grads((b: tf.Tensor, t: tf.Tensor) =>
    vocoPredLoss(b as tf.Tensor3D, t as tf.Tensor3D, gt),
  )([base, target]);
  assert.ok(
    gBasePred!.dataSync().every((v) => v === 0),
    "bases got a gradient through L_pred",
  );
  assert.ok(
    gTargetPred!.dataSync().some((v) => Math.abs(v) > 1e-6),
    "targets got no gradient through L_pred",
  );
  const gTotal = tf
    .grad((b: tf.Tensor) => vocoLoss(b as tf.Tensor3D, target, gt))(base)
    .dataSync();
  const gReg = tf
    .grad((b: tf.Tensor) => vocoRegLoss(b as tf.Tensor3D))(base)
    .dataSync();
  assert.ok(gReg.some((v) => Math.abs(v) > 1e-6));
  gTotal.forEach((v, i) => {
    assert.ok(Math.abs(v - gReg[i]!) < 1e-6, `element ${i}: ${v} vs ${gReg[i]}`);
  });
  tf.dispose([base, target, gt, gBasePred!, gTargetPred!]);
});

test("one training step on voco-resenc-xs: finite loss, gradients for encoder and head, no tensor leak", () => {
  const method = getMethod("voco").create(VoCoOptionsSchema.parse({}), "cnn");
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [4, 4, 4],
    headDim: 16,
    seed: 1,
  });
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 4, 1], 0, 1, "float32", 2);
  const vars = [...net.weights.values()];
  const step = (seed: number) => {
    const { value, grads } = valueAndGrads(() => method.loss(net, { x }, { training: true, seed }), vars);
    const loss = value.dataSync()[0]!;
    const named = new Map([...net.weights].map(([k, v]) => [k, grads[v.name]]));
    const nonzero = (k: string) =>
      named
        .get(k)
        ?.dataSync()
        .some((g) => g !== 0) === true;
    const ok = { loss, stem: nonzero("encoder.stem.convs.0.conv.weight"), head: nonzero("projector.layer3.0.weight") };
    tf.dispose([value, ...Object.values(grads)]);
    return ok;
  };
  step(0);
  const before = tf.memory().numTensors;
  const r = step(1);
  assert.equal(tf.memory().numTensors, before);
  assert.ok(Number.isFinite(r.loss) && r.loss > 0, `loss ${r.loss}`);
  assert.ok(r.stem && r.head);
  // validation: no gradient, same tensor count afterwards
  const v = tf.tidy(() => method.loss(net, { x }, { training: false, seed: 7 }).dataSync()[0]!);
  assert.ok(Number.isFinite(v));
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  net.dispose();
});

test("one training step on voco-primus-xs (VoCoEvaTrainer's network): finite loss, gradients for patch embedding and head, no leak", () => {
  const method = getMethod("voco").create(VoCoOptionsSchema.parse({}), "vit");
  const net = createNetwork("voco-primus-xs", { patchSize: [8, 8, 8], headDim: 16, seed: 1 });
  const x = tf.randomNormal<tf.Rank.R5>([1, 32, 32, 8, 1], 0, 1, "float32", 2);
  const vars = [...net.weights.values()];
  const step = (seed: number) => {
    const { value, grads } = valueAndGrads(() => method.loss(net, { x }, { training: true, seed }), vars);
    const loss = value.dataSync()[0]!;
    const g = (k: string) => grads[net.weights.get(k)!.name]?.dataSync().some((v) => v !== 0) === true;
    const r = { loss, stem: g("encoder.down_projection.proj.weight"), head: g("projector.layer1.0.weight") };
    tf.dispose([value, ...Object.values(grads)]);
    return r;
  };
  step(0);
  const before = tf.memory().numTensors;
  const r = step(1);
  assert.equal(tf.memory().numTensors, before);
  assert.ok(Number.isFinite(r.loss) && r.loss > 0 && r.stem && r.head, JSON.stringify(r));
  x.dispose();
  net.dispose();
});

test("the crop augmentation runs on every crop in training and never in validation", () => {
  let calls = 0;
  const negate = (_rng: Rng, crop: Float32Array) => {
    calls++;
    return crop.map((v) => -v);
  };
  const shape: [number, number, number, number, number] = [1, 8, 8, 2, 1];
  const data = coordBatch(shape).map((v) => v + 1);
  const c = vocoCrops(new Rng(1), data, shape, [4, 4, 1], 4, negate);
  assert.equal(calls, 20);
  assert.ok(c.crops.every((v) => v < 0));
  const net = createNetwork("voco-resenc-xs", {
    features: [2],
    strides: [1],
    blocks: [1],
    patchSize: [2, 2, 2],
    headDim: 4,
  });
  const method = new VoCo(VoCoOptionsSchema.parse({}), negate);
  const x = tf.tensor5d(data, shape);
  calls = 0;
  tf.tidy(() => method.loss(net, { x }, { training: false, seed: 1 }));
  assert.equal(calls, 0);
  tf.tidy(() => method.loss(net, { x }, { training: true, seed: 1 }));
  assert.equal(calls, 20);
  tf.tidy(() =>
    new VoCo(VoCoOptionsSchema.parse({ augment: false }), negate).loss(net, { x }, { training: true, seed: 1 }),
  );
  assert.equal(calls, 20);
  x.dispose();
  net.dispose();
});

test("configuration errors: a non-embedding network, a patch the grid does not divide; the method maps encoders to the VoCo network", () => {
  const plain = createNetwork("resenc-xs", { features: [2], strides: [1], blocks: [1], patchSize: [4, 4, 4] });
  const x = tf.zeros<tf.Rank.R5>([1, 16, 16, 4, 1]);
  assert.throws(
    () => new VoCo(VoCoOptionsSchema.parse({})).loss(plain, { x }, { training: true, seed: 0 }),
    ConfigError,
  );
  const y = tf.zeros<tf.Rank.R5>([1, 15, 16, 4, 1]);
  const net = createNetwork("voco-resenc-xs", {
    features: [2],
    strides: [1],
    blocks: [1],
    patchSize: [4, 4, 4],
    headDim: 4,
  });
  assert.throws(
    () => new VoCo(VoCoOptionsSchema.parse({})).loss(net, { x: y }, { training: true, seed: 0 }),
    ConfigError,
  );
  const exists = (k: string) => ["voco-resenc-l", "voco-resenc-xs", "resenc-l"].includes(k);
  assert.equal(voco.architectureFor!("resenc-l", exists), "voco-resenc-l");
  assert.equal(voco.architectureFor!("resenc-xs", exists), "voco-resenc-xs");
  assert.equal(voco.architectureFor!("voco-resenc-l", exists), "voco-resenc-l");
  assert.equal(
    voco.architectureFor!("primus-xs", (k) => k === "voco-primus-xs"),
    "voco-primus-xs",
  );
  tf.dispose([x, y]);
  plain.dispose();
  net.dispose();
});

test("the default crop augmentation is augmentIntensity with VOCO_RECIPE, crop by crop after the targets are drawn", () => {
  const shape: [number, number, number, number, number] = [2, 32, 32, 8, 1];
  const data = Float32Array.from({ length: 2 * 32 * 32 * 8 }, (_, i) => Math.sin(i * 0.37) + (i % 7) * 0.1);
  const plain = vocoCrops(new Rng(9), data, shape, [4, 4, 1], 4);
  const aug = vocoCrops(new Rng(9), data, shape, [4, 4, 1], 4, defaultCropAugment());
  assert.deepEqual(aug.targets, plain.targets);
  // replay: the same generator after the target draws, one augmentIntensity call per crop in crop order
  const rng = new Rng(9);
  for (let i = 0; i < 2 * 4 * 3; i++) rng.int(0, 1); // 3 draws per target (x, y, z), 4 targets, 2 images
  const len = 8 * 8 * 8;
  let changed = 0;
  for (let k = 0; k < 2 * 20; k++) {
    const want = augmentIntensity(rng, plain.crops.slice(k * len, (k + 1) * len), [8, 8, 8], 1, VOCO_RECIPE);
    assert.deepEqual(aug.crops.subarray(k * len, (k + 1) * len), want, `crop ${k}`);
    if (want.some((v, j) => v !== plain.crops[k * len + j])) changed++;
  }
  assert.ok(changed > 20, `only ${changed} of 40 crops changed`); // mirrors alone change ~7/8 of them
});

test("loader path (ADR 0040 transform voco-crops): the method asks for its crops; the loss on the loader's crops + truth equals the in-method loss with the step seed = the transform seed; validation crops are not augmented", () => {
  const method = new VoCo(VoCoOptionsSchema.parse({ targetCrops: 3 }));
  const spec = method.data.transform!;
  assert.deepEqual(spec, {
    key: "voco-crops",
    options: { baseCrops: [4, 4, 1], targetCrops: 3, augment: true },
    validation: true,
    validationOptions: { augment: false },
  });
  assert.equal(validationTransform(spec)?.options.augment, false);
  assert.deepEqual(new VoCo(VoCoOptionsSchema.parse({}), (_r, c) => c).data, {}); // a custom hook cannot cross to the workers
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [4, 4, 4],
    headDim: 16,
    seed: 1,
  });
  const shape: [number, number, number, number, number] = [2, 16, 16, 4, 1];
  const plain = tf.tidy(() => tf.randomNormal<tf.Rank.R5>(shape, 0, 1, "float32", 4).dataSync() as Float32Array);
  for (const [s, training] of [
    [spec, true],
    [validationTransform(spec)!, false],
  ] as const) {
    const t = applyBatchTransform(s, { data: plain, shape, anon: undefined }, 31);
    assert.deepEqual(t.shape, [2 * (16 + 3), 4, 4, 4, 1]);
    assert.deepEqual(t.aux!.shape, [2, 3, 16]);
    const viaLoader = tf.tidy(
      () =>
        method
          .loss(
            net,
            { x: tf.tensor5d(t.data, t.shape), aux: tf.tensor(t.aux!.data, t.aux!.shape) },
            { training, seed: 999 },
          )
          .dataSync()[0]!,
    );
    const inMethod = tf.tidy(
      () => method.loss(net, { x: tf.tensor5d(plain, shape) }, { training, seed: 31 }).dataSync()[0]!,
    );
    assert.ok(
      Number.isFinite(viaLoader) && Math.abs(viaLoader - inMethod) <= 1e-5 * Math.abs(inMethod),
      `${training}: ${viaLoader} vs ${inMethod}`,
    );
    // training crops are augmented (differ from the plain cut), validation crops are the plain cut
    const cut = vocoCrops(new Rng(31), plain, shape, [4, 4, 1], 3);
    assert.equal(
      t.data.every((v, i) => v === cut.crops[i]),
      !training,
    );
    assert.deepEqual(Array.from(t.aux!.data), Array.from(cut.truth));
  }
  net.dispose();
});
