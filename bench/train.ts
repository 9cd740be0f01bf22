/**
 * `npm run bench:train` — training throughput on the small presets, and whether the data loader keeps up.
 *
 * 1. Loader alone: patches/s of the worker-thread loader with the MAE augmentation chain (loader patch 51³ for a 32³
 *    network patch, rotation/scale/mirror), reading Zarr volumes written by the preprocess store (synthetic
 *    160×192×160 heads, or a real preprocessed dataset with `--dataset ID --config C`).
 * 2. Training: the real loop (`train()`) for `--steps` steps of MAE on resenc-xs and eva-mae-xs (32³, batch 2) with
 *    the loader running concurrently; steps/s from the step-duration histogram, and the share of wall time the loop
 *    waited for data.
 * Reported ratio (baseline = what the step consumes, measured in the same run): loader patches/s ÷ (steps/s × batch).
 * The target is ≥ 2. Flags: --steps N (default 12), --workers N (default 1), --backend B (default wasm), --json FILE.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { MAE_AUGMENT } from "../runtime/src/data/augment.js";
import { DataLoader } from "../runtime/src/data/loader.js";
import { initialPatchSize } from "../runtime/src/data/patch.js";
import { Rng } from "../runtime/src/data/rng.js";
import type { TrainingImage } from "../runtime/src/data/source.js";
import { writeZarrVolume } from "../runtime/src/io/zarr-volume.js";
import { getMethod } from "../runtime/src/methods/registry.js";
import { selectBackend } from "../runtime/src/models/backend/select.js";
import { createNetwork } from "../runtime/src/models/registry.js";
import { TrainingMetrics } from "../runtime/src/observability/training-metrics.js";
import { train } from "../runtime/src/training/loop.js";
import { resolveTrainer } from "../runtime/src/training/registry.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : d;
};
const steps = Number(opt("--steps", "12"));
const workers = Number(opt("--workers", "1"));
const backend = opt("--backend", "wasm");
const jsonOut = opt("--json", "");
const BATCH = 2;
const F = [32, 32, 32] as const;

async function syntheticImages(dir: string): Promise<TrainingImage[]> {
  const out: TrainingImage[] = [];
  const shape = [1, 160, 192, 160];
  for (let i = 0; i < 3; i++) {
    const rng = new Rng(i);
    const data = new Float32Array(160 * 192 * 160);
    let k = 0;
    for (let x = 0; x < 160; x++)
      for (let y = 0; y < 192; y++)
        for (let z = 0; z < 160; z++, k++) {
          const r = ((x - 80) / 70) ** 2 + ((y - 96) / 85) ** 2 + ((z - 80) / 70) ** 2;
          data[k] = r < 1 ? 1 + 0.5 * Math.sin(x * 0.1 + i) * Math.cos(y * 0.07) + 0.1 * (rng.float() - 0.5) : 0;
        }
    const p = join(dir, `im${i}.zarr`);
    await writeZarrVolume(p, data, shape);
    out.push({ uniqueId: `im${i}`, uniqueSubjectId: `s${i}`, modality: "T1w", image: p });
  }
  return out;
}

async function loaderAlone(images: TrainingImage[], batches: number): Promise<number> {
  const loader = new DataLoader({
    images,
    batchSize: BATCH,
    patchSize: F,
    loaderPatchSize: initialPatchSize(F),
    augment: MAE_AUGMENT,
    withAnon: false,
    seed: 1,
    stream: "bench",
    numWorkers: workers,
    prefetch: 4,
  });
  await loader.next(); // start-up (worker boot, first reads) not counted
  const t0 = performance.now();
  for (let i = 0; i < batches; i++) await loader.next();
  const s = (performance.now() - t0) / 1000;
  await loader.close();
  return (batches * BATCH) / s;
}

async function trainRun(
  images: TrainingImage[],
  trainer: string,
  arch: string,
  dir: string,
): Promise<{ stepsPerS: number; waitShare: number; wall: number }> {
  const o = resolveTrainer(trainer, {
    architecture: arch,
    numEpochs: 1,
    itersPerEpoch: steps,
    valIters: 0,
    patchSize: [...F],
    batchSize: BATCH,
    loaderWorkers: workers,
  }).options;
  const net = createNetwork(arch, { inChannels: 1, outChannels: 1, patchSize: F, seed: 0 });
  const metrics = new TrainingMetrics({ defaultMetrics: false });
  const t0 = performance.now();
  await train({
    trainerName: trainer,
    options: o,
    network: net,
    method: getMethod("mae").create(o.methodOptions, net.config.family),
    trainImages: images,
    valImages: [],
    outputDir: join(dir, arch),
    checkpointDir: join(dir, arch),
    resume: false,
    initArgs: {},
    adaptationPlan: null,
    metrics,
    logger: pino({ level: "silent" }),
  });
  const wall = (performance.now() - t0) / 1000;
  net.dispose();
  const get = async (name: string, suffix: string): Promise<number> => {
    const m = (await metrics.registry.getSingleMetric(name)?.get())?.values.find(
      (v) => (v as { metricName?: string }).metricName === `${name}${suffix}`,
    );
    return m?.value ?? Number.NaN;
  };
  const stepSum = await get("pretrain_step_duration_seconds", "_sum");
  const stepCount = await get("pretrain_step_duration_seconds", "_count");
  const waitSum = await get("pretrain_loader_wait_seconds", "_sum");
  return { stepsPerS: stepCount / stepSum, waitShare: waitSum / (stepSum + waitSum), wall };
}

const dir = mkdtempSync(join(tmpdir(), "ssl3d-bench-train-"));
try {
  const choice = await selectBackend(backend);
  const images = await syntheticImages(dir);
  const patchesPerS = await loaderAlone(images, 10);
  const results: Record<string, unknown> = {
    backend: choice.name,
    workers,
    batch: BATCH,
    patch: F,
    loaderPatch: initialPatchSize(F),
    loaderPatchesPerS: patchesPerS,
  };
  for (const [trainer, arch] of [
    ["BaseMAETrainer", "resenc-xs"],
    ["BaseEvaMAETrainer", "eva-mae-xs"],
  ] as const) {
    const r = await trainRun(images, trainer, arch, dir);
    const consumed = r.stepsPerS * BATCH;
    results[arch] = {
      stepsPerS: r.stepsPerS,
      patchesConsumedPerS: consumed,
      loaderToStepRatio: patchesPerS / consumed,
      loaderWaitShareInLoop: r.waitShare,
    };
    process.stdout.write(
      `${arch}: ${r.stepsPerS.toFixed(3)} steps/s = ${consumed.toFixed(2)} patches/s consumed; loader ${patchesPerS.toFixed(2)} patches/s → ratio ${(patchesPerS / consumed).toFixed(2)}x (target ≥ 2); in-loop data wait ${(100 * r.waitShare).toFixed(1)} % of step time\n`,
    );
  }
  if (jsonOut !== "") writeFileSync(jsonOut, JSON.stringify(results, null, 2) + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
