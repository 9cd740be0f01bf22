/**
 * Smoke test over the registries, so that a new method or architecture cannot be forgotten: for every registered
 * pre-training method and every small registered backbone of a family it supports (the `-xs` presets, shrunk
 * further with the options below) the backbone goes through the method's `architectureFor` /
 * `architectureOptions` / `networkPatchSize` exactly as `ssl3d train` builds it (training/run.ts), gets a batch
 * through the method's training batch transform as the loader makes it, and takes two optimizer steps. Each step
 * must give a finite loss, change the input projection (the adaptation plan's `keys_to_in_proj`) and every weight
 * that got a non-zero gradient, and leave no tensor behind. Every registered architecture must be a backbone or the
 * network some method builds for a backbone, every family must have a small backbone, and every small architecture
 * is stepped. The large presets (`-l`, `-m`, ...) are the same code with other widths (docs/parity.md).
 *
 * The lists come from the registries. What a method needs to fit a tiny patch (a smaller mask block, fewer crops)
 * is in TINY below; a method without a line runs with its defaults on a 16³ patch.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform } from "../data/batch-transforms.js";
import type { ArchitectureFamily, Network, Vec3 } from "../models/architecture.js";
import { architectureKeys, countParams, createNetwork, getArchitecture } from "../models/registry.js";
import { valueAndGrads } from "../training/backprop.js";
import { AdamW, SgdNesterov, type Optimizer } from "../training/optim.js";
import type { MethodBatch, MethodEntry, PretrainMethod } from "./method.js";
import { getMethod, methodKeys } from "./registry.js";

await tf.setBackend("cpu");

/** Backbones above this size are not stepped (the same code as their `-xs` sibling, with other widths). */
const SMALL = 1_000_000;
const LOADED_PATCH: Vec3 = [16, 16, 16];
/** Network options that shrink an `-xs` preset further, per family (unknown keys are ignored by the other family). */
const NET: Record<ArchitectureFamily, Record<string, unknown>> = {
  cnn: { features: [4, 8], blocks: [1, 1], strides: [1, 2] },
  vit: { embedDim: 24, heads: 1, depth: 1 },
};
/** Method options and loaded patch that fit the tiny sizes above. */
const TINY: Readonly<Record<string, { options?: Record<string, unknown>; patch?: Vec3 }>> = {
  mae: { options: { blockSize: 4 } },
  spark: { options: { blockSize: 4 } },
  "volume-fusion": { options: { minSide: 2 } },
  voco: { options: { baseCrops: [2, 2, 1] }, patch: [16, 16, 8] },
  simclr: { options: { cropSize: [8, 8, 8] }, patch: [16, 16, 8] },
};

const exists = (k: string): boolean => architectureKeys().includes(k);

/** The network key a method builds for a requested one (training/run.ts). */
function builtKey(entry: MethodEntry, key: string): string {
  return entry.architectureFor?.(key, exists) ?? key;
}

/** Architectures that are no method's wrapper of another key: what a user names with `--arch-preset`. */
function backbones(): string[] {
  const wrappers = new Set<string>();
  for (const m of methodKeys()) {
    const e = getMethod(m);
    for (const k of architectureKeys()) {
      const b = builtKey(e, k);
      if (b !== k) wrappers.add(b);
    }
  }
  return architectureKeys().filter((k) => !wrappers.has(k));
}

function smallBackbones(family: ArchitectureFamily): string[] {
  return backbones().filter((k) => getArchitecture(k).family === family && countParams(k) <= SMALL);
}

/** A smooth deterministic loaded batch through the method's training transform, as the loader workers make it. */
function trainingBatch(m: PretrainMethod, patch: Vec3, seed: number): MethodBatch {
  const B = 2 * (m.data?.imagesPerSample ?? 1);
  const shape: [number, number, number, number, number] = [B, ...patch, 1];
  const n = B * patch[0] * patch[1] * patch[2];
  const data = Float32Array.from(
    { length: n },
    (_, i) => Math.sin(i * 0.37 + seed) + Math.cos(i * 0.011) + (i % 7) * 0.1,
  );
  const anon = m.needsAnon ? new Float32Array(n) : undefined;
  const spec = m.data?.transform;
  const t = spec === undefined ? { data, shape, anon } : applyBatchTransform(spec, { data, shape, anon }, seed);
  return {
    x: tf.tensor5d(t.data, t.shape),
    anon: t.anon === undefined ? undefined : tf.tensor5d(t.anon, [t.shape[0], t.shape[1], t.shape[2], t.shape[3], 1]),
    target: "target" in t ? tf.tensor5d(t.target, t.shape) : undefined,
    aux: "aux" in t ? tf.tensor(t.aux.data, t.aux.shape) : undefined,
  };
}

function snapshot(net: Network): Map<string, Float32Array> {
  return new Map([...net.weights].map(([k, v]) => [k, v.dataSync() as Float32Array]));
}

function changed(a: Float32Array, b: Float32Array): boolean {
  return a.some((v, i) => v !== b[i]);
}

/** One optimizer step; returns the loss and the names of the weights whose gradient is not all zero. */
function step(
  method: PretrainMethod,
  net: Network,
  optimizer: Optimizer,
  batch: MethodBatch,
  seed: number,
): { loss: number; moved: string[] } {
  const vars = [...net.weights.values()];
  const { value, grads } = valueAndGrads(() => method.loss(net, batch, { training: true, seed }), vars);
  const named = new Map<string, tf.Tensor>();
  const moved: string[] = [];
  for (const [k, v] of net.weights) {
    const g = grads[v.name];
    if (g === undefined) continue;
    named.set(k, g);
    if ((g.dataSync() as Float32Array).some((x) => x !== 0)) moved.push(k);
  }
  const loss = value.dataSync()[0]!;
  optimizer.step(net.weights, named);
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, moved };
}

function runCombination(methodKey: string, backbone: string): string {
  const entry = getMethod(methodKey);
  const tiny = TINY[methodKey] ?? {};
  const options: unknown = entry.optionsSchema.parse(tiny.options ?? {});
  const family = getArchitecture(backbone).family;
  const method = entry.create(options, family);
  const key = builtKey(entry, backbone);
  const patch = tiny.patch ?? LOADED_PATCH;
  const netPatch = entry.networkPatchSize?.(patch, options) ?? patch;
  const before = tf.memory().numTensors;
  const net = createNetwork(key, {
    ...NET[family],
    ...entry.architectureOptions?.(key),
    inChannels: 1,
    outChannels: method.outChannels(1),
    patchSize: netPatch,
    seed: 1,
  });
  const optimizer: Optimizer = family === "cnn" ? new SgdNesterov() : new AdamW();
  const what = `${methodKey} on ${key} (from ${backbone})`;
  try {
    const inProj = [...net.weights.keys()].filter((k) =>
      net.config.adaptation.keysToInProj.some((p) => k.startsWith(`${p}.`)),
    );
    assert.ok(
      inProj.length > 0,
      `${what}: no weight under keys_to_in_proj ${net.config.adaptation.keysToInProj.join(", ")}`,
    );
    let afterFirst = 0;
    for (const seed of [1, 2]) {
      const batch = trainingBatch(method, patch, seed);
      const w0 = snapshot(net);
      const r = step(method, net, optimizer, batch, seed);
      tf.dispose([batch.x, batch.anon, batch.target, batch.aux].filter((t): t is tf.Tensor => t !== undefined));
      assert.ok(Number.isFinite(r.loss), `${what}: loss ${r.loss} at step ${seed}`);
      const w1 = snapshot(net);
      for (const k of inProj)
        assert.ok(changed(w0.get(k)!, w1.get(k)!), `${what}: input projection ${k} did not change at step ${seed}`);
      for (const k of r.moved)
        assert.ok(changed(w0.get(k)!, w1.get(k)!), `${what}: ${k} had a gradient but did not change`);
      // the first step creates the optimizer's slots; the second must not add a tensor
      if (seed === 1) afterFirst = tf.memory().numTensors;
      else assert.equal(tf.memory().numTensors, afterFirst, `${what}: tensors leaked in a training step`);
    }
  } finally {
    optimizer.dispose();
    net.dispose();
  }
  assert.equal(tf.memory().numTensors, before, `${what}: tensors left after disposing network and optimizer`);
  return key;
}

test("every registered architecture is a backbone or what a method builds for one; each family has a small backbone", () => {
  const bb = new Set(backbones());
  const built = new Set<string>();
  for (const m of methodKeys())
    for (const b of bb)
      if (getMethod(m).families.includes(getArchitecture(b).family)) built.add(builtKey(getMethod(m), b));
  for (const k of architectureKeys())
    assert.ok(bb.has(k) || built.has(k), `architecture ${k} is neither a backbone nor built by any method`);
  for (const f of new Set(architectureKeys().map((k) => getArchitecture(k).family))) {
    assert.ok(smallBackbones(f).length > 0, `family ${f}: no backbone of at most ${SMALL} parameters`);
  }
  for (const m of methodKeys())
    assert.ok(getMethod(m).families.length > 0, `method ${m} supports no architecture family`);
});

/** Backbones stepped as they are or inside the wrapper a method built around them, and the networks built. */
const stepped = new Set<string>();
for (const methodKey of methodKeys()) {
  for (const family of getMethod(methodKey).families) {
    for (const backbone of smallBackbones(family)) {
      test(`${methodKey} on ${backbone}: two training steps`, () => {
        stepped.add(backbone);
        stepped.add(runCombination(methodKey, backbone));
      });
    }
  }
}

test("every small registered architecture was stepped", () => {
  const missed = architectureKeys().filter((k) => countParams(k) <= SMALL && !stepped.has(k));
  assert.deepEqual(missed, [], `small architectures no method built from the small backbones: ${missed.join(", ")}`);
});
