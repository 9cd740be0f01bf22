/**
 * `train()`: one run of the Trainer (`trainer.ts`, ADR 0077) with the default listeners. Before the loop it removes
 * leftovers of interrupted writes, resumes from the newest checkpoint (`final` → `latest` → `best`) when asked, and
 * finishes a run that was killed between its last epoch's `checkpoint_latest` and `checkpoint_final`.
 *
 * Files (rank 0 only): checkpoints (`latest` every epoch and on a stop request, `best` on a new lowest validation
 * loss, `final` at the end, after which `latest` is removed), a JSONL line and `progress.png` per epoch. Every rank:
 * Prometheus metrics, log lines and, when asked, a progress bar.
 *
 * A stop request (SIGTERM/SIGUSR1, set by the CLI) or the run's deadline ends the loop after the current step with a
 * mid-epoch `checkpoint_latest`; resuming continues inside that epoch and reproduces the uninterrupted loss sequence.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { removeStaleTemps, writeFileAtomic } from "../io/atomic.js";
import { loadTorchStateDict, networkMeta, torchStateDict } from "../models/checkpoint-export.js";
import type { Logger } from "../observability/log.js";
import { writeProgressPng } from "../observability/progress-png.js";
import {
  checkpointPath,
  findResumeCheckpoint,
  loadCheckpoint,
  removeCheckpoint,
  saveCheckpoint,
  type CheckpointMeta,
} from "./checkpoint.js";
import {
  JSONL_LOG,
  checkpointListener,
  epochLogListener,
  logListener,
  metricsListener,
  progressBarListener,
  progressPlotListener,
  stepCallbackListener,
  type TrainerListener,
} from "./listeners.js";
import { stateFromCheckpoint } from "./state.js";
import { Trainer, type TrainingResult, type TrainingRun } from "./trainer.js";
import { FOLD_FILES, foldFile } from "../config/layout.js";

export { JSONL_LOG } from "./listeners.js";
export type { StopReason, StopSignal } from "./stop.js";
export type { TrainingResult, TrainingRun } from "./trainer.js";

/** The listeners of a CLI run, in the order the files must be written (see `listeners.ts`). */
export function defaultListeners(run: TrainingRun, isChief: boolean): TrainerListener[] {
  const ls: TrainerListener[] = [];
  if (run.metrics !== undefined) ls.push(metricsListener(run.metrics));
  if (run.progressBar === true) ls.push(progressBarListener());
  if (isChief) {
    ls.push(epochLogListener(run.outputDir));
    ls.push(checkpointListener(run));
    ls.push(progressPlotListener(foldFile(run.outputDir, "progress"), run.runName ?? run.trainerName));
  }
  ls.push(logListener(run.logger));
  if (run.onStep !== undefined) ls.push(stepCallbackListener(run.onStep));
  return ls;
}

export async function train(run: TrainingRun): Promise<TrainingResult> {
  const trainer = new Trainer(run);
  const isChief = trainer.rank === 0;
  const log = run.logger;
  try {
    // leftovers of checkpoint/log writes a killed or failed run could not finish (the folder lock makes them stale)
    if (isChief) await removeTrainingTemps(run.outputDir, run.checkpointDir, log);
    const resumedFrom = run.resume ? await resume(run, trainer, isChief) : undefined;
    const p = trainer.progress;
    if (p.epoch === 0 && p.iteration === 0 && isChief) await truncateJsonl(join(run.outputDir, JSONL_LOG), 0); // a fresh run starts a new log
    if (p.epoch >= run.options.numEpochs) {
      if (resumedFrom !== undefined && resumedFrom.file !== checkpointPath(run.checkpointDir, "final") && isChief)
        await completeFinishedRun(run, trainer, resumedFrom);
      else log.info({ epoch: p.epoch }, "Nothing to do: all epochs completed");
      return trainer.result();
    }
    for (const l of defaultListeners(run, isChief)) trainer.on(l);
    return await trainer.fit();
  } finally {
    trainer.dispose();
  }
}

/** Restore the newest checkpoint into the network and the Trainer; undefined when there is none. */
async function resume(
  run: TrainingRun,
  trainer: Trainer,
  isChief: boolean,
): Promise<{ file: string; meta: CheckpointMeta } | undefined> {
  const log = run.logger;
  const file = findResumeCheckpoint(run.checkpointDir);
  if (file === undefined) {
    log.info({ dir: run.checkpointDir }, "No checkpoint to resume from; starting fresh");
    return undefined;
  }
  const ck = loadCheckpoint(file, trainer.slotNames);
  if (ck.meta.trainer_name !== run.trainerName)
    log.warn(
      { file, checkpointTrainer: ck.meta.trainer_name, trainer: run.trainerName },
      "Resuming a checkpoint of another trainer",
    );
  loadTorchStateDict(run.network, ck.weights, file);
  const state = stateFromCheckpoint(ck);
  trainer.restore(state);
  log.info(
    { file, epoch: state.epoch, iteration: state.iteration, globalStep: state.globalStep },
    "Resumed from checkpoint",
  );
  if (isChief) await truncateJsonl(join(run.outputDir, JSONL_LOG), state.epoch);
  return { file, meta: ck.meta };
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
async function completeFinishedRun(
  run: TrainingRun,
  trainer: Trainer,
  from: { file: string; meta: CheckpointMeta },
): Promise<void> {
  const net = run.network;
  const extra = {
    ...networkMeta(net),
    "ssl3d.epoch": String(from.meta.current_epoch),
    "ssl3d.method": run.trainerName,
  };
  const state = await trainer.state();
  await saveCheckpoint(
    checkpointPath(run.checkpointDir, "final"),
    { ...from.meta, saved_at: Date.now() / 1000 },
    torchStateDict(net, { aliases: false }),
    state.optimizer,
    extra,
  );
  await writeProgressPng(foldFile(run.outputDir, "progress"), run.runName ?? run.trainerName, state.logging);
  await removeCheckpoint(run.checkpointDir, "latest");
  run.logger.info(
    { from: from.file, epoch: from.meta.current_epoch },
    "All epochs were completed before the interruption; wrote checkpoint_final and progress.png",
  );
}

/** Remove `.<file>.tmp-<pid>-<hex>` leftovers of the checkpoint, progress-plot and log writes of a killed run. */
async function removeTrainingTemps(outputDir: string, checkpointDir: string, log: Logger): Promise<void> {
  const checkpoints = (["latest", "best", "final"] as const).map((k) => basename(checkpointPath(checkpointDir, k)));
  const removed = [
    ...(await removeStaleTemps(checkpointDir, checkpoints)),
    ...(await removeStaleTemps(outputDir, [FOLD_FILES.progress, JSONL_LOG])),
  ];
  if (removed.length > 0) log.info({ removed }, "Removed temporary files of an interrupted write");
}
