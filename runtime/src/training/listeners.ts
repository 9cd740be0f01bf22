/**
 * What the Trainer reports, and the listeners that turn it into files, logs and metrics (ADR 0077). The Trainer
 * calls listeners in registration order and awaits each, so order is a contract: the epoch's JSONL line is written
 * before its checkpoint (a resume from an older checkpoint drops the line, a resume from this one finds it), then
 * `checkpoint_best`, then `progress.png`, then the log line.
 */
import cliProgress from "cli-progress";
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import type { DataLoader } from "../data/loader.js";
import type { Network } from "../models/architecture.js";
import { networkMeta, torchStateDict } from "../models/checkpoint-export.js";
import type { Logger } from "../observability/log.js";
import { writeProgressPng } from "../observability/progress-png.js";
import type { TrainingMetrics } from "../observability/training-metrics.js";
import { checkpointPath, removeCheckpoint, saveCheckpoint, type CheckpointKind } from "./checkpoint.js";
import { checkpointMeta, type CheckpointContext, type TrainingProgress, type TrainingState } from "./state.js";
import { describeStop, type StopReason } from "./stop.js";
import { FOLD_FILES } from "../config/layout.js";

export const JSONL_LOG = FOLD_FILES.trainingLog;

export interface StepEvent {
  readonly epoch: number;
  /** Index of this iteration in its epoch. */
  readonly iteration: number;
  /** Steps completed, this one included. */
  readonly globalStep: number;
  /** The (all-reduced) loss; non-finite for a skipped step. */
  readonly loss: number;
  readonly gradNorm: number;
  /** The step was not applied (non-finite loss or gradient norm). */
  readonly skipped: boolean;
  /** Network samples of this rank's batch. */
  readonly samples: number;
  readonly loaderWaitSeconds: number;
  readonly loaderQueueDepth: number;
  readonly stepSeconds: number;
}

export interface EpochStartEvent {
  readonly epoch: number;
  readonly lr: number;
  /** First iteration to run (non-zero when resuming inside the epoch). */
  readonly iteration: number;
  readonly itersPerEpoch: number;
}

export interface EpochEndEvent {
  /** Index of the finished epoch (the state's `epoch` already counts it). */
  readonly epoch: number;
  readonly trainLoss: number | null;
  readonly valLoss: number | null;
  readonly lr: number;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly stepLosses: readonly (number | null)[];
  readonly valStepLosses: readonly number[];
  readonly globalStep: number;
  readonly nonFiniteTotal: number;
  /** A new lowest score (validation mean, else training mean). */
  readonly isBest: boolean;
}

export interface StopEvent {
  readonly reason: StopReason;
  /** Stopped inside an epoch (after a step) rather than at an epoch boundary. */
  readonly midEpoch: boolean;
}

/** What listeners may read of the Trainer. */
export interface TrainerView {
  readonly progress: Readonly<TrainingProgress>;
  readonly network: Network;
  readonly trainLoader: DataLoader;
  /** The whole state, optimizer slots included (for checkpoints). */
  state(): Promise<TrainingState>;
}

type Awaitable = Promise<void> | void;

export interface TrainerListener {
  /** Before the loaders warm up. */
  onStart?(t: TrainerView): Awaitable;
  onEpochStart?(e: EpochStartEvent, t: TrainerView): Awaitable;
  onStep?(e: StepEvent, t: TrainerView): Awaitable;
  onEpochEnd?(e: EpochEndEvent, t: TrainerView): Awaitable;
  /** The run stops early (before the final barrier; for a divergence, before the error is thrown). */
  onStop?(e: StopEvent, t: TrainerView): Awaitable;
  /** All epochs done. */
  onComplete?(t: TrainerView): Awaitable;
  /** Always, last (after a failure too). */
  onClose?(): Awaitable;
}

const fixed = (x: number): string => (Number.isFinite(x) ? x.toFixed(4) : String(x));

/** Structured log lines: epoch start and end, skipped steps, stops. */
export function logListener(log: Logger): TrainerListener {
  return {
    onEpochStart: (e) => {
      log.info({ epoch: e.epoch, lr: e.lr }, "Epoch started");
    },
    onStep: (s) => {
      if (s.skipped)
        log.warn(
          { epoch: s.epoch, iteration: s.iteration, globalStep: s.globalStep - 1, loss: s.loss, gradNorm: s.gradNorm },
          "Skipped a non-finite step",
        );
    },
    onEpochEnd: (e) => {
      log.info(
        {
          epoch: e.epoch,
          trainLoss: e.trainLoss,
          valLoss: e.valLoss,
          lr: e.lr,
          seconds: Number((e.endedAt - e.startedAt).toFixed(2)),
          best: e.isBest,
        },
        "Epoch finished",
      );
    },
    onStop: (e, t) => {
      const { epoch, iteration, globalStep } = t.progress;
      if (e.reason.kind === "divergence") return; // the error itself reaches the caller
      if (e.midEpoch)
        log.warn(
          { reason: describeStop(e.reason), epoch, iteration, globalStep },
          "Stopped on request after the current step; checkpoint_latest written",
        );
      else
        log.warn(
          { reason: describeStop(e.reason), epoch },
          "Stopped on request at an epoch boundary; checkpoint_latest written",
        );
    },
  };
}

/** One JSON line per finished epoch in `<outputDir>/training_log.jsonl` (rank 0 only). */
export function epochLogListener(outputDir: string): TrainerListener {
  return {
    onEpochEnd: async (e) => {
      const line = {
        epoch: e.epoch,
        train_loss: e.trainLoss,
        val_loss: e.valLoss,
        lr: e.lr,
        epoch_time_s: e.endedAt - e.startedAt,
        global_step: e.globalStep,
        nonfinite_total: e.nonFiniteTotal,
        step_losses: e.stepLosses,
        val_step_losses: e.valStepLosses,
        time: new Date(e.endedAt * 1000).toISOString(),
      };
      await appendFile(join(outputDir, JSONL_LOG), JSON.stringify(line) + "\n");
    },
  };
}

/** Prometheus gauges, counters and histograms of the loop. */
export function metricsListener(metrics: TrainingMetrics): TrainerListener {
  return {
    onStart: (t) => {
      t.trainLoader.onBatch = (n) => {
        metrics.loaderPatches.inc(n);
      };
    },
    onEpochStart: (e) => {
      metrics.learningRate.set(e.lr);
      metrics.epoch.set(e.epoch);
    },
    onStep: (s) => {
      metrics.loaderWait.observe(s.loaderWaitSeconds);
      metrics.loaderQueueDepth.set(s.loaderQueueDepth);
      if (s.skipped) metrics.nonFinite.inc();
      metrics.stepDuration.observe(s.stepSeconds);
      metrics.globalStep.set(s.globalStep);
      metrics.samples.inc(s.samples);
      if (Number.isFinite(s.loss)) metrics.trainLoss.set(s.loss);
    },
    onEpochEnd: (e) => {
      if (e.trainLoss !== null) metrics.trainLoss.set(e.trainLoss);
      if (e.valLoss !== null) metrics.valLoss.set(e.valLoss);
    },
  };
}

export interface CheckpointTarget extends CheckpointContext {
  readonly checkpointDir: string;
  readonly logger: Logger;
  readonly metrics?: TrainingMetrics;
}

/** Write a checkpoint of the Trainer's current state. */
export async function writeCheckpoint(t: TrainerView, target: CheckpointTarget, kind: CheckpointKind): Promise<void> {
  const state = await t.state();
  const meta = checkpointMeta(state, target);
  const file = checkpointPath(target.checkpointDir, kind);
  const extra = { ...networkMeta(t.network), "ssl3d.epoch": String(state.epoch), "ssl3d.method": target.trainerName };
  await saveCheckpoint(file, meta, torchStateDict(t.network, { aliases: false }), state.optimizer, extra);
  target.metrics?.lastCheckpoint.set(meta.saved_at);
  target.logger.info(
    { file, epoch: state.epoch, iteration: state.iteration, globalStep: state.globalStep },
    "Saved checkpoint",
  );
}

/**
 * Checkpoints (rank 0 only): `latest` after every epoch and on a stop request, `best` on a new lowest score, `final`
 * at the end, after which `latest` is removed. A divergence writes nothing (the last checkpoint stays the resume point).
 */
export function checkpointListener(target: CheckpointTarget): TrainerListener {
  return {
    onEpochEnd: async (e, t) => {
      await writeCheckpoint(t, target, "latest");
      if (e.isBest) await writeCheckpoint(t, target, "best");
    },
    onStop: async (e, t) => {
      if (e.midEpoch && e.reason.kind !== "divergence") await writeCheckpoint(t, target, "latest");
    },
    onComplete: async (t) => {
      await writeCheckpoint(t, target, "final");
      await removeCheckpoint(target.checkpointDir, "latest");
    },
  };
}

/** `progress.png` after every epoch (rank 0 only). */
export function progressPlotListener(file: string, title: string): TrainerListener {
  return {
    onEpochEnd: async (_e, t) => {
      await writeProgressPng(file, title, t.progress.logging);
    },
  };
}

/** A terminal progress bar of the running epoch. */
export function progressBarListener(stream: NodeJS.WriteStream = process.stderr): TrainerListener {
  const bar = new cliProgress.SingleBar(
    { format: "epoch {epoch} |{bar}| {value}/{total} loss {loss} {eta_formatted}", stream, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const stop = (): void => {
    bar.stop();
  };
  return {
    onEpochStart: (e) => {
      bar.start(e.itersPerEpoch, e.iteration, { epoch: e.epoch, loss: "-" });
    },
    onStep: (s) => {
      bar.update(s.iteration + 1, { epoch: s.epoch, loss: fixed(s.loss) });
    },
    onEpochEnd: stop,
    onStop: stop,
    onClose: stop,
  };
}

/** The embedder's per-step callback (tests, `TrainArgs.onStep`). */
export function stepCallbackListener(
  onStep: (s: { epoch: number; iteration: number; globalStep: number; loss: number; skipped: boolean }) => void,
): TrainerListener {
  return {
    onStep: (s) => {
      onStep({ epoch: s.epoch, iteration: s.iteration, globalStep: s.globalStep, loss: s.loss, skipped: s.skipped });
    },
  };
}
