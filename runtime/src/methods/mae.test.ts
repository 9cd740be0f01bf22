import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../data/rng.js";
import type { MaskedForwardOptions, MaskedNetwork, Network, NetworkConfig, Vec3 } from "../models/architecture.js";
import { blockMask, CnnMae, maskedMse, MaeOptionsSchema, tokenLossMask, VitMae } from "./mae.js";
import { getMethod } from "./registry.js";

await tf.setBackend("cpu");

const cfg = (family: "cnn" | "vit", patch: Vec3): NetworkConfig => ({
  name: `stand-in-${family}`,
  family,
  inChannels: 1,
  outChannels: 1,
  patchSize: patch,
  seed: 0,
  hyper: {},
  adaptation: {
    archClassName: "X",
    archKwargs: null,
    archKwargsRequiringImport: null,
    keyToEncoder: "e",
    keyToStem: "s",
    keysToInProj: [],
    keyToLpe: null,
  },
});

/** Stand-in CNN: returns its (masked) input unchanged, so the loss is the mean of x² over masked voxels. */
function identityCnn(patch: Vec3): Network {
  return {
    config: cfg("cnn", patch),
    weights: new Map(),
    declarations: [],
    apply: (x) => tf.clone(x),
    encode: (x) => [tf.clone(x)],
    parameterCount: () => 0,
    dispose: () => undefined,
  };
}

/**
 * Stand-in token-dropping wrapper with a deliberately transposed flattening order (token = g1·G0·G2 + g0·G2 + g2,
 * upstream's "(h w d)"): reconstruction is exact on kept tokens and 0 on dropped ones.
 */
function transposedOrderVit(patch: Vec3, tokenPatch: number): MaskedNetwork {
  const grid = patch.map((p) => p / tokenPatch) as unknown as Vec3;
  const tokenIndex = (g0: number, g1: number, g2: number) => (g1 * grid[0] + g0) * grid[2] + g2;
  const net: MaskedNetwork = {
    config: cfg("vit", patch),
    weights: new Map(),
    declarations: [],
    tokenGrid: grid,
    tokenPatch: [tokenPatch, tokenPatch, tokenPatch],
    tokenIndex,
    apply: (x) => tf.clone(x),
    encode: () => tf.zeros([1, 1, 1]),
    parameterCount: () => 0,
    dispose: () => undefined,
    forwardMasked(x: tf.Tensor5D, opts: MaskedForwardOptions) {
      const T = grid[0] * grid[1] * grid[2];
      const B = x.shape[0];
      const rng = new Rng(opts.rngSeed ?? 0);
      const keepIndices = Array.from({ length: B }, () =>
        rng.sample(T, Math.max(1, Math.trunc(T * (opts.keepRatio ?? 0.25)))).sort((a, b) => a - b),
      );
      const visible = keepIndices.map((k) => tokenLossMask(net, k).map((v) => 1 - v));
      const vis = tf.tensor5d(Float32Array.from(visible.flatMap((v) => Array.from(v))), [
        B,
        patch[0],
        patch[1],
        patch[2],
        1,
      ]);
      const reconstruction = tf.mul<tf.Tensor5D>(x, vis);
      vis.dispose();
      return { reconstruction, keepIndices };
    },
  };
  return net;
}

test("block mask: 160³ / 16³ → 1000 blocks, 750 masked, mask constant inside each block", () => {
  const { mask, grid, masked } = blockMask(new Rng(1), [160, 160, 160], 16, 0.75);
  assert.deepEqual(grid, [10, 10, 10]);
  assert.equal(masked.length, 750);
  assert.equal(new Set(masked).size, 750);
  let zeros = 0;
  for (const v of mask) if (v === 0) zeros++;
  assert.equal(zeros, 750 * 16 ** 3);
  // every block is constant
  for (const b of [0, 1, 10, 999, ...masked.slice(0, 5)]) {
    const bx = Math.floor(b / 100),
      by = Math.floor(b / 10) % 10,
      bz = b % 10;
    const v0 = mask[(bx * 16 * 160 + by * 16) * 160 + bz * 16];
    for (const [dx, dy, dz] of [
      [0, 0, 0],
      [15, 15, 15],
      [3, 9, 15],
      [15, 0, 7],
    ] as const) {
      assert.equal(mask[((bx * 16 + dx) * 160 + by * 16 + dy) * 160 + bz * 16 + dz], v0);
    }
    assert.equal(v0, masked.includes(b) ? 0 : 1);
  }
  // 32³ patch: 8 blocks, int(0.75·8) = 6 masked; 7 blocks at ratio 0.75 would be int(5.25) = 5
  assert.equal(blockMask(new Rng(2), [32, 32, 32], 16, 0.75).masked.length, 6);
  assert.equal(blockMask(new Rng(2), [32, 32, 48], 16, 0.75).masked.length, Math.trunc(0.75 * 12));
});

test("CNN MAE loss = mean of (ŷ−x)² over masked voxels only (identity network → mean x² over masked)", () => {
  const patch: Vec3 = [32, 32, 32];
  const B = 2;
  const xs = Float32Array.from({ length: B * 32 ** 3 }, (_, i) => Math.cos(i * 0.013) * 3);
  const x = tf.tensor5d(xs, [B, 32, 32, 32, 1]);
  const m = new CnnMae(MaeOptionsSchema.parse({}));
  const before = tf.memory().numTensors;
  const loss = tf.tidy(() => m.loss(identityCnn(patch), { x }, { training: true, seed: 99 }));
  assert.equal(tf.memory().numTensors, before + 1);
  // expected with the same mask draw
  const rng = new Rng(99);
  let num = 0,
    den = 0;
  for (let b = 0; b < B; b++) {
    const mask = blockMask(rng, patch, 16, 0.75).mask;
    mask.forEach((v, i) => {
      if (v === 0) {
        num += xs[b * 32 ** 3 + i]! ** 2;
        den++;
      }
    });
  }
  assert.equal(den, B * 6 * 16 ** 3);
  assert.ok(Math.abs(loss.dataSync()[0]! - num / den) < 1e-4 * (num / den));
  tf.dispose([loss, x]);
});

test("CNN MAE _ANON: anonymised voxels leave the loss; -1 (outside) counts as 0 (kept in the loss)", () => {
  const x = tf.fill<tf.Rank.R5>([1, 16, 16, 16, 1], 2);
  // a network that always predicts 0 → per-voxel error x² = 4 everywhere; vary x so the loss reveals the mask:
  const xv = Float32Array.from({ length: 16 ** 3 }, (_, i) => (i < 8 * 256 ? 1 : 3));
  const x2 = tf.tensor5d(xv, [1, 16, 16, 16, 1]);
  const zeroNet: Network = { ...identityCnn([16, 16, 16]), apply: (t) => tf.zerosLike(t) };
  const anonV = Float32Array.from({ length: 16 ** 3 }, (_, i) => (i < 8 * 256 ? 1 : -1));
  const anon = tf.tensor5d(anonV, [1, 16, 16, 16, 1]);
  // one block of 16³ at ratio 0.99 → int(0.99) = 0 blocks masked; use block 8 → 8 blocks, 7 masked
  const m = new CnnMae(MaeOptionsSchema.parse({ blockSize: 8, maskRatio: 0.875, anon: true }));
  const loss = m.loss(zeroNet, { x: x2, anon }, { training: true, seed: 3 }).dataSync()[0]!;
  // x<8 half is anonymised → excluded, x≥8 half (anon −1 → 0) counts with error 9
  assert.ok(Math.abs(loss - 9) < 1e-5, `loss ${loss}`);
  const plain = new CnnMae(MaeOptionsSchema.parse({ blockSize: 8, maskRatio: 0.875 }))
    .loss(zeroNet, { x: x2 }, { training: true, seed: 3 })
    .dataSync()[0]!;
  assert.ok(plain > 1 && plain < 9);
  tf.dispose([x, x2, anon]);
});

test("Primus MAE loss mask follows the wrapper's token order (no axis flip): exact reconstruction of kept tokens → loss over dropped only", () => {
  const patch: Vec3 = [16, 8, 8];
  const net = transposedOrderVit(patch, 4);
  const xs = Float32Array.from({ length: 2 * 16 * 8 * 8 }, (_, i) => 1 + (i % 13));
  const x = tf.tensor5d(xs, [2, 16, 8, 8, 1]);
  const m = new VitMae(MaeOptionsSchema.parse({}));
  const loss = m.loss(net, { x }, { training: true, seed: 5 }).dataSync()[0]!;
  // the recon is exact on kept tokens and 0 on dropped ones, so the loss is the mean x² over dropped voxels; a mask
  // built in a different order would count kept voxels (error 0) and lower the loss
  const { keepIndices } = tf.tidy(() => {
    const r = net.forwardMasked(x, { keepRatio: 0.25, rngSeed: 5 }, { training: true });
    return { keepIndices: r.keepIndices };
  });
  assert.equal(keepIndices[0]!.length, (4 * 2 * 2) / 4);
  let num = 0,
    den = 0;
  keepIndices.forEach((k, b) => {
    tokenLossMask(net, k).forEach((v, i) => {
      if (v === 1) {
        num += xs[b * 1024 + i]! ** 2;
        den++;
      }
    });
  });
  assert.equal(den, 2 * 1024 * 0.75);
  assert.ok(Math.abs(loss - num / den) < 1e-4 * (num / den), `${loss} vs ${num / den}`);
  x.dispose();
});

test("maskedMse broadcasts a 1-channel mask and returns 0 for an empty mask", () => {
  const p = tf.ones([1, 2, 2, 2, 2]);
  const t = tf.zeros([1, 2, 2, 2, 2]);
  assert.equal(maskedMse(p, t, tf.ones([1, 2, 2, 2, 1])).dataSync()[0], 1);
  assert.equal(maskedMse(p, t, tf.zeros([1, 2, 2, 2, 1])).dataSync()[0], 0);
});

test("method registry: mae; options validated with zod (unknown key rejected)", () => {
  const e = getMethod("mae");
  assert.deepEqual(e.families, ["cnn", "vit"]);
  assert.throws(() => e.optionsSchema.parse({ maskRatio: 1.5 }));
  assert.throws(() => e.optionsSchema.parse({ nope: 1 }));
  assert.throws(() => getMethod("nope"), /unknown pre-training method/);
});
