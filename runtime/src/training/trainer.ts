/**
 * The Trainer (ADR 0077; upstream: nnssl `AbstractBaseTrainer.run_training` / `train_step` in
 * `src/nnssl/training/nnsslTrainer/AbstractTrainer.py`): epochs × iterations of (batch → method loss → gradients → data-parallel all-reduce →
 * global-norm clip → non-finite guard → optimizer step), then validation iterations without gradients and the
 * epoch's mean losses. It owns the `TrainingState` (counters here, optimizer slots in the optimizer, stream positions
 * in the loaders; `state()` assembles it), decides stops through one `StopProtocol`, and reports to registered
 * `TrainerListener`s, which write the logs, checkpoints, plots and metrics. `loop.ts` wires the default listeners.
 *
 * Determinism: batch i of each loader stream depends only on (seed, stream, i); the masks of training step g use
 * `deriveSeed(seed, "mask", g)`, validation step (e, i) `deriveSeed(seed, "val-mask", e, i)`; so a Trainer restored
 * from a state continues the uninterrupted run's loss sequence.
 */
import * as tf from "@tensorflow/tfjs";
import { mkdir } from "node:fs/promises";
import { MAE_AUGMENT, NO_AUGMENT } from "../data/augment.js";
import type { Batch } from "../data/batch.js";
import { validationTransform } from "../data/batch-transforms.js";
import { DataLoader } from "../data/loader.js";
import { initialPatchSize } from "../data/patch.js";
import { deriveSeed } from "../data/rng.js";
import type { TrainingImage } from "../data/source.js";
import { dataParallel, type DataParallel } from "../distributed/data-parallel.js";
import { SingleProcessGroup, type ProcessGroup } from "../distributed/process-group.js";
import { TrainingError } from "../errors.js";
import type { MethodBatch, PretrainMethod } from "../methods/method.js";
import type { Network } from "../models/architecture.js";
import type { Logger } from "../observability/log.js";
import type { TrainingMetrics } from "../observability/training-metrics.js";
import { valueAndGrads } from "./backprop.js";
import type { EpochEndEvent, StopEvent, TrainerListener, TrainerView } from "./listeners.js";
import { AdamW, NonFiniteGuard, SgdNesterov, clipByGlobalNorm, type Optimizer } from "./optim.js";
import type { TrainerOptions } from "./registry.js";
import { learningRate } from "./schedules.js";
import { freshProgress, type TrainingProgress, type TrainingState } from "./state.js";
import { StopProtocol, type StopReason, type StopSignal } from "./stop.js";

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
  /** Stop after the step during which this time (milliseconds since the epoch) passes, like a stop request. */
  readonly deadline?: number;
  readonly onStep?: (s: {
    epoch: number;
    iteration: number;
    globalStep: number;
    loss: number;
    skipped: boolean;
  }) => void;
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
  /** Why a stopped run stopped. */
  readonly stopReason?: StopReason;
}

function makeOptimizer(o: TrainerOptions): Optimizer {
  const c = o.optimizer;
  return c.kind === "sgd-nesterov" ? new SgdNesterov(c) : new AdamW(c);
}

export function optimizerSlotNames(o: Optimizer): string[] {
  return o.kind === "sgd-nesterov" ? ["momentum_buffer"] : ["exp_avg", "exp_avg_sq"];
}

function mean(xs: readonly (number | null)[]): number | null {
  const f = xs.filter((v): v is number => v !== null && Number.isFinite(v));
  return f.length === 0 ? null : f.reduce((a, b) => a + b, 0) / f.length;
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

/** The training and validation loaders of a run, starting at the given stream positions (ADR 0040 data needs). */
function makeLoaders(
  run: TrainingRun,
  rank: number,
  trainStart: number,
  valStart: number,
): { train: DataLoader; val: DataLoader } {
  const o = run.options;
  const F = o.patchSize;
  const needs = run.method.data ?? {};
  const common = {
    batchSize: o.batchSize * (needs.imagesPerSample ?? 1),
    patchSize: F,
    withAnon: run.method.needsAnon,
    seed: o.seed,
    numWorkers: o.loaderWorkers,
    prefetch: o.prefetch,
    ...(needs.crop === undefined ? {} : { crop: needs.crop }),
    ...(run.readerModule === undefined ? {} : { readerModule: run.readerModule }),
  };
  const train = new DataLoader({
    ...common,
    images: run.trainImages,
    loaderPatchSize: o.augment ? initialPatchSize(F) : F,
    augment: o.augment ? MAE_AUGMENT : NO_AUGMENT,
    ...(needs.trainIntensity === undefined ? {} : { intensity: needs.trainIntensity }),
    ...(needs.transform === undefined ? {} : { transform: needs.transform }),
    stream: rank === 0 ? "train" : `train-r${rank}`,
    startIndex: trainStart,
  });
  const valTransform = validationTransform(needs.transform);
  const val = new DataLoader({
    ...common,
    images: run.valImages.length > 0 ? run.valImages : run.trainImages,
    loaderPatchSize: F,
    augment: NO_AUGMENT,
    ...(valTransform === undefined ? {} : { transform: valTransform }),
    stream: rank === 0 ? "val" : `val-r${rank}`,
    prefetch: Math.max(1, Math.floor(o.prefetch / 2)),
    startIndex: valStart,
  });
  return { train, val };
}

interface StepOutcome {
  readonly loss: number;
  readonly norm: number;
  /** The group's stop decision (all-reduced with the gradients). */
  readonly stop: boolean;
  readonly diverged?: TrainingError;
}

export class Trainer implements TrainerView {
  readonly network: Network;
  private readonly listeners: TrainerListener[] = [];
  private readonly optimizer: Optimizer;
  private readonly dp: DataParallel;
  private readonly guard: NonFiniteGuard;
  private readonly stops: StopProtocol;
  private readonly varList: tf.Variable[];
  private readonly varNameToKey = new Map<string, string>();
  private readonly shapes = new Map<string, readonly number[]>();
  private progress_: TrainingProgress = freshProgress();
  private loaderStart = { train: 0, val: 0 };
  private loaders: { train: DataLoader; val: DataLoader } | undefined;

  constructor(readonly run: TrainingRun) {
    const o = run.options;
    this.network = run.network;
    for (const [k, v] of run.network.weights) {
      this.varNameToKey.set(v.name, k);
      this.shapes.set(k, v.shape);
    }
    this.varList = [...run.network.weights.values()];
    this.optimizer = makeOptimizer(o);
    const group = run.group ?? new SingleProcessGroup();
    // this rank's gradients and loss weigh share/total in the all-reduced sums
    this.dp = dataParallel(group, o.batchSize / (run.globalBatchSize ?? o.batchSize * group.worldSize));
    this.guard = new NonFiniteGuard(o.maxNonFiniteSteps);
    this.stops = new StopProtocol(run.stop, run.deadline);
  }

  get rank(): number {
    return this.dp.rank;
  }

  get progress(): Readonly<TrainingProgress> {
    return this.progress_;
  }

  get trainLoader(): DataLoader {
    if (this.loaders === undefined) throw new Error("the Trainer's loaders exist only during fit()");
    return this.loaders.train;
  }

  get slotNames(): string[] {
    return optimizerSlotNames(this.optimizer);
  }

  /** Register a listener; listeners are called in registration order. */
  on(l: TrainerListener): this {
    this.listeners.push(l);
    return this;
  }

  /** Continue from `s` (the network's weights are restored separately, from the same checkpoint). */
  restore(s: TrainingState): void {
    this.optimizer.importState(s.optimizer, this.network.weights);
    const { rng: _rng, optimizer: _optimizer, ...progress } = s;
    this.progress_ = {
      ...progress,
      epochStepLosses: [...progress.epochStepLosses],
      logging: structuredClone(progress.logging),
    };
    this.guard.total = s.nonFiniteTotal;
    this.loaderStart = { train: s.rng.trainLoader.nextIndex, val: s.rng.valLoader.nextIndex };
  }

  async state(): Promise<TrainingState> {
    const streams = this.loaders;
    const p = this.progress_;
    const rank = this.dp.rank;
    return {
      ...p,
      epochStepLosses: [...p.epochStepLosses],
      logging: structuredClone(p.logging),
      nonFiniteTotal: this.guard.total,
      rng: {
        seed: this.run.options.seed,
        trainLoader: streams?.train.state() ?? {
          stream: rank === 0 ? "train" : `train-r${rank}`,
          nextIndex: this.loaderStart.train,
        },
        valLoader: streams?.val.state() ?? {
          stream: rank === 0 ? "val" : `val-r${rank}`,
          nextIndex: this.loaderStart.val,
        },
      },
      optimizer: await this.optimizer.exportState(),
    };
  }

  /** Run the remaining epochs. A divergence rejects with its TrainingError after the listeners saw the stop. */
  async fit(): Promise<TrainingResult> {
    this.loaders = makeLoaders(this.run, this.dp.rank, this.loaderStart.train, this.loaderStart.val);
    await mkdir(this.run.outputDir, { recursive: true });
    await mkdir(this.run.checkpointDir, { recursive: true });
    try {
      await this.emit((l) => l.onStart?.(this));
      await this.loaders.train.warmUp();
      await this.dp.broadcastWeights(this.varList);
      let stop: StopReason | undefined;
      while (stop === undefined && this.progress_.epoch < this.run.options.numEpochs) stop = await this.runEpoch();
      if (stop === undefined) {
        await this.emit((l) => l.onComplete?.(this));
      } else {
        const e: StopEvent = { reason: stop, midEpoch: this.progress_.iteration > 0 };
        await this.emit((l) => l.onStop?.(e, this));
        if (stop.kind === "divergence") throw stop.error;
      }
      await this.dp.barrier();
      return this.result(stop);
    } finally {
      await this.emit((l) => l.onClose?.());
      await Promise.all([this.loaders.train.close(), this.loaders.val.close()]);
    }
  }

  result(stop?: StopReason): TrainingResult {
    const p = this.progress_;
    return {
      status: stop === undefined ? "completed" : "stopped",
      epochsCompleted: p.epoch,
      globalStep: p.globalStep,
      finalTrainLoss: p.logging.train_losses.at(-1) ?? null,
      finalValLoss: p.logging.val_losses.at(-1) ?? null,
      ...(stop === undefined ? {} : { stopReason: stop }),
    };
  }

  dispose(): void {
    this.optimizer.dispose();
  }

  private async emit(call: (l: TrainerListener) => Promise<void> | void): Promise<void> {
    for (const l of this.listeners) await call(l);
  }

  /** One epoch (or its rest); the reason when the group decided to stop. */
  private async runEpoch(): Promise<StopReason | undefined> {
    const o = this.run.options;
    const p = this.progress_;
    const lr = learningRate(o.schedule, o.optimizer.lr, p.epoch, o.numEpochs);
    this.optimizer.lr = lr;
    p.epochStartedAt ??= Date.now() / 1000;
    await this.emit((l) =>
      l.onEpochStart?.({ epoch: p.epoch, lr, iteration: p.iteration, itersPerEpoch: o.itersPerEpoch }, this),
    );
    while (p.iteration < o.itersPerEpoch) {
      const stop = await this.trainIteration();
      if (stop !== undefined && (stop.kind === "divergence" || p.iteration < o.itersPerEpoch)) return stop;
    }
    const valLosses = await this.validate(p.epoch);
    await this.endEpoch(lr, valLosses);
    // every rank votes (the collective sequence stays the same on all ranks); the last epoch completes anyway
    const local = this.stops.requested();
    const stop = await this.dp.anyRank(local);
    if (!stop || p.epoch >= o.numEpochs) return undefined;
    if (!local) this.stops.peer();
    return this.stops.reason();
  }

  /** One training step; the reason when the group decided to stop after it. */
  private async trainIteration(): Promise<StopReason | undefined> {
    const p = this.progress_;
    const loader = this.trainLoader;
    const waitStart = performance.now();
    const batch = await loader.next();
    const loaderWaitSeconds = (performance.now() - waitStart) / 1000;
    const loaderQueueDepth = loader.queueDepth();
    const t0 = performance.now();
    const r = await this.step(batch, deriveSeed(this.run.options.seed, "mask", p.globalStep));
    if (r.diverged !== undefined) return { kind: "divergence", error: r.diverged };
    const stepSeconds = (performance.now() - t0) / 1000;
    const skipped = !Number.isFinite(r.loss) || !Number.isFinite(r.norm);
    p.globalStep += 1;
    p.epochStepLosses.push(Number.isFinite(r.loss) ? r.loss : null);
    p.nonFiniteTotal = this.guard.total;
    const samples = batch.keys.length / (this.run.method.data?.imagesPerSample ?? 1);
    const e = {
      epoch: p.epoch,
      iteration: p.iteration,
      globalStep: p.globalStep,
      loss: r.loss,
      gradNorm: r.norm,
      skipped,
      samples,
      loaderWaitSeconds,
      loaderQueueDepth,
      stepSeconds,
    };
    await this.emit((l) => l.onStep?.(e, this));
    // Yield one macrotask turn per step: with batches always ready the loop would otherwise run on microtasks only,
    // starving signal handlers (graceful stop) and the /metrics server.
    await new Promise<void>((resolve) => setImmediate(resolve));
    p.iteration += 1;
    // with several ranks only the all-reduced flag counts (a request seen by one rank between steps must not make
    // it leave the collective sequence alone)
    const stop = this.dp.worldSize > 1 ? r.stop : this.stops.requested();
    return stop ? this.stops.reason() : undefined;
  }

  private async step(batch: Batch, seed: number): Promise<StepOutcome> {
    const net = this.network;
    const mb = batchTensors(batch);
    const { value, grads } = valueAndGrads(() => this.run.method.loss(net, mb, { training: true, seed }), this.varList);
    tf.dispose([mb.x, mb.anon ?? [], mb.target ?? [], mb.aux ?? []]);
    const named = new Map<string, tf.Tensor>();
    for (const [vname, g] of Object.entries(grads)) named.set(this.varNameToKey.get(vname) ?? vname, g);
    const localLoss = value.dataSync()[0]!;
    value.dispose();
    const local = this.stops.requested();
    const r = await this.dp.reduceStep(named, localLoss, local, this.shapes);
    if (r.stop && !local) this.stops.peer();
    const { grads: clipped, norm } = clipByGlobalNorm(r.grads, this.run.options.gradClip ?? undefined);
    try {
      if (this.guard.check(r.loss, norm, { epoch: this.progress_.epoch, step: this.progress_.globalStep }))
        this.optimizer.step(net.weights, clipped);
    } catch (err) {
      if (err instanceof TrainingError) return { loss: r.loss, norm, stop: true, diverged: err };
      throw err;
    } finally {
      tf.dispose([...r.grads.values(), ...clipped.values()]);
    }
    return { loss: r.loss, norm, stop: r.stop };
  }

  /** The epoch's validation losses (no gradients; masks from `deriveSeed(seed, "val-mask", epoch, i)`). */
  private async validate(epoch: number): Promise<number[]> {
    const o = this.run.options;
    const loader = this.loaders!.val;
    const out: number[] = [];
    for (let i = 0; i < o.valIters; i++) {
      const batch = await loader.next();
      const seed = deriveSeed(o.seed, "val-mask", epoch, i);
      const l = tf.tidy(() => this.run.method.loss(this.network, batchTensors(batch), { training: false, seed }));
      const v = (await l.data())[0]!;
      l.dispose();
      out.push(await this.dp.reduceValue(v));
    }
    return out;
  }

  /** Record the finished epoch, advance the state to the next one and tell the listeners. */
  private async endEpoch(lr: number, valLosses: number[]): Promise<void> {
    const p = this.progress_;
    const trainMean = mean(p.epochStepLosses);
    const valMean = this.run.options.valIters > 0 ? mean(valLosses) : null;
    const endedAt = Date.now() / 1000;
    const startedAt = p.epochStartedAt ?? endedAt;
    p.logging.train_losses.push(trainMean);
    p.logging.val_losses.push(valMean);
    p.logging.lrs.push(lr);
    p.logging.epoch_start_timestamps.push(startedAt);
    p.logging.epoch_end_timestamps.push(endedAt);
    const score = valMean ?? trainMean;
    const isBest = score !== null && (p.bestLoss === null || score < p.bestLoss);
    const e: EpochEndEvent = {
      epoch: p.epoch,
      trainLoss: trainMean,
      valLoss: valMean,
      lr,
      startedAt,
      endedAt,
      stepLosses: p.epochStepLosses,
      valStepLosses: valLosses,
      globalStep: p.globalStep,
      nonFiniteTotal: this.guard.total,
      isBest,
    };
    // the epoch is complete: the state (and its checkpoints) refer to the next epoch
    p.epoch += 1;
    p.iteration = 0;
    p.epochStepLosses = [];
    p.epochStartedAt = null;
    if (isBest) p.bestLoss = score;
    await this.emit((l) => l.onEpochEnd?.(e, this));
  }
}
