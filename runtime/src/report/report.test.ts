/**
 * The run report without a browser: reading a results folder (run_info, JSONL with a torn last line, checkpoints
 * header-only), the page's content and self-containedness, the runner's lookup of a run's results folder, and the
 * CLI's error for a folder that is not a run. The page in a real Chromium: test/integration/delivery/local-run.test.ts.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { ConfigError } from "../errors.js";
import { checkpointPath, saveCheckpoint, type CheckpointMeta } from "../training/checkpoint.js";
import { findResultsFolder, RUN_INFO, type RunInfo } from "../training/run-info.js";
import { renderReportHtml } from "./html.js";
import { writeRunReport } from "./report.js";
import { readRunFolder } from "./run-folder.js";

const silent = pino({ level: "silent" });

function fakeRun(root: string): { base: string; ck: string } {
  const base = join(root, "results", "Dataset990_Demo", "BaseMAETrainer__nnsslPlans__onemmiso");
  const fold = join(base, "fold_all");
  const ck = join(root, "checkpoints");
  mkdirSync(fold, { recursive: true });
  mkdirSync(ck, { recursive: true });
  const info: RunInfo = {
    dataset: "Dataset990_Demo",
    plans: "nnsslPlans",
    configuration: "onemmiso",
    trainer: "BaseMAETrainer",
    trainer_key: "mae-resenc-l",
    method: "mae",
    architecture: "resenc-xs",
    parameters: 319419,
    patch_size: [32, 32, 32],
    network_patch_size: [32, 32, 32],
    batch_size: 2,
    world_size: 1,
    epochs: 3,
    iters_per_epoch: 4,
    val_iters: 2,
    modalities: null,
    train_images: 6,
    val_images: 2,
    train_subjects: 3,
    val_subjects: 1,
    checkpoint_dir: ck,
    started_at: "2026-01-01T00:00:00Z",
  };
  writeFileSync(join(fold, RUN_INFO), JSON.stringify(info));
  writeFileSync(
    join(base, "plans.json"),
    JSON.stringify({
      configurations: { onemmiso: { spacing: [1, 1, 1], normalization_schemes: ["ZScoreNormalization"] } },
    }),
  );
  const lines = [0, 1].map((e) =>
    JSON.stringify({
      epoch: e,
      train_loss: 1 - 0.2 * e,
      val_loss: 1.1 - 0.2 * e,
      lr: 0.01 / (e + 1),
      epoch_time_s: 10 + e,
      global_step: 4 * (e + 1),
      step_losses: [1.2, 1, 0.9, 0.8].map((v) => v - 0.2 * e),
      time: "t",
    }),
  );
  writeFileSync(join(fold, "training_log.jsonl"), `${lines.join("\n")}\n{"epoch": 2, "train_lo`);
  return { base, ck };
}

function meta(epochs: number, step: number): CheckpointMeta {
  return {
    format: "ssl3d-checkpoint/1",
    layout: "torch",
    trainer_name: "BaseMAETrainer",
    current_epoch: epochs,
    iteration: 0,
    global_step: step,
    epoch_step_losses: [],
    epoch_started_at: null,
    logging: {
      train_losses: [1, 0.8].slice(0, epochs),
      val_losses: [1.1, 0.9].slice(0, epochs),
      lrs: [0.01, 0.005].slice(0, epochs),
      epoch_start_timestamps: [100, 200].slice(0, epochs),
      epoch_end_timestamps: [110, 211].slice(0, epochs),
    },
    _best_ema: 0.9,
    nonfinite_total: 0,
    rng: { seed: 1, train_loader: { stream: "train", nextIndex: step }, val_loader: { stream: "val", nextIndex: 2 } },
    optimizer: { kind: "sgd-nesterov", step, lr: 0.005, hyper: {} },
    init_args: {
      dataset_name: "Dataset990_Demo",
      plans_name: "nnsslPlans",
      configuration_name: "onemmiso",
      trainer_options: { method: "mae", seed: 1 },
    },
    nnssl_adaptation_plan: null,
    saved_at: 1_700_000_000,
  };
}

test("report page: configuration, three inline SVG charts, checkpoints, no external resource or script", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-report-"));
  try {
    const { base, ck } = fakeRun(dir);
    const w = new Map([["w", { shape: [2], data: Float32Array.of(1, 2) }]]);
    await saveCheckpoint(checkpointPath(ck, "latest"), meta(2, 8), w, {
      kind: "sgd-nesterov",
      step: 8,
      lr: 0.005,
      hyper: {},
      slots: {},
    });
    await saveCheckpoint(checkpointPath(ck, "best"), meta(2, 8), w, {
      kind: "sgd-nesterov",
      step: 8,
      lr: 0.005,
      hyper: {},
      slots: {},
    });
    const run = await readRunFolder(join(base, "fold_all"));
    assert.equal(run.baseDir, base);
    assert.equal(run.checkpointDir, ck, "checkpoint folder from run_info.json");
    assert.deepEqual(
      run.checkpoints.map((c) => c.kind),
      ["latest", "best"],
    );
    assert.equal(run.epochs.length, 2, "the torn last JSONL line is skipped");
    const html = renderReportHtml(run, { error: "nnssl_preprocessed is not set" });
    assert.equal((html.match(/<svg[\s>]/g) ?? []).length, 3);
    for (const s of [
      "BaseMAETrainer (mae-resenc-l)",
      "resenc-xs, 319,419 parameters",
      "32×32×32",
      "6 / 2",
      "3 / 1",
      "[1,1,1]",
      "checkpoint_latest.safetensors",
      "2 of 3",
      "Not computed: nnssl_preprocessed is not set",
    ]) {
      assert.ok(html.includes(s), `page lacks "${s}"`);
    }
    assert.ok(!/<script|<link|@import|url\((?!#)/i.test(html), "the page must not load anything");
    const srcs = [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    assert.ok(
      srcs.every((s) => s.startsWith("data:image/png;base64,")),
      `external reference: ${srcs.find((s) => !s.startsWith("data:"))}`,
    );
    // the CLI path without pictures writes <results>/report.html
    const out = await writeRunReport(base, silent, { preview: false });
    assert.equal(out, join(base, "report.html"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("report: names are escaped; a folder that is not a run is a one-line ConfigError naming it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-report-"));
  try {
    const { base } = fakeRun(dir);
    writeFileSync(
      join(base, "fold_all", RUN_INFO),
      JSON.stringify({
        ...JSON.parse('{"dataset":"<b>x</b>"}'),
        trainer: "T",
        trainer_key: "k",
        patch_size: [1, 1, 1],
        network_patch_size: [1, 1, 1],
        parameters: 1,
        checkpoint_dir: join(dir, "none"),
      }),
    );
    const html = renderReportHtml(await readRunFolder(base), undefined);
    assert.ok(html.includes("&lt;b&gt;x&lt;/b&gt;") && !html.includes("<b>x</b>"));
    const empty = join(dir, "empty");
    mkdirSync(empty);
    await assert.rejects(
      readRunFolder(empty),
      (e: unknown) => e instanceof ConfigError && e.message.includes(empty) && !e.message.includes("\n"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("findResultsFolder: the run whose run_info.json records the checkpoint folder", () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-report-"));
  try {
    const { base, ck } = fakeRun(dir);
    assert.equal(findResultsFolder(join(dir, "results"), ck), base);
    assert.equal(findResultsFolder(join(dir, "results"), join(dir, "other")), undefined);
    assert.equal(findResultsFolder(join(dir, "missing"), ck), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
