/**
 * Learning-rate schedules, evaluated once per epoch (upstream calls `lr_scheduler.step(epoch)` at epoch start, so the
 * LR is constant within an epoch).
 *
 * - `polyLr`: nnU-Net's PolyLRScheduler, `lr0 · (1 − e/E)^0.9`.
 * - `warmupPolyLr`: the Primus (Eva) two-stage schedule: linear warm-up `lr0/W · (e+1)` for epochs 0..W−1, then
 *   `lr0 · (1 − (e−W)/(E−W))^0.9`.
 */
import { z } from "zod";

export const ScheduleSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("poly"), exponent: z.number().positive().default(0.9) }),
  z.object({
    kind: z.literal("warmup-poly"),
    warmupEpochs: z.number().int().nonnegative().default(50),
    exponent: z.number().positive().default(0.9),
  }),
]);
export type Schedule = z.infer<typeof ScheduleSchema>;

export function polyLr(lr0: number, epoch: number, numEpochs: number, exponent = 0.9): number {
  return lr0 * Math.pow(Math.max(0, 1 - epoch / numEpochs), exponent);
}

export function warmupPolyLr(lr0: number, epoch: number, numEpochs: number, warmupEpochs = 50, exponent = 0.9): number {
  // If a short run has fewer epochs than the warm-up, the warm-up is shortened to keep its shape (documented in
  // docs/training.md): W' = min(W, max(1, floor(E/2))).
  const w = Math.min(warmupEpochs, Math.max(1, Math.floor(numEpochs / 2)));
  if (epoch < w) return (lr0 / w) * (epoch + 1);
  return lr0 * Math.pow(Math.max(0, 1 - (epoch - w) / (numEpochs - w)), exponent);
}

export function learningRate(s: Schedule, lr0: number, epoch: number, numEpochs: number): number {
  switch (s.kind) {
    case "poly":
      return polyLr(lr0, epoch, numEpochs, s.exponent);
    case "warmup-poly":
      return warmupPolyLr(lr0, epoch, numEpochs, s.warmupEpochs, s.exponent);
  }
}
