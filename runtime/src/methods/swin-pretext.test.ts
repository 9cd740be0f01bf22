/**
 * Known answers for the SwinUNETR pre-text method (nnssl `src/nnssl/ssl_data/dataloading/swin_unetr_transform.py`):
 * rot90 is numpy's `rot90(x, k, axes=(2, 3))` on (C, X, Y, Z) for k = 0..3; cut-out boxes within their ranges, volumes
 * reaching the target, changes only inside the boxes, noise in [0, 1], copies from the right sample state; the loss
 * equals a direct computation (plain JS) on a tiny network; trainer resolution; no tensor leak across steps. Run time
 * ~2 s (one Python start for numpy).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { runPython } from "../../../test/helpers/python.js";
import { applyBatchTransform, validationTransform } from "../data/batch-transforms.js";
import { Rng } from "../data/rng.js";
import {
  boxLimits,
  innerCutoutRand,
  MAX_DROP,
  patchRandDrop,
  rot90YZ,
  swinPretextViews,
  type Box,
  type SampleShape,
} from "../data/swin-pretext.js";
import { selectBackend } from "../models/backend/select.js";
import { createNetwork } from "../models/registry.js";
import { isPretextNetwork } from "../models/swin-pretext.js";
import { valueAndGrads } from "../training/backprop.js";
import { resolveTrainer } from "../training/registry.js";
import { getMethod } from "./registry.js";
import { SwinPretext, SwinPretextOptionsSchema } from "./swin-pretext.js";
import { ConfigError } from "../errors.js";

await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)

test("rot90 in the (Y, Z) plane equals numpy rot90(x, k, axes=(2, 3)) on (C, X, Y, Z) for k = 0..3", () => {
  const shape: SampleShape = [2, 4, 4, 3];
  const n = 2 * 4 * 4 * 3;
  const a = Float32Array.from({ length: n }, (_, i) => i);
  const ref = JSON.parse(
    runPython(`
import json, numpy as np
a = np.arange(${n}).reshape(2, 4, 4, 3)            # ours: (X, Y, Z, C)
up = a.transpose(3, 0, 1, 2)                        # upstream: (C, X, Y, Z)
print(json.dumps([np.rot90(up, k, (2, 3)).transpose(1, 2, 3, 0).flatten().tolist() for k in range(4)]))
`),
  ) as number[][];
  for (let k = 0; k < 4; k++) {
    const r = rot90YZ(a, shape, k);
    assert.deepEqual(Array.from(r), ref[k], `k = ${k}`);
    // a permutation (every value once) that keeps each value in its X slice and channel
    assert.deepEqual(
      Array.from(r).sort((p, q) => p - q),
      Array.from(a),
    );
    r.forEach((v, i) => {
      assert.equal(Math.floor(v / 48), Math.floor(i / 48));
      assert.equal(v % 3, i % 3);
    });
  }
  assert.deepEqual(Array.from(rot90YZ(rot90YZ(a, shape, 1), shape, 1)), Array.from(rot90YZ(a, shape, 2)));
  assert.throws(() => rot90YZ(new Float32Array(24), [2, 3, 4, 1], 1), ConfigError);
});

const inside = (b: Box, x: number, y: number, z: number) =>
  x >= b.start[0] && x < b.end[0] && y >= b.start[1] && y < b.end[1] && z >= b.start[2] && z < b.end[2];
const vol = (b: Box) => (b.end[0] - b.start[0]) * (b.end[1] - b.start[1]) * (b.end[2] - b.start[2]);

function checkBoxes(boxes: Box[], target: number, dims: readonly number[]): void {
  assert.ok(target >= 0 && target < MAX_DROP * dims[0]! * dims[1]! * dims[2]!);
  for (const b of boxes) {
    for (let a = 0; a < 3; a++) {
      const [tol, max] = boxLimits(dims[a]!);
      const ext = b.end[a]! - b.start[a]!;
      assert.ok(b.start[a]! >= 0 && b.start[a]! <= dims[a]! - tol, `start ${b.start[a]} on axis ${a}`);
      // extent in [tol, max], or shorter only where the box was clipped at the border
      assert.ok(ext <= max && (ext >= tol || b.end[a] === dims[a]), `extent ${ext} on axis ${a}`);
    }
  }
  const total = boxes.reduce((s, b) => s + vol(b), 0);
  assert.ok(total >= target, `accumulated ${total} < target ${target}`);
  if (boxes.length > 0) assert.ok(total - vol(boxes.at(-1)!) < target, "drew a box after reaching the target");
}

test("cut-out: box ranges (8..40 at 160), volume reaches U(0, 0.3) of the patch, noise in [0, 1] only inside the boxes", () => {
  assert.deepEqual(boxLimits(160), [8, 40]);
  assert.deepEqual(boxLimits(32), [1, 8]);
  assert.deepEqual(boxLimits(8), [1, 2]);
  const dims = [48, 40, 40] as const;
  const shape: SampleShape = [...dims, 2];
  let draws = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const img = new Float32Array(48 * 40 * 40 * 2).fill(-5);
    const { target, boxes } = patchRandDrop(new Rng(seed), img, shape);
    checkBoxes(boxes, target, dims);
    draws += boxes.length;
    let lo = Infinity,
      hi = -Infinity;
    for (let x = 0; x < 48; x++)
      for (let y = 0; y < 40; y++)
        for (let z = 0; z < 40; z++)
          for (let c = 0; c < 2; c++) {
            const v = img[((x * 40 + y) * 40 + z) * 2 + c]!;
            if (boxes.some((b) => inside(b, x, y, z))) {
              assert.ok(v >= 0 && v <= 1, `noise ${v} outside [0, 1]`);
            } else assert.equal(v, -5);
            if (boxes.length > 0 && inside(boxes.at(-1)!, x, y, z)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
          }
    // the last box is not overwritten: its noise spans exactly [0, 1] (min-max over the box and channels)
    if (boxes.length > 0) assert.deepEqual([lo, hi], [0, 1]);
  }
  assert.ok(draws > 6, "too few boxes drawn to mean anything");
});

test("cut-out stage 2: regions copied from the other sample as it is at that moment (cut for j < i, only rotated for j > i)", () => {
  const dims = [20, 20, 20] as const;
  const shape: SampleShape = [...dims, 1];
  const n = 8000;
  const B = 4;
  let copies = 0;
  for (let seed = 0; seed < 8; seed++) {
    const orig = Float32Array.from({ length: B * n }, (_, i) => 10 + i); // distinct values, all > 1 (noise is in [0, 1])
    const batch = orig.slice();
    const dec = innerCutoutRand(new Rng(seed), batch, B, shape);
    dec.forEach((d, i) => {
      checkBoxes(d.noiseBoxes, d.noiseTarget, dims);
      if (d.copyFrom === i) assert.deepEqual([d.copyBoxes.length, d.copyTarget], [0, 0]);
      else checkBoxes(d.copyBoxes, d.copyTarget, dims);
      const j = d.copyFrom;
      const src = j < i ? batch : orig; // j < i was already cut (final); j > i untouched so far
      for (let x = 0; x < 20; x++)
        for (let y = 0; y < 20; y++)
          for (let z = 0; z < 20; z++) {
            const o = (x * 20 + y) * 20 + z;
            const v = batch[i * n + o]!;
            if (d.copyBoxes.some((b) => inside(b, x, y, z))) {
              copies++;
              assert.equal(v, src[j * n + o], `sample ${i} voxel ${o}: not copied from sample ${j}`);
            } else if (d.noiseBoxes.some((b) => inside(b, x, y, z))) assert.ok(v >= 0 && v <= 1);
            else assert.equal(v, orig[i * n + o]);
          }
    });
  }
  assert.ok(copies > 0, "no copy stage ran in 8 seeds");
});

test("the two views: rotation labels uniform-ish over 0..3, target = rotated original, input = target outside the boxes", () => {
  const shape: SampleShape = [4, 8, 8, 1];
  const B = 8;
  const x = Float32Array.from({ length: B * 256 }, (_, i) => 2 + (i % 97));
  const [v1, v2] = swinPretextViews(new Rng(5), x, B, shape);
  const labels = [...v1.rotations, ...v2.rotations];
  assert.ok(new Set(labels).size >= 3, labels.join(","));
  for (const v of [v1, v2]) {
    for (let i = 0; i < B; i++) {
      assert.deepEqual(
        Array.from(v.rotated.subarray(i * 256, (i + 1) * 256)),
        Array.from(rot90YZ(x.subarray(i * 256, (i + 1) * 256), shape, v.rotations[i]!)),
      );
      const d = v.cutouts[i]!;
      for (let o = 0; o < 256; o++) {
        const [px, py, pz] = [Math.floor(o / 64), Math.floor(o / 8) % 8, o % 8];
        const boxed = [...d.noiseBoxes, ...d.copyBoxes].some((b) => inside(b, px, py, pz));
        if (!boxed) assert.equal(v.cutout[i * 256 + o], v.rotated[i * 256 + o]);
      }
      if (d.noiseBoxes.length > 0)
        assert.notDeepEqual(v.cutout.subarray(i * 256, (i + 1) * 256), v.rotated.subarray(i * 256, (i + 1) * 256));
    }
  }
  assert.throws(
    () => swinPretextViews(new Rng(1), new Float32Array(4 * 8 * 6), 1, [4, 8, 6, 1]),
    (e: unknown) => e instanceof ConfigError && e.message.includes("Y = Z"),
  );
});

/** Direct computation in plain JS (float64) of the loss from the network outputs and the views. */
function directLoss(
  rot: Float32Array,
  con: Float32Array,
  rec: Float32Array,
  target: Float32Array,
  labels: number[],
  B2: number,
  tau: number,
): { rec: number; con: number; rot: number } {
  let l1 = 0;
  for (let i = 0; i < rec.length; i++) l1 += Math.abs(rec[i]! - target[i]!);
  const D = con.length / B2;
  const zs = Array.from({ length: B2 }, (_, i) => {
    const r = Array.from(con.subarray(i * D, (i + 1) * D));
    const nrm = Math.sqrt(r.reduce((s, v) => s + v * v, 0));
    return r.map((v) => v / nrm);
  });
  const sim = (i: number, k: number) => zs[i]!.reduce((s, v, q) => s + v * zs[k]![q]!, 0) / tau;
  let nt = 0;
  for (let i = 0; i < B2; i++) {
    let den = 0;
    for (let k = 0; k < B2; k++) if (k !== i) den += Math.exp(sim(i, k));
    nt += -Math.log(Math.exp(sim(i, (i + B2 / 2) % B2)) / den);
  }
  let ce = 0;
  for (let i = 0; i < B2; i++) {
    const row = Array.from(rot.subarray(i * 4, i * 4 + 4));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    ce += lse - row[labels[i]!]!;
  }
  return { rec: l1 / rec.length, con: nt / B2, rot: ce / B2 };
}

test("loss = L1(recon, rotated un-cut) + NT-Xent(τ 0.5) + CE(rotation) equals a direct computation; weights apply; no tensor leak per step", () => {
  const net = createNetwork("swin-pretext-resenc-xs", {
    features: [2, 4],
    strides: [1, 2],
    blocks: [1, 1],
    patchSize: [8, 8, 8],
    seed: 2,
  });
  assert.ok(isPretextNetwork(net));
  const method = new SwinPretext(SwinPretextOptionsSchema.parse({}));
  const B = 3;
  const x = tf.randomUniform<tf.Rank.R5>([B, 8, 8, 8, 1], 0, 1, "float32", 4);
  const seed = 77;
  const [v1, v2] = method.views(x, seed);
  const n = 512;
  const input = new Float32Array(2 * B * n);
  input.set(v1.cutout);
  input.set(v2.cutout, B * n);
  const target = new Float32Array(2 * B * n);
  target.set(v1.rotated);
  target.set(v2.rotated, B * n);
  const labels = [...v1.rotations, ...v2.rotations];
  const inT = tf.tensor5d(input, [2 * B, 8, 8, 8, 1]);
  const o = net.forwardPretext(inT, { training: true, seed });
  const want = directLoss(
    o.rotation.dataSync() as Float32Array,
    o.contrast.dataSync() as Float32Array,
    o.reconstruction.dataSync() as Float32Array,
    target,
    labels,
    2 * B,
    0.5,
  );
  tf.dispose([inT, o.rotation, o.contrast, o.reconstruction]);
  const close = (a: number, b: number, what: string) => {
    assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  };
  const t = method.terms(net, { x }, { training: true, seed });
  close(t.rec.dataSync()[0]!, want.rec, "L1");
  close(t.contrast.dataSync()[0]!, want.con, "NT-Xent");
  close(t.rot.dataSync()[0]!, want.rot, "CE");
  close(t.total.dataSync()[0]!, want.rec + want.con + want.rot, "total");
  tf.dispose([t.rec, t.contrast, t.rot, t.total]);
  assert.ok(want.rec > 0 && want.con > 0 && want.rot > 0);
  const weighted = new SwinPretext(SwinPretextOptionsSchema.parse({ recWeight: 2, contrastWeight: 0, rotWeight: 0.5 }));
  const w = tf.tidy(() => weighted.loss(net, { x }, { training: true, seed }).dataSync()[0]!);
  close(w, 2 * want.rec + 0.5 * want.rot, "weighted");

  // training steps through the loop's gradient: every parameter gets a gradient, the tensor count stays constant
  const vars = [...net.weights.values()];
  const counts: number[] = [];
  for (let s = 0; s < 3; s++) {
    const { value, grads } = valueAndGrads(() => method.loss(net, { x }, { training: true, seed: s }), vars);
    assert.equal(Object.keys(grads).length, vars.length);
    assert.ok(Number.isFinite(value.dataSync()[0]));
    tf.dispose([value, ...Object.values(grads)]);
    counts.push(tf.memory().numTensors);
  }
  assert.equal(new Set(counts).size, 1, counts.join(","));
  x.dispose();
  net.dispose();
});

test("trainers SwinUNETRTrainer_BS8 (resenc-l, SGD, clip 12) and SwinUNETREvaTrainer_BS8 (primus-m, AdamW, clip 1), no spatial augmentation; presets get the heads", () => {
  const r = resolveTrainer("SwinUNETRTrainer_BS8");
  assert.equal(r.entry.key, "swin-pretext-resenc-l");
  assert.equal(r.options.method, "swin-pretext");
  assert.equal(r.options.batchSize, 8);
  assert.equal(r.options.gradClip, 12);
  assert.equal(r.options.augment, false);
  assert.deepEqual(r.options.optimizer, { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.99, weightDecay: 3e-5 });
  assert.deepEqual(r.options.patchSize, [160, 160, 160]);
  assert.deepEqual(r.options.methodOptions, { recWeight: 1, contrastWeight: 1, rotWeight: 1, temperature: 0.5 });
  assert.equal(resolveTrainer("SwinUNETRTrainer_BS2").options.batchSize, 2);
  const eva = resolveTrainer("SwinUNETREvaTrainer_BS8");
  assert.equal(eva.entry.key, "swin-pretext-primus-m");
  assert.equal(eva.entry.family, "vit");
  assert.deepEqual(
    [
      eva.options.method,
      eva.options.architecture,
      eva.options.batchSize,
      eva.options.gradClip,
      eva.options.augment,
      eva.options.optimizer.kind,
    ],
    ["swin-pretext", "primus-m", 8, 1, false, "adamw"],
  );
  const m = getMethod("swin-pretext");
  const known = new Set([
    "resenc-l",
    "resenc-xs",
    "primus-xs",
    "swin-pretext-resenc-l",
    "swin-pretext-resenc-xs",
    "swin-pretext-primus-xs",
  ]);
  assert.ok(m.architectureFor !== undefined);
  const archFor = (key: string, exists: (k: string) => boolean) => m.architectureFor?.(key, exists);
  assert.equal(
    archFor("resenc-l", (k) => known.has(k)),
    "swin-pretext-resenc-l",
  );
  assert.equal(
    archFor("resenc-xs", (k) => known.has(k)),
    "swin-pretext-resenc-xs",
  );
  assert.equal(
    archFor("swin-pretext-resenc-xs", (k) => known.has(k)),
    "swin-pretext-resenc-xs",
  );
  assert.equal(
    archFor("primus-xs", (k) => known.has(k)),
    "swin-pretext-primus-xs",
  );
  assert.throws(
    () => resolveTrainer("SwinUNETRTrainer", { methodOptions: { temperature: 0 } }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("methodOptions.temperature"),
  );
  // a network without the heads is a ConfigError naming the architecture
  const plain = createNetwork("resenc-xs", { features: [2, 4], strides: [1, 2], blocks: [1, 1], patchSize: [8, 8, 8] });
  const x = tf.zeros<tf.Rank.R5>([1, 8, 8, 8, 1]);
  assert.throws(
    () => new SwinPretext(SwinPretextOptionsSchema.parse({})).loss(plain, { x }, { training: true, seed: 0 }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("pre-text heads"),
  );
  x.dispose();
  plain.dispose();
});

test("loader path (ADR 0040 transform swin-pretext-views, training and validation): inputs, targets and labels from the loader give the in-method loss with the step seed = the transform seed; no tensor leak", () => {
  const net = createNetwork("swin-pretext-resenc-xs", {
    features: [2, 4],
    strides: [1, 2],
    blocks: [1, 1],
    patchSize: [8, 8, 8],
    seed: 2,
  });
  const method = new SwinPretext(SwinPretextOptionsSchema.parse({}));
  const spec = method.data.transform!;
  assert.deepEqual(validationTransform(spec), spec); // validation batches get the same views (as upstream)
  const shape: [number, number, number, number, number] = [3, 8, 8, 8, 1];
  const plain = tf.tidy(() => tf.randomUniform<tf.Rank.R5>(shape, 0, 1, "float32", 4).dataSync() as Float32Array);
  const t = applyBatchTransform(spec, { data: plain, shape, anon: undefined }, 55);
  assert.deepEqual(t.shape, [6, 8, 8, 8, 1]);
  const [v1, v2] = swinPretextViews(new Rng(55), plain, 3, [8, 8, 8, 1]);
  assert.deepEqual(Array.from(t.aux!.data), [...v1.rotations, ...v2.rotations]);
  assert.deepEqual(Array.from(t.target!.subarray(0, 3 * 512)), Array.from(v1.rotated));
  assert.deepEqual(Array.from(t.data.subarray(3 * 512)), Array.from(v2.cutout));
  const before = tf.memory().numTensors;
  const viaLoader = tf.tidy(
    () =>
      method
        .loss(
          net,
          {
            x: tf.tensor5d(t.data, t.shape),
            target: tf.tensor5d(t.target!, t.shape),
            aux: tf.tensor(t.aux!.data, t.aux!.shape),
          },
          { training: false, seed: 999 },
        )
        .dataSync()[0]!,
  );
  const inMethod = tf.tidy(
    () => method.loss(net, { x: tf.tensor5d(plain, shape) }, { training: false, seed: 55 }).dataSync()[0]!,
  );
  assert.equal(tf.memory().numTensors, before);
  assert.ok(
    Number.isFinite(viaLoader) && Math.abs(viaLoader - inMethod) <= 1e-5 * Math.abs(inMethod),
    `${viaLoader} vs ${inMethod}`,
  );
  net.dispose();
});
