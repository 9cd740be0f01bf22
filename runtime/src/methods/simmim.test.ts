import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../data/rng.js";
import type { NetworkConfig, TokenMaskNetwork, Vec3 } from "../models/architecture.js";
import { createNetwork } from "../models/registry.js";
import { valueAndGrads } from "../training/backprop.js";
import { resolveTrainer } from "../training/registry.js";
import { ConfigError } from "../errors.js";
import { getMethod } from "./registry.js";
import { SimMim, simmim, SimMimOptionsSchema, simmimMask } from "./simmim.js";

await tf.setBackend("cpu");

const cfg = (patch: Vec3): NetworkConfig => ({
  name: "stand-in-simmim",
  family: "vit",
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

/**
 * Stand-in mask-token network with a deliberately transposed token order (token = g1·G0·G2 + g0·G2 + g2): it
 * reconstructs visible tokens exactly and outputs 0 for masked ones. A loss mask that disagreed with the token
 * mask would count visible voxels (error 0) and lower the loss.
 */
function standIn(patch: Vec3, tp: number): TokenMaskNetwork {
  const grid = patch.map((p) => p / tp) as unknown as Vec3;
  const tokenIndex = (g0: number, g1: number, g2: number): number => (g1 * grid[0] + g0) * grid[2] + g2;
  return {
    config: cfg(patch),
    weights: new Map(),
    declarations: [],
    tokenGrid: grid,
    tokenPatch: [tp, tp, tp],
    tokenIndex,
    apply: (x) => tf.clone(x),
    encode: () => tf.zeros([1, 1, 1]),
    parameterCount: () => 0,
    dispose: () => undefined,
    forwardTokenMask(x, mask) {
      const [B, X, Y, Z] = x.shape;
      const m = mask.dataSync();
      const T = grid[0] * grid[1] * grid[2];
      const dense = new Float32Array(B * X * Y * Z);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < X; i++)
          for (let j = 0; j < Y; j++)
            for (let k = 0; k < Z; k++)
              dense[((b * X + i) * Y + j) * Z + k] =
                m[b * T + tokenIndex(Math.floor(i / tp), Math.floor(j / tp), Math.floor(k / tp))]!;
      return tf.mul(x, tf.tensor5d(dense, [B, X, Y, Z, 1]));
    },
  };
}

test("SimMIM mask: 160³ / 8³ → 8000 tokens, exactly int(0.75·8000) = 6000 masked, dense mask constant per token block", () => {
  const net = {
    tokenGrid: [20, 20, 20] as Vec3,
    tokenPatch: [8, 8, 8] as Vec3,
    tokenIndex: (a: number, b: number, c: number) => (a * 20 + b) * 20 + c,
  };
  const { dense, tokens, masked } = simmimMask(new Rng(4), net, 0.75);
  assert.equal(masked, 6000);
  assert.equal(
    tokens.reduce((s, v) => s + (v === 0 ? 1 : 0), 0),
    6000,
  );
  assert.equal(
    dense.reduce((s, v) => s + (v === 0 ? 1 : 0), 0),
    6000 * 512,
  );
  for (const t of [0, 1, 399, 4321, 7999]) {
    const g = [Math.floor(t / 400), Math.floor(t / 20) % 20, t % 20];
    for (const [a, b, c] of [
      [0, 0, 0],
      [7, 7, 7],
      [3, 0, 6],
    ] as const)
      assert.equal(dense[((g[0]! * 8 + a) * 160 + g[1]! * 8 + b) * 160 + g[2]! * 8 + c], tokens[t]);
  }
  // 32³ (primus-xs): 64 tokens → 48 masked; masks differ between samples of one generator
  const xs = {
    tokenGrid: [4, 4, 4] as Vec3,
    tokenPatch: [8, 8, 8] as Vec3,
    tokenIndex: (a: number, b: number, c: number) => (a * 4 + b) * 4 + c,
  };
  const rng = new Rng(1);
  const m1 = simmimMask(rng, xs, 0.75);
  const m2 = simmimMask(rng, xs, 0.75);
  assert.equal(m1.masked, 48);
  assert.notDeepEqual(m1.tokens, m2.tokens);
});

test("SimMIM loss = mean (ŷ−x)² over voxels of masked tokens (direct computation; token order of the network respected)", () => {
  const patch: Vec3 = [16, 8, 24];
  const net = standIn(patch, 4);
  const B = 2;
  const n = 16 * 8 * 24;
  const xs = Float32Array.from({ length: B * n }, (_, i) => 1 + (i % 17) * 0.3);
  const x = tf.tensor5d(xs, [B, 16, 8, 24, 1]);
  const m = new SimMim(SimMimOptionsSchema.parse({}));
  const before = tf.memory().numTensors;
  const loss = tf.tidy(() => m.loss(net, { x }, { training: true, seed: 21 }));
  assert.equal(tf.memory().numTensors, before + 1);
  const rng = new Rng(21);
  let num = 0;
  let den = 0;
  for (let b = 0; b < B; b++) {
    const { dense, masked } = simmimMask(rng, net, 0.75);
    assert.equal(masked, Math.trunc(0.75 * 4 * 2 * 6));
    dense.forEach((v, i) => {
      if (v === 0) {
        num += xs[b * n + i]! ** 2;
        den++;
      }
    });
  }
  const got = loss.dataSync()[0]!;
  assert.ok(Math.abs(got - num / den) < 1e-5 * (num / den), `${got} vs ${num / den}`);
  // _ANON: anonymised voxels leave the loss (all anonymised → empty mask → 0)
  const anon = tf.ones<tf.Rank.R5>([B, 16, 8, 24, 1]);
  const ma = new SimMim(SimMimOptionsSchema.parse({ anon: true }));
  assert.equal(ma.needsAnon, true);
  assert.equal(
    tf.tidy(() => ma.loss(net, { x, anon }, { training: true, seed: 21 }).dataSync()[0]),
    0,
  );
  tf.dispose([x, loss, anon]);
});

test("SimMIM on eva-simmim-xs: finite loss, no tensor leak across a gradient step; a non-wrapper network is a ConfigError", () => {
  const net = createNetwork("eva-simmim-xs", { embedDim: 24, heads: 1, depth: 1, patchSize: [16, 16, 16], seed: 1 });
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 3);
  const m = new SimMim(SimMimOptionsSchema.parse({}));
  const before = tf.memory().numTensors;
  const { value, grads } = valueAndGrads(
    () => m.loss(net, { x }, { training: true, seed: 5 }),
    [...net.weights.values()],
  );
  assert.ok(Number.isFinite(value.dataSync()[0]));
  assert.ok(grads[net.weights.get("mask_token")!.name] !== undefined);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  const plain = createNetwork("primus-xs", { embedDim: 24, heads: 1, depth: 1, patchSize: [16, 16, 16] });
  assert.throws(() => m.loss(plain, { x }, { training: true, seed: 1 }), ConfigError);
  tf.dispose(x);
  net.dispose();
  plain.dispose();
});

test("SimMIM registry: vit only, primus-* → eva-simmim-*; trainer SimMIMEvaTrainer_BS8 = simmim-primus-m with the ViT recipe", () => {
  const e = getMethod("simmim");
  assert.deepEqual(e.families, ["vit"]);
  assert.equal(e, simmim);
  assert.equal(
    simmim.architectureFor("primus-xs", () => true),
    "eva-simmim-xs",
  );
  assert.equal(
    simmim.architectureFor("eva-simmim-m", () => true),
    "eva-simmim-m",
  );
  assert.throws(() => e.optionsSchema.parse({ blockSize: 16 }));
  const t = resolveTrainer("SimMIMEvaTrainer_BS8");
  assert.equal(t.entry.key, "simmim-primus-m");
  assert.equal(t.options.batchSize, 8);
  assert.equal(t.options.architecture, "eva-simmim-m");
  assert.equal(t.options.optimizer.kind, "adamw");
  assert.equal(t.options.optimizer.lr, 3e-4);
  assert.equal(t.options.gradClip, 1);
  assert.deepEqual(t.options.schedule, { kind: "warmup-poly", warmupEpochs: 50, exponent: 0.9 });
  assert.equal(t.options.augment, true);
  assert.equal(resolveTrainer("SimMIMEvaTrainer_ANON").options.methodOptions.anon, true);
});
