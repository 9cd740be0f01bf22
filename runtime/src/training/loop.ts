/**
 * The training loop (nnssl `AbstractBaseTrainer.run_training` / `train_step`,
 * `src/nnssl/training/nnsslTrainer/AbstractTrainer.py`): epochs × iterations of (batch → method loss → gradients →
 * global-norm clip → non-finite guard → optimizer step), validation iterations without gradients, per-epoch mean
 * losses, checkpoints (`latest` every epoch, `best` on a new lowest validation loss, `final` at the end, after which
 * `latest` is removed), a JSONL line and `progress.png` per epoch, Prometheus metrics and a progress bar.
 *
 * Determinism: batch i of each loader stream depends only on (seed, stream, i); the masks of training step g use
 * `deriveSeed(seed, "mask", g)`, validation step (e, i) `deriveSeed(seed, "val-mask", e, i)`. A checkpoint records
 * the loaders' next indices, the step and the optimizer state, so a resumed run reproduces the uninterrupted loss
 * sequence. A stop request (SIGTERM/SIGUSR1, set by the CLI) ends the loop after the current step with a mid-epoch
 * `checkpoint_latest`; resuming continues inside that epoch.
 */
import * as tf from "@tensorflow/tfjs";
import cliProgress from "cli-progress";
import { appendFile, mkdir, readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { MAE_AUGMENT, NO_AUGMENT } from "../data/augment.js";
import type { Batch } from "../data/batch.js";
import { validationTransform } from "../data/batch-transforms.js";
import { DataLoader } from "../data/loader.js";
import { initialPatchSize } from "../data/patch.js";
import { deriveSeed } from "../data/rng.js";
import type { TrainingImage } from "../data/source.js";
import type { MethodBatch, PretrainMethod } from "../methods/method.js";
import type { Network } from "../models/architecture.js";
import { loadTorchStateDict, networkMeta, torchStateDict } from "../models/checkpoint-export.js";
import type { Logger } from "../observability/log.js";
import { writeProgressPng } from "../observability/progress-png.js";
import { removeStaleTemps, writeFileAtomic } from "../io/atomic.js";
import type { TrainingMetrics } from "../observability/training-metrics.js";
import { checkpointPath, findResumeCheckpoint, loadCheckpoint, removeCheckpoint, saveCheckpoint, type CheckpointKind, type CheckpointMeta, type TrainingLogLists } from "./checkpoint.js";
import { AdamW, NonFiniteGuard, SgdNesterov, clipByGlobalNorm, type Optimizer } from "./optim.js";
import type { TrainerOptions } from "./registry.js";
import { SingleProcessGroup, type ProcessGroup } from "../distributed/process-group.js";
import { learningRate } from "./schedules.js";
import { valueAndGrads } from "./backprop.js";

export interface StopSignal {
  requested: boolean;
  reason?: string;
}

export interface TrainingRun {
  readonly trainerName: string;
  readonly options: TrainerOptions;
  readonly network: Network;
  readonly method: PretrainMethod;
  readonly trainImages: readonly TrainingImage[];
  /** Empty → validation samples from the training images (tiny datasets). */
  readonly valImages: readonly TrainingImage[];
  /** Title of progress.png (default: the trainer name). */
  readonly runName?: string;
  /** `.../fold_all`: logs, progress.png. */
  readonly outputDir: string;
  /** Where checkpoints go (`SSL3D_CHECKPOINT_DIR`, else `outputDir`). */
  readonly checkpointDir: string;
  readonly resume: boolean;
  readonly readerModule?: string;
  readonly initArgs: Record<string, unknown>;
  readonly adaptationPlan: unknown;
  readonly metrics?: TrainingMetrics;
  readonly logger: Logger;
  readonly progressBar?: boolean;
  readonly stop?: StopSignal;
  readonly onStep?: (s: { epoch: number; iteration: number; globalStep: number; loss: number; skipped: boolean }) => void;
  /**
   * Data-parallel group (default: a single process). Every rank runs this loop with its own share of the global
   * batch (`options.batchSize` is the per-rank batch here, `globalBatchSize` the total); gradients, losses and the
   * stop flag are all-reduced each step, so all ranks apply identical updates and stop on the same step. Only rank 0
   * writes checkpoints and logs.
   */
  readonly group?: ProcessGroup;
  readonly globalBatchSize?: number;
}

export interface TrainingResult {
  readonly status: "completed" | "stopped";
  readonly epochsCompleted: number;
  readonly globalStep: number;
  readonly finalTrainLoss: number | null;
  readonly finalValLoss: number | null;
}

export const JSONL_LOG = "training_log.jsonl";

function makeOptimizer(o: TrainerOptions): Optimizer {
  const c = o.optimizer;
  return c.kind === "sgd-nesterov" ? new SgdNesterov(c) : new AdamW(c);
}

function slotNamesOf(o: Optimizer): string[] {
  return o.kind === "sgd-nesterov" ? ["momentum_buffer"] : ["exp_avg", "exp_avg_sq"];
}

function mean(xs: readonly (number | null)[]): number | null {
  const f = xs.filter((v): v is number => v !== null && Number.isFinite(v));
  return f.length === 0 ? null : f.reduce((a, b) => a + b, 0) / f.length;
}

export async function train(run: TrainingRun): Promise<TrainingResult> {
  const o = run.options;
  const log = run.logger;
  const net = run.network;
  const F = o.patchSize;
  const varNameToKey = new Map<string, string>();
  for (const [k, v] of net.weights) varNameToKey.set(v.name, k);
  const varList = [...net.weights.values()];
  const optimizer = makeOptimizer(o);
  const group = run.group ?? new SingleProcessGroup();
  const rank = group.rank;
  const isChief = rank === 0;
  // this rank's gradients and loss weigh share/total in the all-reduced sums
  const share = o.batchSize / (run.globalBatchSize ?? o.batchSize * group.worldSize);
  const guard = new NonFiniteGuard(o.maxNonFiniteSteps);

  let logging: TrainingLogLists = { train_losses: [], val_losses: [], lrs: [], epoch_start_timestamps: [], epoch_end_timestamps: [] };
  let epoch = 0;
  let iteration = 0;
  let globalStep = 0;
  let bestVal: number | null = null;
  let epochStepLosses: (number | null)[] = [];
  let epochStartedAt: number | null = null;
  let trainStart = 0;
  let valStart = 0;
  let resumedFrom: { file: string; meta: CheckpointMeta } | undefined;

  // leftovers of checkpoint/log writes a killed or failed run could not finish (the folder lock makes them stale)
  if (isChief) await removeTrainingTemps(run.outputDir, run.checkpointDir, log);
  if (run.resume) {
    const file = findResumeCheckpoint(run.checkpointDir);
    if (file === undefined) {
      log.info({ dir: run.checkpointDir }, "No checkpoint to resume from; starting fresh");
    } else {
      const ck = loadCheckpoint(file, slotNamesOf(optimizer));
      if (ck.meta.trainer_name !== run.trainerName) log.warn({ file, checkpointTrainer: ck.meta.trainer_name, trainer: run.trainerName }, "Resuming a checkpoint of another trainer");
      loadTorchStateDict(net, ck.weights, file);
      optimizer.importState(ck.optimizerState, net.weights);
      const m = ck.meta;
      resumedFrom = { file, meta: m };
      // like upstream: truncate the per-epoch lists to the shortest (and to current_epoch)
      const len = Math.min(m.current_epoch, ...Object.values(m.logging).map((l) => l.length));
      logging = {
        train_losses: m.logging.train_losses.slice(0, len),
        val_losses: m.logging.val_losses.slice(0, len),
        lrs: m.logging.lrs.slice(0, len),
        epoch_start_timestamps: m.logging.epoch_start_timestamps.slice(0, len),
        epoch_end_timestamps: m.logging.epoch_end_timestamps.slice(0, len),
      };
      epoch = len;
      iteration = len === m.current_epoch ? m.iteration : 0;
      globalStep = m.global_step;
      bestVal = m._best_ema;
      epochStepLosses = iteration > 0 ? m.epoch_step_losses : [];
      epochStartedAt = iteration > 0 ? m.epoch_started_at : null;
      trainStart = m.rng.train_loader.nextIndex;
      valStart = m.rng.val_loader.nextIndex;
      guard.total = m.nonfinite_total;
      log.info({ file, epoch, iteration, globalStep }, "Resumed from checkpoint");
      if (isChief) await truncateJsonl(join(run.outputDir, JSONL_LOG), epoch);
    }
  }
  if (epoch === 0 && iteration === 0 && isChief) await truncateJsonl(join(run.outputDir, JSONL_LOG), 0); // a fresh run starts a new log
  if (epoch >= o.numEpochs) {
    try {
      if (resumedFrom !== undefined && resumedFrom.file !== checkpointPath(run.checkpointDir, "final") && isChief) await completeFinishedRun(run, resumedFrom, optimizer, logging);
      else log.info({ epoch }, "Nothing to do: all epochs completed");
    } finally {
      optimizer.dispose();
    }
    return { status: "completed", epochsCompleted: epoch, globalStep, finalTrainLoss: logging.train_losses.at(-1) ?? null, finalValLoss: logging.val_losses.at(-1) ?? null };
  }

  // ADR 0040: a method may ask for several loaded patches per network sample, centre crops and intensity augmentation
  const needs = run.method.data ?? {};
  const perSample = needs.imagesPerSample ?? 1;
  const common = {
    batchSize: o.batchSize * perSample, patchSize: F, withAnon: run.method.needsAnon, seed: o.seed, numWorkers: o.loaderWorkers, prefetch: o.prefetch,
    ...(needs.crop === undefined ? {} : { crop: needs.crop }),
    ...(run.readerModule === undefined ? {} : { readerModule: run.readerModule }),
  };
  const trainLoader = new DataLoader({
    ...common,
    images: run.trainImages,
    loaderPatchSize: o.augment ? initialPatchSize(F) : F,
    augment: o.augment ? MAE_AUGMENT : NO_AUGMENT,
    ...(needs.trainIntensity === undefined ? {} : { intensity: needs.trainIntensity }),
    ...(needs.transform === undefined ? {} : { transform: needs.transform }),
    stream: rank === 0 ? "train" : `train-r${rank}`,
    startIndex: trainStart,
  });
  const valLoader = new DataLoader({
    ...common,
    images: run.valImages.length > 0 ? run.valImages : run.trainImages,
    loaderPatchSize: F,
    augment: NO_AUGMENT,
    ...((t) => (t === undefined ? {} : { transform: t }))(validationTransform(needs.transform)),
    stream: rank === 0 ? "val" : `val-r${rank}`,
    prefetch: Math.max(1, Math.floor(o.prefetch / 2)),
    startIndex: valStart,
  });
  const metrics = run.metrics;
  if (metrics !== undefined) {
    trainLoader.onBatch = (n) => {
      metrics.loaderPatches.inc(n);
    };
  }

  const checkpoint = async (kind: CheckpointKind): Promise<void> => {
    if (!isChief) return;
    const meta: CheckpointMeta = {
      format: "ssl3d-checkpoint/1",
      layout: "torch",
      trainer_name: run.trainerName,
      current_epoch: epoch,
      iteration,
      global_step: globalStep,
      epoch_step_losses: epochStepLosses,
      epoch_started_at: epochStartedAt,
      logging,
      _best_ema: bestVal,
      nonfinite_total: guard.total,
      rng: { seed: o.seed, train_loader: trainLoader.state(), val_loader: valLoader.state() },
      optimizer: { kind: optimizer.kind, step: optimizer.stepCount, lr: optimizer.lr, hyper: (await optimizer.exportState()).hyper },
      init_args: run.initArgs,
      nnssl_adaptation_plan: run.adaptationPlan,
      saved_at: Date.now() / 1000,
    };
    const file = checkpointPath(run.checkpointDir, kind);
    await saveCheckpoint(file, meta, torchStateDict(net, { aliases: false }), await optimizer.exportState(), { ...networkMeta(net), "ssl3d.epoch": String(epoch), "ssl3d.method": run.trainerName });
    metrics?.lastCheckpoint.set(meta.saved_at);
    log.info({ file, epoch, iteration, globalStep }, "Saved checkpoint");
  };

  const bar = run.progressBar === true
    ? new cliProgress.SingleBar({ format: "epoch {epoch} |{bar}| {value}/{total} loss {loss} {eta_formatted}", stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : undefined;

  let status: TrainingResult["status"] = "completed";
  await mkdir(run.outputDir, { recursive: true });
  await mkdir(run.checkpointDir, { recursive: true });
  try {
    await trainLoader.warmUp();
    if (group.worldSize > 1) await broadcastWeights(net, group);
    for (; epoch < o.numEpochs; epoch++) {
      const lr = learningRate(o.schedule, o.optimizer.lr, epoch, o.numEpochs);
      optimizer.lr = lr;
      metrics?.learningRate.set(lr);
      metrics?.epoch.set(epoch);
      epochStartedAt ??= Date.now() / 1000;
      log.info({ epoch, lr }, "Epoch started");
      bar?.start(o.itersPerEpoch, iteration, { epoch, loss: "-" });
      for (; iteration < o.itersPerEpoch; iteration++) {
        const waitStart = performance.now();
        const batch = await trainLoader.next();
        metrics?.loaderWait.observe((performance.now() - waitStart) / 1000);
        metrics?.loaderQueueDepth.set(trainLoader.queueDepth());
        const t0 = performance.now();
        const seed = deriveSeed(o.seed, "mask", globalStep);
        const { loss, norm, stop } = await trainStep(run, varList, varNameToKey, batch, seed, o.gradClip, (l, n) => guard.check(l, n, { epoch, step: globalStep }), optimizer, group, share);
        if (stop && run.stop !== undefined && !run.stop.requested) {
          run.stop.requested = true;
          run.stop.reason ??= "a peer rank's stop request";
        }
        const skipped = !Number.isFinite(loss) || !Number.isFinite(norm);
        if (skipped) {
          metrics?.nonFinite.inc();
          log.warn({ epoch, iteration, globalStep, loss, gradNorm: norm }, "Skipped a non-finite step");
        }
        metrics?.stepDuration.observe((performance.now() - t0) / 1000);
        globalStep += 1;
        epochStepLosses.push(Number.isFinite(loss) ? loss : null);
        metrics?.globalStep.set(globalStep);
        metrics?.samples.inc(batch.keys.length / perSample);
        if (Number.isFinite(loss)) metrics?.trainLoss.set(loss);
        bar?.update(iteration + 1, { epoch, loss: Number.isFinite(loss) ? loss.toFixed(4) : String(loss) });
        run.onStep?.({ epoch, iteration, globalStep, loss, skipped });
        // Yield one macrotask turn per step: with batches always ready the loop would otherwise run on microtasks
        // only, starving signal handlers (graceful stop) and the /metrics server.
        await new Promise<void>((resolve) => setImmediate(resolve));
        // with several ranks only the all-reduced flag counts (a signal seen by one rank between steps must not
        // make it leave the collective sequence alone)
        if ((group.worldSize > 1 ? stop : run.stop?.requested === true) && iteration + 1 < o.itersPerEpoch) {
          iteration += 1;
          status = "stopped";
          break;
        }
      }
      bar?.stop();
      if (status === "stopped") {
        await checkpoint("latest");
        log.warn({ reason: run.stop?.reason, epoch, iteration, globalStep }, "Stopped on request after the current step; checkpoint_latest written");
        break;
      }
      // validation
      const valLosses: number[] = [];
      for (let i = 0; i < o.valIters; i++) {
        const batch = await valLoader.next();
        const seed = deriveSeed(o.seed, "val-mask", epoch, i);
        const l = tf.tidy(() => {
          return run.method.loss(net, batchTensors(batch), { training: false, seed });
        });
        const v = Float32Array.of((await l.data())[0]! * share);
        l.dispose();
        await group.allReduceSum(v);
        valLosses.push(v[0]!);
      }
      const trainMean = mean(epochStepLosses);
      const valMean = o.valIters > 0 ? mean(valLosses) : null;
      const end = Date.now() / 1000;
      logging.train_losses.push(trainMean);
      logging.val_losses.push(valMean);
      logging.lrs.push(lr);
      logging.epoch_start_timestamps.push(epochStartedAt);
      logging.epoch_end_timestamps.push(end);
      if (trainMean !== null) metrics?.trainLoss.set(trainMean);
      if (valMean !== null) metrics?.valLoss.set(valMean);
      const stepLosses = epochStepLosses;
      const started = epochStartedAt;
      // the epoch is complete: checkpoint state refers to the next epoch
      epoch += 1;
      iteration = 0;
      epochStepLosses = [];
      epochStartedAt = null;
      const score = valMean ?? trainMean;
      const isBest = score !== null && (bestVal === null || score < bestVal);
      if (isBest) bestVal = score;
      // the epoch's log line goes first: a resume from an older checkpoint drops it (truncateJsonl), a resume from
      // this epoch's checkpoint finds it
      if (isChief) await appendFile(join(run.outputDir, JSONL_LOG), JSON.stringify({ epoch: epoch - 1, train_loss: trainMean, val_loss: valMean, lr, epoch_time_s: end - started, global_step: globalStep, nonfinite_total: guard.total, step_losses: stepLosses, val_step_losses: valLosses, time: new Date(end * 1000).toISOString() }) + "\n");
      await checkpoint("latest");
      if (isBest) await checkpoint("best");
      if (isChief) await writeProgressPng(join(run.outputDir, "progress.png"), run.runName ?? run.trainerName, logging);
      log.info({ epoch: epoch - 1, trainLoss: trainMean, valLoss: valMean, lr, seconds: Number((end - started).toFixed(2)), best: isBest }, "Epoch finished");
      epoch -= 1; // the for-loop increments
      const flag = Float32Array.of(run.stop?.requested === true ? 1 : 0);
      await group.allReduceSum(flag);
      if (flag[0]! > 0 && epoch + 1 < o.numEpochs) {
        epoch += 1;
        status = "stopped";
        log.warn({ reason: run.stop?.reason ?? "a peer rank's stop request", epoch }, "Stopped on request at an epoch boundary; checkpoint_latest written");
        break;
      }
    }
    if (status === "completed") {
      epoch = o.numEpochs;
      await checkpoint("final");
      if (isChief) await removeCheckpoint(run.checkpointDir, "latest");
    }
    await group.barrier();
  } finally {
    bar?.stop();
    await Promise.all([trainLoader.close(), valLoader.close()]);
    optimizer.dispose();
  }
  return { status, epochsCompleted: epoch, globalStep, finalTrainLoss: logging.train_losses.at(-1) ?? null, finalValLoss: logging.val_losses.at(-1) ?? null };
}

/** The loaded batch as the method's tensors (the caller disposes them). */
function batchTensors(batch: Batch): MethodBatch {
  const [B, X, Y, Z] = batch.shape;
  return {
    x: tf.tensor5d(batch.data, batch.shape),
    anon: batch.anon === undefined ? undefined : tf.tensor5d(batch.anon, [B, X, Y, Z, 1]),
    target: batch.target === undefined ? undefined : tf.tensor5d(batch.target, batch.shape),
    aux: batch.aux === undefined ? undefined : tf.tensor(batch.aux.data, batch.aux.shape),
  };
}

async function trainStep(
  run: TrainingRun,
  varList: tf.Variable[],
  varNameToKey: ReadonlyMap<string, string>,
  batch: Batch,
  seed: number,
  gradClip: number | null,
  check: (loss: number, norm: number) => boolean,
  optimizer: Optimizer,
  group: ProcessGroup,
  share: number,
): Promise<{ loss: number; norm: number; stop: boolean }> {
  const mb = batchTensors(batch);
  const { value, grads } = valueAndGrads(() => run.method.loss(run.network, mb, { training: true, seed }), varList);
  tf.dispose([mb.x, mb.anon ?? [], mb.target ?? [], mb.aux ?? []]);
  const named = new Map<string, tf.Tensor>();
  for (const [vname, g] of Object.entries(grads)) named.set(varNameToKey.get(vname) ?? vname, g);
  let loss = value.dataSync()[0]!;
  value.dispose();
  let stop = run.stop?.requested === true;
  if (group.worldSize > 1) {
    // one all-reduce per step: [grads · share ..., loss · share, stop flag]
    const names = [...named.keys()];
    const sizes = names.map((n) => named.get(n)!.size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const buf = new Float32Array(total + 2);
    let off = 0;
    names.forEach((n, i) => {
      const g = named.get(n)!;
      const d = g.dataSync();
      for (let k = 0; k < d.length; k++) buf[off + k] = d[k]! * share;
      off += sizes[i]!;
      g.dispose();
    });
    buf[total] = loss * share;
    buf[total + 1] = stop ? 1 : 0;
    await group.allReduceSum(buf);
    off = 0;
    const shapes = new Map(names.map((n) => [n, run.network.weights.get(n)?.shape ?? [sizes[names.indexOf(n)]!]]));
    named.clear();
    names.forEach((n, i) => {
      named.set(n, tf.tensor(buf.subarray(off, off + sizes[i]!), shapes.get(n)));
      off += sizes[i]!;
    });
    loss = buf[total]!;
    stop = buf[total + 1]! > 0;
  }
  const { grads: clipped, norm } = clipByGlobalNorm(named, gradClip ?? undefined);
  try {
    if (check(loss, norm)) optimizer.step(run.network.weights, clipped);
  } finally {
    tf.dispose([...named.values(), ...clipped.values()]);
  }
  return { loss, norm, stop };
}

/** Make every rank start from rank 0's weights (after init or resume). */
async function broadcastWeights(net: Network, group: ProcessGroup): Promise<void> {
  const vars = [...net.weights.values()];
  const total = vars.reduce((a, v) => a + v.size, 0);
  const buf = new Float32Array(total);
  let off = 0;
  for (const v of vars) {
    buf.set(v.dataSync(), off);
    off += v.size;
  }
  await group.broadcast(buf, 0);
  off = 0;
  for (const v of vars) {
    const t = tf.tensor(buf.subarray(off, off + v.size), v.shape);
    v.assign(t);
    t.dispose();
    off += v.size;
  }
}

/** Drop JSONL lines of epochs ≥ `epochs` (written after the checkpoint a resumed run restarts from). */
async function truncateJsonl(file: string, epochs: number): Promise<void> {
  if (!existsSync(file)) return;
  const lines = (await readFile(file, "utf8")).split("\n").filter((l) => l.trim() !== "");
  const keep = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { epoch: number }).epoch < epochs;
    } catch {
      return false;
    }
  });
  await writeFileAtomic(file, keep.map((l) => l + "\n").join(""));
}

/**
 * A run killed after its last epoch's checkpoint_latest, before checkpoint_final: write what the end of `train` would
 * have written (checkpoint_final from the resumed state, progress.png) and remove checkpoint_latest.
 */
async function completeFinishedRun(run: TrainingRun, from: { file: string; meta: CheckpointMeta }, optimizer: Optimizer, logging: TrainingLogLists): Promise<void> {
  const net = run.network;
  const extra = { ...networkMeta(net), "ssl3d.epoch": String(from.meta.current_epoch), "ssl3d.method": run.trainerName };
  await saveCheckpoint(checkpointPath(run.checkpointDir, "final"), { ...from.meta, saved_at: Date.now() / 1000 }, torchStateDict(net, { aliases: false }), await optimizer.exportState(), extra);
  await writeProgressPng(join(run.outputDir, "progress.png"), run.runName ?? run.trainerName, logging);
  await removeCheckpoint(run.checkpointDir, "latest");
  run.logger.info({ from: from.file, epoch: from.meta.current_epoch }, "All epochs were completed before the interruption; wrote checkpoint_final and progress.png");
}

/** Remove `.<file>.tmp-<pid>-<hex>` leftovers of the checkpoint, progress-plot and log writes of a killed run. */
async function removeTrainingTemps(outputDir: string, checkpointDir: string, log: Logger): Promise<void> {
  const checkpoints = (["latest", "best", "final"] as const).map((k) => basename(checkpointPath(checkpointDir, k)));
  const removed = [...(await removeStaleTemps(checkpointDir, checkpoints)), ...(await removeStaleTemps(outputDir, ["progress.png", JSONL_LOG]))];
  if (removed.length > 0) log.info({ removed }, "Removed temporary files of an interrupted write");
}
