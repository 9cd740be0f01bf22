/** Names of the training metrics rank 0 serves on /metrics (runtime/src/observability/training-metrics.ts) that the operator reads. */
export const TRAINING_METRICS = {
  trainLoss: "pretrain_train_loss",
  valLoss: "pretrain_val_loss",
  learningRate: "pretrain_learning_rate",
  epoch: "pretrain_epoch",
  globalStep: "pretrain_global_step",
  samples: "pretrain_samples_total",
  stepDuration: "pretrain_step_duration_seconds",
  lastCheckpoint: "pretrain_last_checkpoint_timestamp_seconds",
  nonFiniteSteps: "pretrain_nonfinite_steps_total",
} as const;

/** The operator's per-run state metric: one series per run, value 1 for the current phase. */
export const RUN_STATE_METRIC = "ssl3d_pretrainrun_status_phase";
