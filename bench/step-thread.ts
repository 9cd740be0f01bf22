/**
 * `npm run bench:step-thread` — what a training step costs on the step thread for the methods whose per-sample CPU
 * transforms moved into the loader workers (ADR 0040 `MethodDataNeeds.transform`), before vs after, in one run.
 *
 * Per batch (smooth synthetic crops, `--patch` cube, `--batch` samples, resenc-xs):
 * - after  = the step thread's work now: the method's loss forward + backward on the batch the loader delivered;
 * - before = the transform (what used to run inside `loss`, e.g. `modelsGenesisBatch`) + the same forward/backward.
 * Reported: mean seconds per batch of each, and the ratio before / after (how much longer the step thread was busy).
 * Flags: --patch N (default 64), --batch N (default 2), --batches N (default 3), --backend B (default cpu), --json FILE.
 */
import { writeFileSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform } from "../runtime/src/data/batch-transforms.js";
import { Rng } from "../runtime/src/data/rng.js";
import { ModelsGenesis, ModelsGenesisOptionsSchema } from "../runtime/src/methods/models-genesis.js";
import { selectBackend } from "../runtime/src/models/backend/select.js";
import { createNetwork } from "../runtime/src/models/registry.js";
import { valueAndGrads } from "../runtime/src/training/backprop.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : d;
};
const P = Number(opt("--patch", "64"));
const B = Number(opt("--batch", "2"));
const batches = Number(opt("--batches", "3"));
const backend = opt("--backend", "cpu");
const jsonOut = opt("--json", "");

function crops(seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(B * P ** 3);
  for (let k = 0; k < out.length; k++) {
    const v = k % P ** 3;
    const [x, y, z] = [Math.floor(v / (P * P)), Math.floor(v / P) % P, v % P];
    out[k] = Math.sin(x * 0.1 + seed) * Math.cos(y * 0.07) + 0.3 * Math.sin(z * 0.13) + 0.1 * (rng.float() - 0.5);
  }
  return out;
}

const choice = await selectBackend(backend);
const net = createNetwork("resenc-xs", { inChannels: 1, outChannels: 1, patchSize: [P, P, P], seed: 0 });
const vars = [...net.weights.values()];
const shape: [number, number, number, number, number] = [B, P, P, P, 1];
const method = new ModelsGenesis(ModelsGenesisOptionsSchema.parse({}));
const spec = method.data.transform!;

/** The step thread's tensor work: loss forward + backward, everything disposed. */
function tensorStep(data: Float32Array, target: Float32Array | undefined): void {
  const x = tf.tensor5d(data, shape);
  const t = target === undefined ? undefined : tf.tensor5d(target, shape);
  const { value, grads } = valueAndGrads(() => method.loss(net, { x, target: t }, { training: true, seed: 1 }), vars);
  value.dataSync();
  tf.dispose([value, ...Object.values(grads), x, t ?? []]);
}

let before = 0;
let after = 0;
let transformOnly = 0;
tensorStep(...((b) => [b.data, b.target] as const)(applyBatchTransform(spec, { data: crops(99), shape, anon: undefined }, 99))); // warm-up
for (let i = 0; i < batches; i++) {
  const plain = { data: crops(i), shape, anon: undefined };
  // before: the corruption ran inside loss, on this thread
  let t0 = performance.now();
  const moved = applyBatchTransform(spec, plain, i);
  const tTransform = performance.now() - t0;
  tensorStep(moved.data, moved.target);
  before += performance.now() - t0;
  transformOnly += tTransform;
  // after: the loader worker delivered `moved`; the step thread only runs the tensor work
  t0 = performance.now();
  tensorStep(moved.data, moved.target);
  after += performance.now() - t0;
}
net.dispose();
const r = { backend: choice.name, method: "models-genesis", network: "resenc-xs", patch: P, batch: B, batches, beforeSPerBatch: before / batches / 1000, afterSPerBatch: after / batches / 1000, transformSPerBatch: transformOnly / batches / 1000, ratio: before / after };
process.stdout.write(`models-genesis (resenc-xs, ${B}×${P}³, ${choice.name}): step thread before ${r.beforeSPerBatch.toFixed(3)} s/batch (corruption ${r.transformSPerBatch.toFixed(3)} s), after ${r.afterSPerBatch.toFixed(3)} s/batch → before/after ${r.ratio.toFixed(2)}x\n`);
if (jsonOut !== "") writeFileSync(jsonOut, JSON.stringify(r, null, 2) + "\n");
