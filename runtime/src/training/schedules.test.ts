import assert from "node:assert/strict";
import { test } from "node:test";
import { learningRate, polyLr, warmupPolyLr } from "./schedules.js";

function close(a: number, b: number, rel = 1e-4): void {
  assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${a} != ${b}`);
}

test("PolyLR test vectors (nnssl `lr_scheduler/polylr.py`, lr0 1e-2, 1000 epochs)", () => {
  close(polyLr(1e-2, 0, 1000), 1e-2);
  close(polyLr(1e-2, 500, 1000), 5.3589e-3);
  close(polyLr(1e-2, 999, 1000), 1.9953e-5);
});

test("Primus warm-up + poly test vectors (nnssl `lr_scheduler/warmup.py`, lr0 3e-4, 1000 epochs, 50 warm-up)", () => {
  close(warmupPolyLr(3e-4, 0, 1000), 6e-6);
  close(warmupPolyLr(3e-4, 49, 1000), 3e-4);
  close(warmupPolyLr(3e-4, 50, 1000), 3e-4);
  close(warmupPolyLr(3e-4, 525, 1000), 1.6077e-4);
  close(warmupPolyLr(3e-4, 999, 1000), 6.27e-7, 1e-3);
  close(learningRate({ kind: "warmup-poly", warmupEpochs: 50, exponent: 0.9 }, 3e-4, 0, 1000), 6e-6);
});

test("short runs shorten the warm-up to half the epochs so the LR still peaks", () => {
  // 4 epochs: warm-up 2 epochs (1.5e-4, 3e-4), then poly from 3e-4
  close(warmupPolyLr(3e-4, 0, 4), 1.5e-4);
  close(warmupPolyLr(3e-4, 1, 4), 3e-4);
  close(warmupPolyLr(3e-4, 2, 4), 3e-4);
  assert.ok(warmupPolyLr(3e-4, 3, 4) < 3e-4);
});
