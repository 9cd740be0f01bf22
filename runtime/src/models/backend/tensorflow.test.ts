/**
 * The `node` backend (TensorFlow 2.21 on the CPU through @tensorflow/tfjs-node, built by `npm run setup:tensorflow --
 * --variant cpu`; the same binding the GPU image runs with tfjs-node-gpu): `--backend node` loads it, and one training
 * step of every pre-training method on both backbones (xs presets) gives the loss and gradients of the native cpu
 * backend. Tolerance: loss 1e-4 relative; every gradient tensor max|Δ| <= 1e-3 · max|g| + 1e-4 · G, G the largest
 * gradient entry of the whole network (float32 sums in a different order in TensorFlow's Eigen kernels and the
 * native/oneDNN kernels, amplified by instance norm in the CNN: measured up to 2.4e-3 · max|g| on small-gradient
 * tensors of resenc-xs, about 1e-6 relative on primus-xs; the losses agree to 1e-7).
 * `SSL3D_SKIP_TENSORFLOW=1` skips this file when the binding is deliberately not built; otherwise its absence fails.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform } from "../../data/batch-transforms.js";
import type { MethodBatch } from "../../methods/method.js";
import { getMethod, methodKeys } from "../../methods/registry.js";
import { valueAndGrads } from "../../training/backprop.js";
import { maxAbs, maxAbsDiff, seeded } from "../../../../test/helpers/tf-check.js";
import type { ArchitectureFamily, Vec3 } from "../architecture.js";
import { architectureKeys, createNetwork } from "../registry.js";
import { selectBackend, tfjsNodeMissing } from "./select.js";

const skip = process.env.SSL3D_SKIP_TENSORFLOW === "1" ? "SSL3D_SKIP_TENSORFLOW=1" : false;
const LOSS_TOL = 1e-4;
const GRAD_TOL = 1e-3;
const GRAD_ABS = 1e-4;
const PRESET: Record<ArchitectureFamily, string> = { cnn: "resenc-xs", vit: "primus-xs" };
/** Loaded patch per method: 32³ (MAE/SparK mask 16³ / 4³ blocks; Primus: 4³ tokens); the crop methods a patch their default crop grids divide. */
const PATCH: Record<string, Vec3> = { voco: [32, 32, 8], simclr: [32, 32, 16] };
const DEFAULT_PATCH: Vec3 = [32, 32, 32];

test("--backend node loads TensorFlow 2.21 through the binding built by setup:tensorflow", { skip }, async () => {
  assert.equal(tfjsNodeMissing("@tensorflow/tfjs-node"), undefined, "run: npm run setup:tensorflow -- --variant cpu");
  const c = await selectBackend("node");
  assert.equal(c.name, "node");
  assert.equal(c.tfBackend, "tensorflow");
  assert.equal(tf.getBackend(), "tensorflow");
  assert.match(c.tfVersion ?? "", /^2\.21\./);
  assert.equal(c.gpu, false);
  assert.match(c.reason, /requested \(TensorFlow 2\.21\.\d+ on the CPU\)/);
});

interface StepResult {
  readonly loss: number;
  readonly grads: Map<string, Float32Array>;
}

function batchFor(
  methodKey: string,
  family: ArchitectureFamily,
  patch: Vec3,
): { batch: () => MethodBatch; needsAnon: boolean } {
  const entry = getMethod(methodKey);
  const method = entry.create(entry.optionsSchema.parse({}), family);
  const per = method.data?.imagesPerSample ?? 1;
  const shape: [number, number, number, number, number] = [2 * per, ...patch, 1];
  const n = shape.reduce((a, b) => a * b, 1);
  const anon = method.needsAnon ? Float32Array.from(seeded(n, 5), (v) => (v > 0.8 ? 1 : 0)) : undefined;
  const arrays =
    method.data?.transform === undefined
      ? { data: seeded(n, 3), shape, anon }
      : applyBatchTransform(method.data.transform, { data: seeded(n, 3), shape, anon }, 11);
  return {
    needsAnon: method.needsAnon,
    batch: () => ({
      x: tf.tensor5d(arrays.data, arrays.shape),
      anon:
        arrays.anon === undefined
          ? undefined
          : tf.tensor5d(arrays.anon, [...arrays.shape.slice(0, 4), 1] as [number, number, number, number, number]),
      target: "target" in arrays ? tf.tensor5d(arrays.target, arrays.shape) : undefined,
      aux: "aux" in arrays ? tf.tensor(arrays.aux.data, arrays.aux.shape) : undefined,
    }),
  };
}

async function step(backend: "cpu" | "node", methodKey: string, family: ArchitectureFamily): Promise<StepResult> {
  await selectBackend(backend);
  const entry = getMethod(methodKey);
  const options = entry.optionsSchema.parse({});
  const method = entry.create(options, family);
  const patch = PATCH[methodKey] ?? DEFAULT_PATCH;
  const archKey = entry.architectureFor?.(PRESET[family], (k) => architectureKeys().includes(k)) ?? PRESET[family];
  const netPatch = entry.networkPatchSize?.(patch, options) ?? patch;
  const net = createNetwork(archKey, {
    ...entry.architectureOptions?.(archKey),
    inChannels: 1,
    outChannels: method.outChannels(1),
    patchSize: netPatch,
    seed: 7,
  });
  const { batch } = batchFor(methodKey, family, patch);
  const b = batch();
  const vars = [...net.weights.values()].filter((v) => v.trainable);
  const { value, grads } = valueAndGrads(() => method.loss(net, b, { training: true, seed: 3 }), vars);
  const loss = (await value.data())[0]!;
  // keyed by the network's parameter names (tf.Variable names are unique per instance)
  const out = new Map<string, Float32Array>();
  for (const [name, v] of net.weights) {
    const g = grads[v.name];
    if (g !== undefined) out.set(name, (await g.data()) as Float32Array);
  }
  tf.dispose(
    [value, ...Object.values(grads), b.x, b.anon, b.target, b.aux].filter((t): t is tf.Tensor => t !== undefined),
  );
  net.dispose();
  return { loss, grads: out };
}

for (const methodKey of methodKeys()) {
  for (const family of getMethod(methodKey).families) {
    test(`one ${methodKey} step on ${PRESET[family]}: node (TensorFlow) = cpu (native kernels)`, { skip }, async () => {
      const ref = await step("cpu", methodKey, family);
      const got = await step("node", methodKey, family);
      assert.ok(Number.isFinite(ref.loss) && ref.loss !== 0, `reference loss ${ref.loss}`);
      const dl = Math.abs(got.loss - ref.loss) / Math.abs(ref.loss);
      assert.ok(dl < LOSS_TOL, `loss ${got.loss} vs ${ref.loss}: rel ${dl}`);
      assert.deepEqual([...got.grads.keys()].sort(), [...ref.grads.keys()].sort());
      // G = the network's largest gradient entry: float32 rounding noise scales with the activations, so a tensor
      // whose exact gradient is ~0 (a conv bias followed by instance norm) is held to G, not to its own noise
      const G = Math.max(...[...ref.grads.values()].map((g) => maxAbs(g)));
      let worst = 0;
      for (const [name, g] of ref.grads) {
        const d = maxAbsDiff(got.grads.get(name)!, g);
        const bound = GRAD_TOL * maxAbs(g) + GRAD_ABS * G;
        worst = Math.max(worst, d / bound);
        assert.ok(d <= bound, `gradient of ${name}: max|Δ| ${d} > ${bound} (max|g| ${maxAbs(g)}, network max ${G})`);
      }
      process.stderr.write(
        `# ${methodKey}/${family}: loss rel ${dl.toExponential(1)}, worst gradient at ${(100 * worst).toFixed(0)} % of its bound\n`,
      );
    });
  }
}
