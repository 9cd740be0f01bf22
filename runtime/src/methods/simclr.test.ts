/**
 * SimCLR (nnssl `simCLRTrainer.py`, `simclr_transform.py`): crop geometry (references inside the patch, partners within
 * ±int(crop/2) of their reference and inside the patch, content = the patch region, images in order), the loss =
 * NT-Xent (τ 0.5) of reference k with its own partner against a double-precision evaluation on the real network's
 * embeddings, no tensor leak per step.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform, validationTransform } from "../data/batch-transforms.js";
import { Rng } from "../data/rng.js";
import { createNetwork } from "../models/registry.js";
import { isEmbeddingNetwork } from "../models/voco.js";
import { valueAndGrads } from "../training/backprop.js";
import { ConfigError } from "../errors.js";
import { copyCrop } from "./crops.js";
import { SimClr, simclr, simclrCropSize, simclrCrops, SimClrOptionsSchema } from "./simclr.js";
import { getMethod } from "./registry.js";

await tf.setBackend("cpu");

test("crop size: upstream 192×192×64 → 64³ by default; given sizes must fit", () => {
  assert.deepEqual(simclrCropSize([192, 192, 64], {}), [64, 64, 64]);
  assert.deepEqual(simclr.networkPatchSize!([64, 64, 16], SimClrOptionsSchema.parse({})), [16, 16, 16]);
  assert.deepEqual(simclrCropSize([64, 64, 16], { cropSize: [32, 32, 16] }), [32, 32, 16]);
  assert.throws(() => simclrCropSize([64, 64, 16], { cropSize: [32, 32, 32] }), ConfigError);
});

test("crops: references inside the patch, partners within ±int(crop·0.5) per axis and inside it, content = the region", () => {
  const shape: [number, number, number, number, number] = [3, 48, 40, 16, 1];
  const n = 3 * 2;
  const data = new Float32Array(3 * 48 * 40 * 16);
  let o = 0;
  for (let b = 0; b < 3; b++)
    for (let x = 0; x < 48; x++)
      for (let y = 0; y < 40; y++) for (let z = 0; z < 16; z++) data[o++] = b * 1e6 + x * 1e4 + y * 100 + z;
  const opts = SimClrOptionsSchema.parse({});
  let minShared = Infinity;
  for (let seed = 0; seed < 30; seed++) {
    const c = simclrCrops(new Rng(seed), data, shape, opts);
    assert.deepEqual(c.cropSize, [16, 16, 16]);
    assert.equal(c.n, n);
    const len = 16 ** 3;
    c.references.forEach((r, i) => {
      const p = c.partners[i]!;
      const b = Math.floor(i / 2);
      [48, 40, 16].forEach((dim, a) => {
        assert.ok(
          r[a]! >= 0 && r[a]! + 16 <= dim && p[a]! >= 0 && p[a]! + 16 <= dim,
          `axis ${a}: ref ${r[a]}, partner ${p[a]}`,
        );
        assert.ok(Math.abs(p[a]! - r[a]!) <= 8);
        minShared = Math.min(minShared, 16 - Math.abs(p[a]! - r[a]!));
      });
      assert.equal(c.crops[i * len], b * 1e6 + r[0] * 1e4 + r[1] * 100 + r[2]);
      assert.equal(
        c.crops[(n + i) * len + ((3 * 16 + 5) * 16 + 15)],
        b * 1e6 + (p[0] + 3) * 1e4 + (p[1] + 5) * 100 + p[2] + 15,
      );
    });
  }
  assert.ok(minShared >= 8, `a partner shares only ${minShared} voxels of an axis`);
});

test("the loss is NT-Xent (τ 0.5) of each reference with its own partner, on the network's embeddings (double-precision check)", () => {
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [8, 8, 8],
    headDim: 12,
    seed: 4,
  });
  assert.ok(isEmbeddingNetwork(net));
  const shape: [number, number, number, number, number] = [2, 24, 20, 8, 1];
  const x = tf.randomNormal<tf.Rank.R5>(shape, 0, 1, "float32", 9);
  // crops without augmentation, so they can be re-cut by hand below
  const method = new SimClr(SimClrOptionsSchema.parse({ augment: false }));
  const got = tf.tidy(() => method.loss(net, { x }, { training: true, seed: 21 }).dataSync()[0]!);
  // the same crops, embedded one by one
  const c = simclrCrops(new Rng(21), x.dataSync() as Float32Array, shape, SimClrOptionsSchema.parse({}));
  const len = 8 ** 3;
  const rows: number[][] = [];
  [...c.references, ...c.partners].forEach((off, k) => {
    const one = new Float32Array(len);
    copyCrop(x.dataSync() as Float32Array, [24, 20, 8], 1, Math.floor((k % c.n) / 2), off, [8, 8, 8], one, 0);
    assert.deepEqual(one, c.crops.subarray(k * len, (k + 1) * len));
    rows.push(Array.from(tf.tidy(() => net.embed(tf.tensor5d(one, [1, 8, 8, 8, 1]), { training: true }).dataSync())));
  });
  const z = rows.map((r) => {
    const norm = Math.sqrt(r.reduce((s, v) => s + v * v, 0));
    return r.map((v) => v / norm);
  });
  const n = c.n;
  let total = 0;
  for (let i = 0; i < 2 * n; i++) {
    const s = z.map((zk) => zk.reduce((acc, v, d) => acc + v * z[i]![d]!, 0) / 0.5);
    let den = 0;
    for (let k = 0; k < 2 * n; k++) if (k !== i) den += Math.exp(s[k]!);
    total += -Math.log(Math.exp(s[(i + n) % (2 * n)]!) / den);
  }
  const want = total / (2 * n);
  assert.ok(Math.abs(got - want) < 1e-4 * Math.max(1, want), `${got} vs ${want}`);
  x.dispose();
  net.dispose();
});

test("one training step on voco-resenc-xs: gradients reach the stem and the head, no tensor leak", () => {
  const method = getMethod("simclr").create(SimClrOptionsSchema.parse({}), "cnn");
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [4, 4, 4],
    headDim: 16,
    seed: 1,
  });
  const x = tf.randomNormal<tf.Rank.R5>([2, 12, 12, 4, 1], 0, 1, "float32", 2);
  const vars = [...net.weights.values()];
  const step = (seed: number) => {
    const { value, grads } = valueAndGrads(() => method.loss(net, { x }, { training: true, seed }), vars);
    const loss = value.dataSync()[0]!;
    const g = (k: string) => grads[net.weights.get(k)!.name]?.dataSync().some((v) => v !== 0) === true;
    const r = { loss, stem: g("encoder.stem.convs.0.conv.weight"), head: g("projector.layer1.0.weight") };
    tf.dispose([value, ...Object.values(grads)]);
    return r;
  };
  step(0);
  const before = tf.memory().numTensors;
  const r = step(1);
  assert.equal(tf.memory().numTensors, before);
  assert.ok(Number.isFinite(r.loss) && r.loss > 0);
  assert.ok(r.stem && r.head);
  x.dispose();
  net.dispose();
});

test("loader path (ADR 0040 transform simclr-crops): the loss on the loader's crops equals the in-method loss with the step seed = the transform seed; validation crops are not augmented", () => {
  const method = new SimClr(SimClrOptionsSchema.parse({ cropSize: [8, 8, 8] }));
  const spec = method.data.transform!;
  assert.deepEqual(spec, {
    key: "simclr-crops",
    options: { cropSize: [8, 8, 8], cropsPerImage: 2, minOverlap: 0.5, augment: true },
    validation: true,
    validationOptions: { augment: false },
  });
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [8, 8, 8],
    headDim: 16,
    seed: 1,
  });
  const shape: [number, number, number, number, number] = [2, 16, 16, 8, 1];
  const plain = tf.tidy(() => tf.randomNormal<tf.Rank.R5>(shape, 0, 1, "float32", 4).dataSync() as Float32Array);
  for (const [s, training] of [
    [spec, true],
    [validationTransform(spec)!, false],
  ] as const) {
    const t = applyBatchTransform(s, { data: plain, shape, anon: undefined }, 17);
    assert.deepEqual(t.shape, [8, 8, 8, 8, 1]);
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
      () => method.loss(net, { x: tf.tensor5d(plain, shape) }, { training, seed: 17 }).dataSync()[0]!,
    );
    assert.ok(
      Number.isFinite(viaLoader) && Math.abs(viaLoader - inMethod) <= 1e-5 * Math.abs(inMethod),
      `${training}: ${viaLoader} vs ${inMethod}`,
    );
    const cut = simclrCrops(new Rng(17), plain, shape, { cropSize: [8, 8, 8], cropsPerImage: 2, minOverlap: 0.5 });
    assert.equal(
      t.data.every((v, i) => v === cut.crops[i]),
      !training,
    );
    assert.deepEqual(Array.from(t.aux!.data), [...cut.references, ...cut.partners].flat());
  }
  net.dispose();
});
