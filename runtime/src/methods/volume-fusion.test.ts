import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { runPython } from "../../../test/helpers/python.js";
import { buildBatch } from "../data/batch.js";
import { centreCorner } from "../data/patch.js";
import { NO_AUGMENT } from "../data/augment.js";
import { VOLUME_FUSION_RECIPE } from "../data/intensity.js";
import { Rng } from "../data/rng.js";
import { ConfigError } from "../errors.js";
import { selectBackend } from "../models/backend/select.js";
import { createNetwork } from "../models/registry.js";
import { getMethod } from "./registry.js";
import {
  diceCeLoss,
  drawBoxes,
  fuseBatch,
  sideRange,
  VolumeFusion,
  VolumeFusionOptionsSchema,
  type FusionBox,
} from "./volume-fusion.js";
import { resolveTrainer } from "../training/registry.js";

await selectBackend("cpu"); // native kernels when built

const O = VolumeFusionOptionsSchema.parse({});

function rand(seed: number, n: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.uniform(-1, 2));
}

test("options: nnssl defaults (5 classes, 10..39 boxes, sides 8..int(0.625·dim)); sides clamp for small patches", () => {
  assert.deepEqual(
    [O.numClasses, O.minBoxes, O.maxBoxes, O.minSide, O.maxSideFraction, O.centerCrop, O.intensityAugmentation],
    [5, 10, 39, 8, 0.625, true, true],
  );
  assert.deepEqual(sideRange(160, O), [8, 100]);
  assert.deepEqual(sideRange(32, O), [8, 20]);
  assert.deepEqual(sideRange(13, O), [8, 8]);
  assert.deepEqual(sideRange(8, O), [5, 5]);
  assert.throws(() => VolumeFusionOptionsSchema.parse({ minBoxes: 5, maxBoxes: 4 }), /minBoxes/);
});

test("boxes: counts in [10, 39], sides within [8, int(0.625·dim)], inside the patch, classes 0..4; extremes reached", () => {
  const dims = [160, 96, 32] as const;
  const counts = new Set<number>();
  const sides0 = new Set<number>();
  const classes = new Set<number>();
  for (let s = 0; s < 400; s++) {
    const boxes = drawBoxes(new Rng(s), dims, O);
    assert.ok(boxes.length >= 10 && boxes.length <= 39);
    counts.add(boxes.length);
    for (const b of boxes) {
      classes.add(b.k);
      for (let a = 0; a < 3; a++) {
        const [lo, hi] = sideRange(dims[a]!, O);
        assert.ok(b.size[a]! >= lo && b.size[a]! <= hi, `side ${b.size[a]} axis ${a}`);
        assert.ok(b.start[a]! >= 0 && b.start[a]! + b.size[a]! <= dims[a]!);
      }
      sides0.add(b.size[0]);
    }
  }
  assert.ok(counts.has(10) && counts.has(39) && !counts.has(40));
  assert.ok(sides0.has(8) && sides0.has(100));
  assert.deepEqual([...classes].sort(), [0, 1, 2, 3, 4]);
});

/** Reference painting: for each voxel the class of the LAST box containing it (0 if none). */
function labelAt(boxes: readonly FusionBox[], x: number, y: number, z: number): number {
  let k = 0;
  for (const b of boxes) {
    if (
      x >= b.start[0] &&
      x < b.start[0] + b.size[0] &&
      y >= b.start[1] &&
      y < b.start[1] + b.size[1] &&
      z >= b.start[2] &&
      z < b.start[2] + b.size[2]
    )
      k = b.k;
  }
  return k;
}

test("fusion: X = α·I_f + (1−α)·I_b voxel by voxel for the drawn boxes (α = V[k] of the last box), labels 0..4", () => {
  const [B, X, Y, Z, C] = [2, 16, 14, 12, 2];
  const n = X * Y * Z;
  const data = rand(1, 2 * B * n * C);
  const { x, labels, boxes } = fuseBatch(data, [2 * B, X, Y, Z, C], new Rng(5), O);
  assert.equal(x.length, B * n * C);
  const V = [0, 0.25, 0.5, 0.75, 1];
  let fgOnly = 0;
  let bgOnly = 0;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < X; i++)
      for (let j = 0; j < Y; j++)
        for (let k = 0; k < Z; k++) {
          const v = (i * Y + j) * Z + k;
          const lab = labelAt(boxes[b]!, i, j, k);
          assert.equal(labels[b * n + v], lab);
          const a = V[lab]!;
          if (lab === 4) fgOnly++;
          if (lab === 0) bgOnly++;
          for (let c = 0; c < C; c++) {
            const fg = data[(b * n + v) * C + c]!;
            const bg = data[((B + b) * n + v) * C + c]!;
            assert.ok(Math.abs(x[(b * n + v) * C + c]! - (a * fg + (1 - a) * bg)) < 1e-6);
          }
        }
  assert.ok(fgOnly > 0 && bgOnly > 0, "both pure classes occur");
  assert.throws(() => fuseBatch(data.subarray(0, 3 * n * C), [3, X, Y, Z, C], new Rng(1), O), ConfigError);
});

/** Direct double-precision DC_and_CE (batch_dice false, do_bg true, smooth 1e-5). */
function referenceLoss(logits: Float64Array, labels: readonly number[], B: number, n: number, K: number): number {
  let ce = 0;
  const inter = new Float64Array(B * K);
  const sp = new Float64Array(B * K);
  const sg = new Float64Array(B * K);
  for (let b = 0; b < B; b++)
    for (let v = 0; v < n; v++) {
      const row = Array.from({ length: K }, (_, c) => logits[(b * n + v) * K + c]!);
      const m = Math.max(...row);
      const se = row.reduce((s, l) => s + Math.exp(l - m), 0);
      const y = labels[b * n + v]!;
      ce += -(row[y]! - m - Math.log(se));
      for (let c = 0; c < K; c++) {
        const p = Math.exp(row[c]! - m) / se;
        sp[b * K + c] = sp[b * K + c]! + p;
        if (c === y) {
          inter[b * K + c] = inter[b * K + c]! + p;
          sg[b * K + c] = sg[b * K + c]! + 1;
        }
      }
    }
  let dc = 0;
  for (let i = 0; i < B * K; i++) dc += (2 * inter[i]! + 1e-5) / Math.max(sg[i]! + sp[i]! + 1e-5, 1e-8);
  return ce / (B * n) - dc / (B * K);
}

test("loss = CE + soft Dice: equals a direct double computation and nnU-Net's DC_and_CE_loss (venv nnunetv2); perfect logits → −1", () => {
  const [B, X, Y, Z, K] = [2, 3, 4, 2, 5];
  const n = X * Y * Z;
  const r = new Rng(3);
  const logits = Float64Array.from({ length: B * n * K }, () => r.uniform(-3, 3));
  // class 4 absent from sample 1 (an empty class: Dice term (0 + smooth)/(Σp + smooth))
  const labels = Array.from({ length: B * n }, (_, i) => (i < n ? r.int(0, 4) : r.int(0, 3)));
  const onehot = new Float32Array(B * n * K);
  labels.forEach((l, i) => (onehot[i * K + l] = 1));
  const lt = tf.tensor5d(Float32Array.from(logits), [B, X, Y, Z, K]);
  const tt = tf.tensor5d(onehot, [B, X, Y, Z, K]);
  const ours = diceCeLoss(lt, tt);
  const got = ours.dataSync()[0]!;
  const ref = referenceLoss(logits, labels, B, n, K);
  assert.ok(Math.abs(got - ref) < 1e-5, `ours ${got}, reference ${ref}`);
  // PyTorch: NCDHW logits, (B,1,X,Y,Z) float labels, as nnssl passes them
  const torchLoss = Number(
    runPython(
      `
import json, sys, torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
B, X, Y, Z, K = 2, 3, 4, 2, 5
lg = torch.tensor(json.loads(sys.argv[1]), dtype=torch.float64).reshape(B, X, Y, Z, K).permute(0, 4, 1, 2, 3)
lb = torch.tensor(json.loads(sys.argv[2]), dtype=torch.float64).reshape(B, 1, X, Y, Z)
loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": True, "ddp": False}, {}, weight_ce=1, weight_dice=1,
                      ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
print(repr(loss(lg, lb).item()))
`,
      [JSON.stringify([...logits]), JSON.stringify(labels)],
    ).trim(),
  );
  assert.ok(Math.abs(torchLoss - ref) < 1e-9, `torch ${torchLoss}, reference ${ref}`);
  assert.ok(Math.abs(got - torchLoss) < 1e-5, `ours ${got}, torch ${torchLoss}`);
  const perfect = tf.tidy(() => diceCeLoss(tf.mul<tf.Tensor5D>(tt, 40), tt).dataSync()[0]!);
  assert.ok(Math.abs(perfect + 1) < 1e-4, `perfect prediction loss ${perfect}`);
  tf.dispose([lt, tt, ours]);
});

test("method: registry entry, data needs (2 patches per sample, centre crops, VF recipe), Primus → EvaMAE without decoder, trainers", () => {
  const e = getMethod("volume-fusion");
  const m = e.create(e.optionsSchema.parse({}), "cnn");
  assert.equal(m.outChannels(1), 5);
  assert.deepEqual(m.data, { imagesPerSample: 2, crop: "center", trainIntensity: VOLUME_FUSION_RECIPE });
  assert.deepEqual(e.create(e.optionsSchema.parse({ centerCrop: false, intensityAugmentation: false }), "vit").data, {
    imagesPerSample: 2,
    crop: "random",
  });
  const exists = (k: string) => ["eva-mae-xs", "eva-mae-m"].includes(k);
  assert.equal(e.architectureFor!("primus-xs", exists), "eva-mae-xs");
  assert.equal(e.architectureFor!("eva-mae-m", exists), "eva-mae-m");
  assert.equal(e.architectureFor!("resenc-xs", exists), "resenc-xs");
  assert.deepEqual(e.architectureOptions!("eva-mae-m"), { decoderDepth: 0 });
  assert.deepEqual(e.architectureOptions!("resenc-l"), {});
  const cnn = resolveTrainer("VolumeFusionTrainer_BS8");
  assert.deepEqual(
    [cnn.entry.key, cnn.options.batchSize, cnn.options.augment, cnn.options.gradClip, cnn.options.architecture],
    ["volume-fusion-resenc-l", 8, false, 12, "resenc-l"],
  );
  const variant = resolveTrainer("VolumeFusionTrainer_BS8_lr_1e3_wd_3e5_C3");
  assert.deepEqual(
    [
      variant.options.batchSize,
      variant.options.optimizer.lr,
      variant.options.optimizer.weightDecay,
      variant.options.methodOptions.numClasses,
    ],
    [8, 1e-3, 3e-5, 3],
  );
  assert.equal(resolveTrainer("VolumeFusionEvaTrainer_lr_3e3").options.optimizer.kind, "adamw");
  assert.throws(() => resolveTrainer("BaseMAETrainer_C3"), /methodOptions/);
  assert.throws(() => resolveTrainer("VolumeFusionTrainer_lr"), /unsupported trainer suffix "_lr"/);
  const vit = resolveTrainer("VolumeFusionEvaTrainer");
  assert.deepEqual(
    [vit.entry.key, vit.options.augment, vit.options.gradClip, vit.options.architecture, vit.options.optimizer.kind],
    ["volume-fusion-primus-m", false, 1, "eva-mae-m", "adamw"],
  );
});

test("one training loss on resenc-xs and eva-mae-xs without decoder (5 outputs): finite, gradients reach the weights, no tensor leak", () => {
  const method = new VolumeFusion(O);
  for (const key of ["resenc-xs", "eva-mae-xs"]) {
    const net = createNetwork(key, {
      outChannels: 5,
      patchSize: [16, 16, 16],
      seed: 1,
      ...getMethod("volume-fusion").architectureOptions?.(key),
    });
    const x = tf.tensor5d(rand(2, 4 * 16 ** 3), [4, 16, 16, 16, 1]);
    const before = tf.memory().numTensors;
    const vars = [...net.weights.values()];
    const { value, grads } = tf.variableGrads(() => method.loss(net, { x }, { training: true, seed: 7 }), vars);
    const l = value.dataSync()[0]!;
    assert.ok(Number.isFinite(l) && l > -1 && l < 10, `${key}: loss ${l}`);
    const gsum = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.abs(g)))).dataSync()[0]!);
    assert.ok(gsum > 0 && Number.isFinite(gsum), `${key}: gradient ${gsum}`);
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before, `${key}: tensors leaked`);
    // validation: same fused batch for the same seed
    const v1 = tf.tidy(() => method.loss(net, { x }, { training: false, seed: 9 }).dataSync()[0]!);
    const v2 = tf.tidy(() => method.loss(net, { x }, { training: false, seed: 9 }).dataSync()[0]!);
    assert.equal(v1, v2);
    x.dispose();
    net.dispose();
  }
});

test("loader: centre crops at int((lb+ub)/2) and per-patch intensity augmentation (same seed → same batch)", async () => {
  const shape = [1, 20, 18, 16];
  const vol = Float32Array.from({ length: 20 * 18 * 16 }, (_, i) => i);
  const open = () =>
    Promise.resolve({
      shape,
      readRegion: (start: number[], size: number[]) => {
        const out = new Float32Array(size[1]! * size[2]! * size[3]!);
        let o = 0;
        for (let x = 0; x < size[1]!; x++)
          for (let y = 0; y < size[2]!; y++)
            for (let z = 0; z < size[3]!; z++, o++) {
              const [a, b, c] = [start[1]! + x, start[2]! + y, start[3]! + z];
              out[o] = a < 0 || b < 0 || c < 0 || a >= 20 || b >= 18 || c >= 16 ? 0 : vol[(a * 18 + b) * 16 + c]!;
            }
        return Promise.resolve(out);
      },
    });
  const images = [{ uniqueId: "a", uniqueSubjectId: "s", modality: "T1w", datasetIndex: "1", image: "a" }];
  const F = [8, 8, 8] as const;
  const base = {
    batchSize: 2,
    patchSize: F,
    loaderPatchSize: F,
    augment: NO_AUGMENT,
    withAnon: false,
    crop: "center" as const,
  };
  const plain = await buildBatch(images, open, base, 0, 11);
  // corner = ((20-8)/2, (18-8)/2, (16-8)/2) = (6, 5, 4)
  for (let b = 0; b < 2; b++) assert.equal(plain.data[b * 512], vol[(6 * 18 + 5) * 16 + 4]);
  assert.equal(plain.data[511], vol[(13 * 18 + 12) * 16 + 11]);
  // image smaller than the patch: need = 3, lb = floor(−1.5) = −2, ub = 5 + 1 + 1 − 8 = −1, int(−1.5) = −1 (toward 0)
  assert.deepEqual(centreCorner([5, 8, 20], [8, 8, 8], [8, 8, 8]), [-1, 0, 6]);
  const aug1 = await buildBatch(images, open, { ...base, intensity: VOLUME_FUSION_RECIPE }, 0, 11);
  const aug2 = await buildBatch(images, open, { ...base, intensity: VOLUME_FUSION_RECIPE }, 0, 11);
  assert.deepEqual(aug1.data, aug2.data);
  // over a few seeds some patch is changed (mirror alone fires with p 7/8 per patch)
  let changed = 0;
  for (let s = 0; s < 4; s++) {
    const a = await buildBatch(images, open, { ...base, intensity: VOLUME_FUSION_RECIPE }, 0, s);
    if (a.data.some((v, i) => v !== plain.data[i])) changed++;
  }
  assert.ok(changed >= 3);
  await assert.rejects(
    buildBatch(images, open, { ...base, withAnon: true, intensity: VOLUME_FUSION_RECIPE }, 0, 1),
    /anonymisation mask/,
  );
});
