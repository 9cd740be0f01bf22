import assert from "node:assert/strict";
import { test } from "node:test";
import { progressFromMetrics } from "./prometheus-text.js";

test("reads step, epoch and loss from a prom-client exposition", () => {
  const text = [
    "# HELP pretrain_global_step Optimizer steps",
    "# TYPE pretrain_global_step gauge",
    "pretrain_global_step 1234",
    "# TYPE pretrain_epoch gauge",
    "pretrain_epoch{} 7",
    "pretrain_train_loss 0.123456789",
    'pretrain_step_duration_seconds_bucket{le="0.1"} 3',
    "process_cpu_seconds_total 1.5",
  ].join("\n");
  assert.deepEqual(progressFromMetrics(text), { step: 1234, epoch: 7, loss: 0.123456789 });
});

test("a NaN loss is reported, missing metrics are absent", () => {
  assert.deepEqual(progressFromMetrics("pretrain_train_loss NaN\n"), { loss: NaN });
  assert.deepEqual(progressFromMetrics("other 1\n"), {});
});
