/**
 * `npm run bench:step-thread` — what a training step costs on the step thread for the methods whose per-sample CPU
 * transforms moved into the loader workers (ADR 0040 `MethodDataNeeds.transform`), before vs after, in one run.
 *
 * Per batch of smooth synthetic patches (`--batch` samples):
 * - after  = the step thread's work now: the method's loss forward + backward on the batch the loader delivered;
 * - before = the transform (what used to run inside `loss`) + the same forward/backward.
 * Methods: models-genesis on resenc-xs (`--patch` cube), voco and simclr on voco-resenc-xs (patch `--crop-patch`,
 * VoCo's 4×4×1 base grid + 4 targets, SimCLR's 2 reference crops of a cube of the smallest side + partners, with the
 * per-crop augmentation), swin-pretext on swin-pretext-resenc-xs (`--swin-patch` cube, default 32: two rotated + cut-out views).
 * Reported: the transform's mean seconds per batch, the tensor work's median, and before / after =
 * (transform + tensor) / tensor (how much longer the step thread was busy), plus the raw mean timings of both paths.
 * Flags: --patch N (64), --swin-patch N (32), --crop-patch X,Y,Z (128,128,32), --batch N (2), --batches N (3),
 * --backend B (cpu), --only KEY, --json FILE.
 */
import { writeFileSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform, type TransformedArrays } from "../runtime/src/data/batch-transforms.js";
import { Rng } from "../runtime/src/data/rng.js";
import type { MethodBatch, PretrainMethod } from "../runtime/src/methods/method.js";
import { ModelsGenesis, ModelsGenesisOptionsSchema } from "../runtime/src/methods/models-genesis.js";
import { SimClr, SimClrOptionsSchema } from "../runtime/src/methods/simclr.js";
import { SwinPretext, SwinPretextOptionsSchema } from "../runtime/src/methods/swin-pretext.js";
import { VoCo, VoCoOptionsSchema } from "../runtime/src/methods/voco.js";
import type { Network } from "../runtime/src/models/architecture.js";
import { selectBackend } from "../runtime/src/models/backend/select.js";
import { createNetwork } from "../runtime/src/models/registry.js";
import { valueAndGrads } from "../runtime/src/training/backprop.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : d;
};
const P = Number(opt("--patch", "64"));
const swinP = Number(opt("--swin-patch", "32"));
const B = Number(opt("--batch", "2"));
const batches = Number(opt("--batches", "3"));
const backend = opt("--backend", "cpu");
const jsonOut = opt("--json", "");
const only = opt("--only", "");
const cropPatch = opt("--crop-patch", "128,128,32").split(",").map(Number) as [number, number, number];

function patches(seed: number, dims: readonly [number, number, number]): Float32Array {
  const [X, Y, Z] = dims;
  const rng = new Rng(seed);
  const n = X * Y * Z;
  const out = new Float32Array(B * n);
  for (let k = 0; k < out.length; k++) {
    const v = k % n;
    const [x, y, z] = [Math.floor(v / (Y * Z)), Math.floor(v / Z) % Y, v % Z];
    out[k] = Math.sin(x * 0.1 + seed) * Math.cos(y * 0.07) + 0.3 * Math.sin(z * 0.13) + 0.1 * (rng.float() - 0.5);
  }
  return out;
}

const choice = await selectBackend(backend);

/** The step thread's tensor work: loss forward + backward, everything disposed. */
function tensorStep(method: PretrainMethod, net: Network, mb: MethodBatch): void {
  const { value, grads } = valueAndGrads(
    () => method.loss(net, mb, { training: true, seed: 1 }),
    [...net.weights.values()],
  );
  value.dataSync();
  tf.dispose([value, ...Object.values(grads)]);
}

function toTensors(t: TransformedArrays): MethodBatch {
  return {
    x: tf.tensor5d(t.data, t.shape),
    target: t.target === undefined ? undefined : tf.tensor5d(t.target, t.shape),
    aux: t.aux === undefined ? undefined : tf.tensor(t.aux.data, t.aux.shape),
  };
}

const results: Record<string, unknown>[] = [];
function measure(
  key: string,
  method: PretrainMethod,
  net: Network,
  dims: readonly [number, number, number],
  label: string,
): void {
  const shape: [number, number, number, number, number] = [B, ...dims, 1];
  const spec = method.data!.transform!;
  const run = (mb: MethodBatch) => {
    tensorStep(method, net, mb);
    tf.dispose([mb.x, mb.target ?? [], mb.aux ?? []]);
  };
  run(toTensors(applyBatchTransform(spec, { data: patches(99, dims), shape, anon: undefined }, 99))); // warm-up
  let before = 0;
  let after = 0;
  let transformOnly = 0;
  const tensorTimes: number[] = [];
  for (let i = 0; i < batches; i++) {
    const plain = { data: patches(i, dims), shape, anon: undefined };
    // before: the transform ran inside loss, on this thread
    let t0 = performance.now();
    const moved = applyBatchTransform(spec, plain, i);
    const t1 = performance.now();
    transformOnly += t1 - t0;
    run(toTensors(moved));
    tensorTimes.push(performance.now() - t1);
    before += performance.now() - t0;
    // after: a loader worker delivered `moved`; the step thread only runs the tensor work
    t0 = performance.now();
    run(toTensors(moved));
    tensorTimes.push(performance.now() - t0);
    after += performance.now() - t0;
  }
  net.dispose();
  // the tensor work is identical before and after; its median over all 2·batches runs damps the shared machine's noise
  const tensor = tensorTimes.sort((a, b) => a - b)[Math.floor(tensorTimes.length / 2)]! / 1000;
  const transform = transformOnly / batches / 1000;
  const r = {
    method: key,
    network: label,
    batch: B,
    patch: dims,
    batches,
    beforeSPerBatch: before / batches / 1000,
    afterSPerBatch: after / batches / 1000,
    transformSPerBatch: transform,
    tensorMedianSPerBatch: tensor,
    measuredRatio: before / after,
    ratio: (transform + tensor) / tensor,
  };
  results.push(r);
  process.stdout.write(
    `${key} (${label}, ${B}×${dims.join("×")}, ${choice.name}): transform ${transform.toFixed(3)} s/batch, tensor work ${tensor.toFixed(3)} s/batch (median) → step thread before/after ${r.ratio.toFixed(2)}x (raw timings ${r.beforeSPerBatch.toFixed(3)} / ${r.afterSPerBatch.toFixed(3)} s = ${r.measuredRatio.toFixed(2)}x)\n`,
  );
}

if (only === "" || only === "models-genesis") {
  measure(
    "models-genesis",
    new ModelsGenesis(ModelsGenesisOptionsSchema.parse({})),
    createNetwork("resenc-xs", { inChannels: 1, outChannels: 1, patchSize: [P, P, P], seed: 0 }),
    [P, P, P],
    "resenc-xs",
  );
}
const side = Math.min(...cropPatch);
if (only === "" || only === "voco") {
  const crop = [cropPatch[0] / 4, cropPatch[1] / 4, cropPatch[2]] as [number, number, number];
  measure(
    "voco",
    new VoCo(VoCoOptionsSchema.parse({})),
    createNetwork("voco-resenc-xs", { inChannels: 1, outChannels: 1, patchSize: crop, seed: 0 }),
    cropPatch,
    `voco-resenc-xs, ${crop.join("×")} crops`,
  );
}
if (only === "" || only === "simclr") {
  measure(
    "simclr",
    new SimClr(SimClrOptionsSchema.parse({})),
    createNetwork("voco-resenc-xs", { inChannels: 1, outChannels: 1, patchSize: [side, side, side], seed: 0 }),
    cropPatch,
    `voco-resenc-xs, ${side}³ crops`,
  );
}
if (only === "" || only === "swin-pretext") {
  measure(
    "swin-pretext",
    new SwinPretext(SwinPretextOptionsSchema.parse({})),
    createNetwork("swin-pretext-resenc-xs", {
      inChannels: 1,
      outChannels: 1,
      patchSize: [swinP, swinP, swinP],
      seed: 0,
    }),
    [swinP, swinP, swinP],
    "swin-pretext-resenc-xs",
  );
}
if (jsonOut !== "") writeFileSync(jsonOut, JSON.stringify({ backend: choice.name, results }, null, 2) + "\n");
