/**
 * `progress.png` in the results folder, redrawn after every epoch: what upstream's `plot_progress_png`
 * (nnssl `src/nnssl/training/logging/nnssl_logger.py`) shows for pre-training — train and validation loss, epoch
 * duration and learning rate per epoch — as three panels with axis names, ticks, a legend and the run's name as the
 * title. Drawn with ECharts and rasterised with resvg (observability/charts.ts, ADR 0054).
 */
import { writeFileAtomic } from "../io/atomic.js";
import type { TrainingLogLists } from "../training/checkpoint.js";
import { COLORS, renderChartSvg, svgToPng, type ChartSpec } from "./charts.js";

export { COLORS };

export const PROGRESS_WIDTH = 1000;

/** The progress chart of the per-epoch logging lists (those a checkpoint carries). */
export function progressChart(title: string, logging: TrainingLogLists): ChartSpec {
  const ep = (vs: readonly (number | null)[]) => vs.map((v, i) => [i, v] as const);
  const durations = logging.epoch_end_timestamps.map((end, i) => {
    const start = logging.epoch_start_timestamps[i];
    return start === undefined ? null : end - start;
  });
  const n = logging.train_losses.length;
  const last = (vs: readonly (number | null)[]) => vs.at(-1);
  const fmt = (v: number | null | undefined) => (v === null || v === undefined ? "–" : v.toPrecision(4));
  return {
    title,
    subtitle:
      n === 0
        ? "no epoch finished yet"
        : `${n} epoch(s); last train loss ${fmt(last(logging.train_losses))}, validation loss ${fmt(last(logging.val_losses))}`,
    xName: "epoch",
    width: PROGRESS_WIDTH,
    panelHeight: 260,
    panels: [
      {
        yName: "loss",
        series: [
          { name: "train loss", color: COLORS.train, points: ep(logging.train_losses) },
          { name: "validation loss", color: COLORS.val, points: ep(logging.val_losses) },
        ],
      },
      { yName: "epoch duration (s)", series: [{ name: "epoch duration", color: COLORS.time, points: ep(durations) }] },
      { yName: "learning rate", series: [{ name: "learning rate", color: COLORS.lr, points: ep(logging.lrs) }] },
    ],
  };
}

export function renderProgressPng(title: string, logging: TrainingLogLists): Buffer {
  return svgToPng(renderChartSvg(progressChart(title, logging)));
}

export async function writeProgressPng(file: string, title: string, logging: TrainingLogLists): Promise<void> {
  await writeFileAtomic(file, renderProgressPng(title, logging));
}
