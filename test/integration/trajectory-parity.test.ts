/**
 * Training-dynamics parity (docs/parity.md, "Training dynamics"): 30 MAE steps of ssl3d's training loop and of
 * nnssl's training step in PyTorch (upstream dynamic-network-architectures modules, the same initial weights, batches
 * and masks) give the same loss curve and final weights, within a tolerance derived from the fp32 accumulation-order
 * noise of the PyTorch reference itself (the same run with 1 instead of 2 threads, measured here in the same run).
 * A 40-epoch schedule with one step per epoch makes the LR move every step: the CNN's poly decay, Primus' warm-up
 * (10 epochs) and the switch to its poly decay all happen within the 30 steps.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { test } from "node:test";
import { lossTolerance, runTrajectory, weightTolerance } from "../helpers/trajectory.js";

for (const arch of ["resenc-xs", "primus-xs"] as const) {
  test(`${arch}: 30 MAE steps of ssl3d's loop follow nnssl's PyTorch training step within the reference's own fp32 noise`, async () => {
    const r = await runTrajectory({ method: "mae", arch, steps: 30, epochs: 40, warmupEpochs: 10, noiseThreads: 1 });
    rmSync(r.dir, { recursive: true, force: true });
    assert.equal(r.steps.length, 30);
    // a real trajectory: the LR follows the schedule and the network learns
    const lrs = r.steps.map((s) => s.lr);
    // (Primus: the last warm-up epoch and the first poly epoch both run at lr0)
    assert.equal(new Set(lrs).size, arch === "primus-xs" ? 29 : 30, `LR constant somewhere: ${lrs.join(", ")}`);
    if (arch === "primus-xs")
      assert.ok(
        Math.abs(lrs[9]! - 3e-4) < 1e-12 && Math.abs(lrs[10]! - 3e-4) < 1e-12 && lrs[11]! < 3e-4,
        `warm-up to lr0 then poly: ${lrs.slice(8, 12).join(", ")}`,
      );
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(r.steps.slice(0, 5).map((s) => s.torch));
    const last = mean(r.steps.slice(-5).map((s) => s.torch));
    assert.ok(last < first, `the loss did not fall: ${first} → ${last}`);
    const tol = lossTolerance(r.largestNoise!);
    const wtol = weightTolerance(r.finalWeightNoise!);
    const worst = r.steps.reduce((a, b) => (b.rel > a.rel ? b : a));
    assert.ok(
      r.largestRel < tol,
      `largest relative loss difference ${r.largestRel} (step ${worst.step}: ${worst.ours} vs ${worst.torch}) ≥ tolerance ${tol} (torch 2 vs 1 threads: ${r.largestNoise})`,
    );
    assert.ok(
      r.finalWeightRel < wtol,
      `final weights differ by ${r.finalWeightRel} ≥ ${wtol} (torch 2 vs 1 threads: ${r.finalWeightNoise})`,
    );
  });
}
