/**
 * The training state as one plain object: everything a resumed run needs to continue the uninterrupted run's loss
 * sequence (ADR 0021, ADR 0077). A checkpoint stores it in its `ssl3d-checkpoint/1` metadata (the counters, loggers,
 * RNG stream positions) and tensors (the optimizer slots); `checkpointMeta` and `stateFromCheckpoint` are the two
 * directions of that mapping, so the file format is unchanged by the Trainer.
 */
import type { LoaderState } from "../data/loader.js";
import { CHECKPOINT_FORMAT, type Checkpoint, type CheckpointMeta, type TrainingLogLists } from "./checkpoint.js";
import type { OptimizerState } from "./optim.js";

/** The counters the loop advances; with the optimizer state and the loader positions they make a `TrainingState`. */
export interface TrainingProgress {
  /** Completed epochs (upstream `current_epoch`); during an epoch, its index. */
  epoch: number;
  /** Completed iterations of the running epoch (non-zero in a checkpoint only after a mid-epoch stop). */
  iteration: number;
  /** Completed optimizer steps (skipped non-finite steps count). */
  globalStep: number;
  /** Lowest epoch score so far: the validation mean, else the training mean (upstream `_best_ema`). */
  bestLoss: number | null;
  /** Step losses of the running epoch (`null` for a non-finite step). */
  epochStepLosses: (number | null)[];
  /** Wall-clock start of the running epoch (seconds), carried across a mid-epoch stop. */
  epochStartedAt: number | null;
  /** Upstream's per-epoch lists (losses, learning rates, timestamps). */
  logging: TrainingLogLists;
  /** Non-finite steps skipped so far. */
  nonFiniteTotal: number;
}

export interface TrainingState extends TrainingProgress {
  /** The run seed and the loaders' next batch indices (batch i of a stream depends only on seed, stream and i). */
  readonly rng: { readonly seed: number; readonly trainLoader: LoaderState; readonly valLoader: LoaderState };
  /** Step count, learning rate, hyper-parameters and slots (momentum / Adam moments) by parameter. */
  readonly optimizer: OptimizerState;
}

/** What a checkpoint records besides the state: who wrote it, how to rebuild the run, what it adapts to. */
export interface CheckpointContext {
  readonly trainerName: string;
  readonly initArgs: Record<string, unknown>;
  readonly adaptationPlan: unknown;
}

export function freshProgress(): TrainingProgress {
  return {
    epoch: 0,
    iteration: 0,
    globalStep: 0,
    bestLoss: null,
    epochStepLosses: [],
    epochStartedAt: null,
    logging: { train_losses: [], val_losses: [], lrs: [], epoch_start_timestamps: [], epoch_end_timestamps: [] },
    nonFiniteTotal: 0,
  };
}

/** The checkpoint metadata of `s` (the optimizer slots go into the checkpoint's tensors, see `saveCheckpoint`). */
export function checkpointMeta(s: TrainingState, ctx: CheckpointContext, savedAt = Date.now() / 1000): CheckpointMeta {
  return {
    format: CHECKPOINT_FORMAT,
    layout: "torch",
    trainer_name: ctx.trainerName,
    current_epoch: s.epoch,
    iteration: s.iteration,
    global_step: s.globalStep,
    epoch_step_losses: s.epochStepLosses,
    epoch_started_at: s.epochStartedAt,
    logging: s.logging,
    _best_ema: s.bestLoss,
    nonfinite_total: s.nonFiniteTotal,
    rng: { seed: s.rng.seed, train_loader: s.rng.trainLoader, val_loader: s.rng.valLoader },
    optimizer: { kind: s.optimizer.kind, step: s.optimizer.step, lr: s.optimizer.lr, hyper: s.optimizer.hyper },
    init_args: ctx.initArgs,
    nnssl_adaptation_plan: ctx.adaptationPlan,
    saved_at: savedAt,
  };
}

/**
 * The state a checkpoint resumes to. Like upstream, the per-epoch lists are truncated to the shortest list (and to
 * `current_epoch`); the running epoch's iteration, step losses and start time only count when nothing was truncated.
 */
export function stateFromCheckpoint(ck: Checkpoint): TrainingState {
  const m = ck.meta;
  const len = Math.min(m.current_epoch, ...Object.values(m.logging).map((l) => l.length));
  const iteration = len === m.current_epoch ? m.iteration : 0;
  return {
    epoch: len,
    iteration,
    globalStep: m.global_step,
    bestLoss: m._best_ema,
    epochStepLosses: iteration > 0 ? [...m.epoch_step_losses] : [],
    epochStartedAt: iteration > 0 ? m.epoch_started_at : null,
    logging: {
      train_losses: m.logging.train_losses.slice(0, len),
      val_losses: m.logging.val_losses.slice(0, len),
      lrs: m.logging.lrs.slice(0, len),
      epoch_start_timestamps: m.logging.epoch_start_timestamps.slice(0, len),
      epoch_end_timestamps: m.logging.epoch_end_timestamps.slice(0, len),
    },
    nonFiniteTotal: m.nonfinite_total,
    rng: { seed: m.rng.seed, trainLoader: m.rng.train_loader, valLoader: m.rng.val_loader },
    optimizer: ck.optimizerState,
  };
}
