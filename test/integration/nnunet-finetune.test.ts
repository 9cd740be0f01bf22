/**
 * Issue 16, acceptance of exports: a tiny pre-training run, exported with `ssl3d export RESULTS_DIR` and no flags,
 * is accepted by the fine-tuning side as it is (test/helpers/nnunet-finetune.py, in the reference venv):
 * - ResEnc (resenc-xs; full-size ResEnc-L opt-in with SSL3D_FULL_PARITY=1): the segmentation network is built from an
 *   nnU-Net plans file (test/fixtures/nnunet/nnUNetResEncUNetLPlans.json; for xs its architecture replaced by the
 *   init kwargs the adaptation plan records) the way nnUNetTrainer builds it, the export goes through nnU-Net v2's
 *   own `load_pretrained_weights` (`nnUNetv2_train -pretrained_weights`), every encoder and stem tensor equals the
 *   export's, and one fine-tuning step runs in PyTorch.
 * - Primus (primus-xs): the upstream Primus module, built from the adaptation plan, loads the export through the
 *   plan's key mapping (encoder, stem, positional embedding; strict), and one step runs.
 * The adaptation plan is upstream's shape: only the trained configuration in `pretrain_plan`, with its patch size,
 * and `recommended_downstream_patchsize` (160³, as nnssl's trainers record).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { pythonBin } from "../helpers/python.js";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "ssl3d.mjs");
const FULL = process.env.SSL3D_FULL_PARITY === "1";

let work: string;
let env: NodeJS.ProcessEnv;

function cli(
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...env, ...extraEnv },
    encoding: "utf8",
    timeout: 1_800_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Finetune {
  encoder_keys: number;
  matched: number;
  mismatched: string[];
  not_in_export: string[];
  loss: number;
  encoder_changed: boolean;
  network: string;
  output_shape: number[];
}

function finetune(spec: Record<string, unknown>): Finetune {
  const script = fileURLToPath(new URL("../helpers/nnunet-finetune.py", import.meta.url));
  const r = spawnSync(pythonBin(), [script, JSON.stringify({ num_classes: 3, seed: 1, ...spec })], {
    encoding: "utf8",
    timeout: 1_800_000,
    maxBuffer: 1 << 26,
    env: { ...process.env, OMP_NUM_THREADS: "2" },
  });
  if (r.status !== 0) throw new Error(`python failed (${String(r.status ?? r.signal)}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Finetune;
}

/** Train `trainer` for one short epoch and export the results folder with no flags; returns the export and its plan. */
function trainAndExport(
  trainer: string,
  preset: string,
  patch: number,
): { weights: string; plan: Record<string, unknown> } {
  // one results root per preset: the same trainer name must not resume or export another test's run
  const root = join(work, `results-${preset}`);
  const t = cli(
    [
      "train",
      "990",
      "onemmiso",
      "-tr",
      trainer,
      "--arch-preset",
      preset,
      "--patch-size",
      String(patch),
      "--epochs",
      "1",
      "--iters-per-epoch",
      "2",
      "--val-iters",
      "0",
      "--batch-size",
      "2",
    ],
    { nnssl_results: root },
  );
  assert.equal(t.status, 0, t.stderr);
  const results = join(root, "Dataset990_Demo", `${trainer}__nnsslPlans__onemmiso`);
  const e = cli(["export", results]);
  assert.equal(e.status, 0, e.stderr);
  const [weights, planFile] = e.stdout.trim().split("\n");
  assert.match(weights!, /checkpoint_final\.export\.pth$/);
  const plan = JSON.parse(readFileSync(planFile!, "utf8")) as Record<string, unknown>;
  return { weights: weights!, plan };
}

/** nnU-Net plans with the fixture's ResEnc-L architecture, or the given init kwargs, at a downstream patch size. */
function nnunetPlans(archKwargs: Record<string, unknown> | undefined, patch: number[]): string {
  const plans = JSON.parse(
    readFileSync(join(ROOT, "test", "fixtures", "nnunet", "nnUNetResEncUNetLPlans.json"), "utf8"),
  ) as { configurations: Record<string, Record<string, unknown>> };
  const cfg = plans.configurations["3d_fullres"]!;
  cfg.patch_size = patch;
  if (archKwargs !== undefined) (cfg.architecture as Record<string, unknown>).arch_kwargs = archKwargs;
  const file = join(work, `plans-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(plans, null, 1));
  return file;
}

function checkUpstreamShape(plan: Record<string, unknown>, patch: number[]): void {
  const pp = plan.pretrain_plan as {
    configurations: Record<string, { patch_size: number[]; spacing: number[] }>;
    plans_name: string;
  };
  assert.deepEqual(Object.keys(pp.configurations), ["onemmiso"], "only the trained configuration, as upstream");
  assert.deepEqual(pp.configurations.onemmiso!.patch_size, patch);
  assert.equal(pp.configurations.onemmiso!.spacing.length, 3);
  assert.equal(pp.plans_name, "nnsslPlans");
  assert.deepEqual(plan.recommended_downstream_patchsize, [160, 160, 160]);
}

function checkLoaded(r: Finetune): void {
  assert.ok(r.encoder_keys > 0);
  assert.deepEqual([r.not_in_export, r.mismatched], [[], []], "every encoder/stem tensor comes from the export");
  assert.equal(r.matched, r.encoder_keys);
  assert.ok(Number.isFinite(r.loss), `loss ${r.loss}`);
  assert.ok(r.encoder_changed, "the fine-tuning step moves the pretrained encoder");
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "ssl3d-finetune-"));
  const { SSL3D_CHECKPOINT_DIR: _c, SSL3D_RESUME: _r, SSL3D_METRICS_PORT: _m, ...inherited } = process.env;
  env = {
    ...inherited,
    SSL3D_LOG_LEVEL: "warn",
    nnssl_raw: join(work, "demo", "nnssl_raw"),
    nnssl_preprocessed: join(work, "demo", "nnssl_preprocessed"),
    nnssl_results: join(work, "results-demo"),
  };
  const d = cli(["demo", "--quick", "--out", join(work, "demo")]);
  assert.equal(d.status, 0, d.stderr);
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

test("resenc-xs: export without flags → nnU-Net plans network, nnU-Net's load_pretrained_weights, one step", () => {
  const { weights, plan } = trainAndExport("BaseMAETrainer", "resenc-xs", 32);
  checkUpstreamShape(plan, [32, 32, 32]);
  const ap = plan.architecture_plans as { arch_class_name: string; arch_kwargs: Record<string, unknown> };
  assert.equal(ap.arch_class_name, "ResidualEncoderUNet");
  const r = finetune({
    mode: "nnunet",
    weights,
    plans: nnunetPlans(ap.arch_kwargs, [64, 64, 64]),
    configuration: "3d_fullres",
  });
  assert.equal(r.network, "ResidualEncoderUNet");
  assert.deepEqual(r.output_shape, [2, 3, 64, 64, 64]);
  checkLoaded(r);
});

test("primus-xs: export without flags → upstream Primus via the adaptation plan's keys, one step", () => {
  const { weights, plan } = trainAndExport("BaseEvaMAETrainer", "primus-xs", 32);
  checkUpstreamShape(plan, [32, 32, 32]);
  const ap = plan.architecture_plans as { arch_kwargs: Record<string, unknown> };
  assert.deepEqual(Object.keys(ap.arch_kwargs).sort(), [
    "drop_path_rate",
    "embed_dim",
    "encoder_eva_depth",
    "encoder_eva_numheads",
    "init_values",
    "patch_embed_size",
    "scale_attn_inner",
  ]);
  const r = finetune({ mode: "primus", weights });
  assert.equal(r.network, "Primus");
  assert.deepEqual(r.output_shape, [2, 3, 32, 32, 32]);
  checkLoaded(r);
});

test(
  "full-size ResEnc-L: export without flags → nnU-Net's ResEnc-L plans, load_pretrained_weights, one step",
  { skip: !FULL && "set SSL3D_FULL_PARITY=1 (minutes, ~2 GB of files)" },
  () => {
    const { weights, plan } = trainAndExport("BaseMAETrainer", "resenc-l", 32);
    checkUpstreamShape(plan, [32, 32, 32]);
    assert.equal((plan.architecture_plans as { arch_class_name: string }).arch_class_name, "ResEncL");
    const r = finetune({
      mode: "nnunet",
      weights,
      plans: nnunetPlans(undefined, [64, 64, 64]),
      configuration: "3d_fullres",
    });
    assert.equal(r.network, "ResidualEncoderUNet");
    checkLoaded(r);
  },
);
