import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { modelsGenesisBatch, modelsGenesisPair } from "../data/models-genesis.js";
import { deriveSeed, Rng } from "../data/rng.js";
import { TrainingError } from "../errors.js";
import type { Network, NetworkConfig, Vec3 } from "../models/architecture.js";
import { countParams, createNetwork } from "../models/registry.js";
import { valueAndGrads } from "../training/backprop.js";
import { resolveTrainer } from "../training/registry.js";
import { ModelsGenesis, modelsGenesis, ModelsGenesisOptionsSchema } from "./models-genesis.js";
import { getMethod } from "./registry.js";

await tf.setBackend("cpu");

const cfg = (patch: Vec3): NetworkConfig => ({
  name: "stand-in-cnn",
  family: "cnn",
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

/** Returns its input: the loss is then the mean squared corruption, input vs target. */
const identity = (patch: Vec3): Network => ({
  config: cfg(patch),
  weights: new Map(),
  declarations: [],
  apply: (x) => tf.clone(x),
  encode: (x) => [tf.clone(x)],
  parameterCount: () => 0,
  dispose: () => undefined,
});

const opts = (o: Record<string, unknown> = {}) =>
  ModelsGenesisOptionsSchema.parse({ shuffleBlocks: 300, bezierPoints: 5000, ...o });

/** What the loader's models-genesis transform hands the method: corrupted x, clean target, flipped anon. */
function corrupted(
  xs: Float32Array,
  shape: readonly [number, number, number, number, number],
  seed: number,
  m: ModelsGenesis,
  anonV?: Float32Array,
) {
  const r = modelsGenesisBatch(xs, shape, seed, m.o, anonV);
  const [B, X, Y, Z] = shape;
  return {
    x: tf.tensor5d(r.input, [...shape]),
    target: tf.tensor5d(r.target, [...shape]),
    ...(r.anon === undefined ? {} : { anon: tf.tensor5d(r.anon, [B, X, Y, Z, 1]) }),
    r,
  };
}

test('batch corruption = per-sample pairs, sample b from its own generator deriveSeed(seed, "models-genesis", b)', () => {
  const shape = [2, 20, 20, 20, 1] as const;
  const n = 20 ** 3;
  const x = Float32Array.from({ length: 2 * n }, (_, i) => Math.cos(i * 0.11));
  const o = opts();
  const r = modelsGenesisBatch(x, shape, 77, o);
  for (let b = 0; b < 2; b++) {
    const p = modelsGenesisPair(
      x.subarray(b * n, (b + 1) * n),
      [20, 20, 20, 1],
      new Rng(deriveSeed(77, "models-genesis", b)),
      o,
    );
    assert.deepEqual(r.input.subarray(b * n, (b + 1) * n), p.input);
    assert.deepEqual(r.target.subarray(b * n, (b + 1) * n), p.target);
  }
  assert.notDeepEqual(modelsGenesisBatch(x, shape, 78, o).input, r.input);
});

test("the method asks the loader for the corruption (train and validation) with its options, anon excluded", () => {
  const m = new ModelsGenesis(opts({ anon: true, flipRate: 0.7 }));
  const { anon: _anon, ...corruption } = opts({ flipRate: 0.7 });
  assert.deepEqual(m.data.transform, { key: "models-genesis", options: corruption, validation: true });
  assert.equal("anon" in m.data.transform.options, false);
  const x = tf.zeros<tf.Rank.R5>([1, 4, 4, 4, 1]);
  assert.throws(() => m.loss(identity([4, 4, 4]), { x }, { training: true, seed: 1 }), TrainingError);
  x.dispose();
});

test("Models Genesis loss = plain MSE(input, target) over all voxels for an identity network (direct computation)", () => {
  const patch: Vec3 = [20, 20, 20];
  const n = 20 ** 3;
  const xs = Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(i * 0.07) * 2);
  const m = new ModelsGenesis(opts());
  const { x, target, r } = corrupted(xs, [2, 20, 20, 20, 1], 9, m);
  const before = tf.memory().numTensors;
  const loss = tf.tidy(() => m.loss(identity(patch), { x, target }, { training: true, seed: 9 }));
  assert.equal(tf.memory().numTensors, before + 1);
  let s = 0;
  r.input.forEach((v, i) => (s += (v - r.target[i]!) ** 2));
  const want = s / (2 * n);
  assert.ok(want > 0.01);
  assert.ok(Math.abs(loss.dataSync()[0]! - want) < 1e-5 * want, `${loss.dataSync()[0]} vs ${want}`);
  tf.dispose([x, target, loss]);
});

test("_ANON: masked MSE with (1 − anon), the mask flipped with the sample, −1 counted as 0", () => {
  const patch: Vec3 = [20, 20, 20];
  const n = 20 ** 3;
  // a network predicting 0: error = target² ; anon marks the x < 10 half (1) and the rest outside (−1)
  const zero: Network = { ...identity(patch), apply: (t) => tf.zerosLike(t) };
  const xs = Float32Array.from({ length: n }, (_, i) => (Math.floor(i / 400) < 10 ? 1 : 3));
  const anonV = Float32Array.from({ length: n }, (_, i) => (Math.floor(i / 400) < 10 ? 1 : -1));
  const m = new ModelsGenesis(opts({ anon: true, flipRate: 1 })); // always 3 flips: an X flip moves the halves
  assert.equal(m.needsAnon, true);
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const c = corrupted(xs, [1, 20, 20, 20, 1], seed, m, anonV);
    const l = tf.tidy(() => m.loss(zero, c, { training: true, seed }).dataSync()[0]!);
    tf.dispose([c.x, c.target, c.anon!]);
    // whatever the flips, the anonymised voxels (value 1) stay paired with their mask → only value 3 counts
    assert.ok(Math.abs(l - 9) < 1e-5, `seed ${seed}: ${l}`);
  }
  const pm = new ModelsGenesis(opts());
  const c = corrupted(xs, [1, 20, 20, 20, 1], 1, pm);
  const plain = tf.tidy(() => pm.loss(zero, c, { training: true, seed: 1 }).dataSync()[0]!);
  tf.dispose([c.x, c.target]);
  assert.ok(Math.abs(plain - 5) < 1e-5, `${plain}`); // mean of 1 and 9
});

test("no tensor leak across a gradient step on resenc-xs and on eva-mae-xs without decoder", () => {
  const cnn = createNetwork("resenc-xs", {
    features: [4, 8],
    blocks: [1, 1],
    strides: [1, 2],
    patchSize: [16, 16, 16],
    seed: 1,
  });
  const vit = createNetwork("eva-mae-xs", {
    embedDim: 24,
    heads: 1,
    depth: 1,
    decoderDepth: 0,
    patchSize: [16, 16, 16],
    seed: 1,
  });
  assert.ok(![...vit.weights.keys()].some((k) => k.startsWith("decoder.")));
  const m = new ModelsGenesis(opts());
  const xs = tf.tidy(
    () => tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 3).dataSync() as Float32Array,
  );
  const { x, target } = corrupted(xs, [2, 16, 16, 16, 1], 5, m);
  for (const net of [cnn, vit]) {
    const before = tf.memory().numTensors;
    const { value, grads } = valueAndGrads(
      () => m.loss(net, { x, target }, { training: true, seed: 5 }),
      [...net.weights.values()],
    );
    assert.ok(Number.isFinite(value.dataSync()[0]));
    assert.ok(Object.keys(grads).length > 0);
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before);
    net.dispose();
  }
  tf.dispose([x, target]);
});

test("registry: both families; Primus → eva-mae-* with decoderDepth 0; trainers, recipes, no spatial augmentation", () => {
  const e = getMethod("models-genesis");
  assert.deepEqual(e.families, ["cnn", "vit"]);
  assert.equal(e, modelsGenesis);
  assert.equal(
    modelsGenesis.architectureFor("primus-xs", () => true),
    "eva-mae-xs",
  );
  assert.equal(
    modelsGenesis.architectureFor("resenc-xs", () => true),
    "resenc-xs",
  );
  assert.deepEqual(modelsGenesis.architectureOptions("eva-mae-m"), { decoderDepth: 0 });
  assert.deepEqual(modelsGenesis.architectureOptions("resenc-l"), {});
  // EvaMAE-M without decoder = Primus-M modules + mask token (upstream keeps the unused mask_token parameter)
  assert.equal(countParams("eva-mae-m", { decoderDepth: 0 }), countParams("primus-m") + 864);
  const cnn = resolveTrainer("ModelGenesisTrainer_BS8");
  assert.equal(cnn.entry.key, "models-genesis-resenc-l");
  assert.equal(cnn.options.batchSize, 8);
  assert.equal(cnn.options.augment, false);
  assert.equal(cnn.options.optimizer.kind, "sgd-nesterov");
  assert.equal(cnn.options.gradClip, 12);
  const vit = resolveTrainer("ModelGenesisEvaTrainer");
  assert.equal(vit.entry.key, "models-genesis-primus-m");
  assert.equal(vit.options.architecture, "eva-mae-m");
  assert.equal(vit.options.augment, false);
  assert.equal(vit.options.optimizer.kind, "adamw");
  assert.equal(vit.options.gradClip, 1);
  assert.equal(resolveTrainer("ModelGenesisTrainer_ANON").options.methodOptions.anon, true);
  assert.throws(() => e.optionsSchema.parse({ flipRate: 2 }));
});
