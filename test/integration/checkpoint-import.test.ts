/**
 * Import of real PyTorch checkpoints (written by the venv's torch from upstream dynamic-network-architectures
 * modules, test/helpers/torch-checkpoints.py): an nnssl-style checkpoint dict (default pickle protocol, optimizer
 * state, torch.device inside init_args, adaptation plan), a protocol-4 bare state dict, and a float16 state dict with
 * a non-contiguous tensor. `ssl3d import` rebuilds the architecture from the adaptation plan, and the imported
 * network's output equals the PyTorch module's. Then nnssl's `-pretrained_weights` through `nnssl_train` on the demo
 * phantoms, and malformed inputs (exit code, file and field named).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { pythonBin } from "../helpers/python.js";
import { tmp } from "../helpers/torch-parity.js";
import { selectBackend } from "../../runtime/src/models/backend/select.js";
import { readTorchCheckpoint } from "../../runtime/src/models/checkpoint-import.js";
import { loadNetwork } from "../../runtime/src/models/network-io.js";
import { decodeSafetensors, encodeSafetensors } from "../../runtime/src/models/safetensors.js";
import { checkpointPath } from "../../runtime/src/training/checkpoint.js";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "ssl3d.mjs");
const RESENC_XS = {
  input_channels: 1,
  n_stages: 4,
  features_per_stage: [8, 16, 32, 64],
  strides: [1, 2, 2, 2],
  n_blocks_per_stage: [1, 1, 1, 1],
  num_classes: 2,
  n_conv_per_stage_decoder: [1, 1, 1],
};
const PATCH = [16, 16, 16];

let dir: string;
let x: tf.Tensor5D;

function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  argv0 = BIN,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [argv0, ...args], {
    encoding: "utf8",
    timeout: 600_000,
    env: { ...process.env, SSL3D_LOG_LEVEL: "warn", ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function torchWrite(arch: string, kwargs: Record<string, unknown>, out: string, seed: number): Record<string, unknown> {
  const script = fileURLToPath(new URL("../helpers/torch-checkpoints.py", import.meta.url));
  const r = spawnSync(
    pythonBin(),
    [script, JSON.stringify({ arch, kwargs, out, input: join(dir, "x.safetensors"), seed, patch: PATCH })],
    { encoding: "utf8", timeout: 600_000, env: { ...process.env, OMP_NUM_THREADS: "2" } },
  );
  if (r.status !== 0) throw new Error(`python failed (${String(r.status)}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

/** Upstream's output (NCDHW) in our layout. */
function torchOutput(path: string): Float32Array {
  const y = decodeSafetensors(readFileSync(path)).tensors.get("y")!;
  return tf.tidy(() => tf.transpose(tf.tensor(y.data, [...y.shape]), [0, 2, 3, 4, 1]).dataSync() as Float32Array);
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / Math.max(scale, 1e-12);
}

before(async () => {
  await selectBackend("cpu");
  dir = tmp("ssl3d-import-");
  x = tf.randomNormal<tf.Rank.R5>([1, ...PATCH, 1] as [number, number, number, number, number], 0, 1, "float32", 5);
  const xin = tf.transpose(x, [0, 4, 1, 2, 3]);
  await writeFile(
    join(dir, "x.safetensors"),
    encodeSafetensors(new Map([["x", { shape: xin.shape, data: xin.dataSync() as Float32Array }]])),
  );
  xin.dispose();
});

test("an nnssl checkpoint (.pth from torch.save) imports via its adaptation plan and reproduces upstream's output", async () => {
  const out = join(dir, "resenc");
  (await import("node:fs")).mkdirSync(out);
  const info = torchWrite("resenc", RESENC_XS, out, 1);
  const ck = await readTorchCheckpoint(join(out, "nnssl.pth"));
  assert.equal(ck.kind, "nnssl-checkpoint");
  assert.equal(ck.trainerName, "BaseMAETrainer_BS8");
  assert.equal(ck.epoch, 2);
  assert.equal(ck.stateDict.size, info.keys);
  assert.equal(
    (ck.adaptationPlan?.architecture_plans as Record<string, unknown>).arch_class_name,
    "ResidualEncoderUNet",
  );
  const r = cli(["import", join(out, "nnssl.pth"), "--out", join(out, "imported.safetensors")]);
  assert.equal(r.status, 0, r.stderr);
  const { net, metadata } = await loadNetwork(join(out, "imported.safetensors"));
  assert.equal(net.config.name, "resenc-xs");
  assert.equal(net.config.outChannels, 2);
  assert.equal(metadata["ssl3d.method"], "BaseMAETrainer_BS8");
  const y = tf.tidy(() => net.apply(x, { training: false }).dataSync() as Float32Array);
  const ref = torchOutput(join(out, "y.safetensors"));
  assert.equal(y.length, ref.length);
  assert.ok(maxRelDiff(y, ref) < 1e-4, `output differs from upstream: ${maxRelDiff(y, ref)}`);
  net.dispose();

  // protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL) and float16 with a non-contiguous view: same weights (to fp16 precision)
  const p4 = await readTorchCheckpoint(join(out, "state_p4.pth"));
  assert.equal(p4.kind, "state-dict");
  for (const [k, t] of ck.stateDict) assert.deepEqual([...p4.stateDict.get(k)!.data], [...t.data], k);
  const half = await readTorchCheckpoint(join(out, "half.pth"));
  const nc = String(info.noncontiguous);
  assert.equal(info.is_contiguous, false);
  for (const [k, t] of ck.stateDict) {
    const h = half.stateDict.get(k)!;
    assert.deepEqual(h.shape, t.shape, k);
    // float16 rounding: half an ulp of 11 significant bits, or half the subnormal step 2^-24 near zero
    const bad = t.data.findIndex((v, i) => Math.abs(h.data[i]! - v) > Math.abs(v) * 2 ** -11 + 2 ** -25);
    assert.equal(
      bad,
      -1,
      `${k}${k === nc ? " (non-contiguous)" : ""}: element ${bad} ${h.data[bad]} vs ${t.data[bad]}`,
    );
  }
});

test("a bare Primus state dict imports with --architecture/--options and reproduces upstream's output", async () => {
  const out = join(dir, "primus");
  (await import("node:fs")).mkdirSync(out);
  const kw = {
    input_channels: 1,
    embed_dim: 48,
    patch_embed_size: [8, 8, 8],
    num_classes: 2,
    eva_depth: 2,
    eva_numheads: 4,
    input_shape: PATCH,
    init_values: 0.1,
    scale_attn_inner: true,
  };
  torchWrite("primus", kw, out, 2);
  const missing = cli(["import", join(out, "state_p4.pth")]);
  assert.equal(missing.status, 2, missing.stderr);
  assert.match(missing.stderr, /state_p4\.pth.*nnssl_adaptation_plan|nnssl_adaptation_plan.*state_p4\.pth/);
  const r = cli([
    "import",
    join(out, "state_p4.pth"),
    "--architecture",
    "primus-xs",
    "--options",
    JSON.stringify({ embedDim: 48, depth: 2, heads: 4, patchSize: PATCH, outChannels: 2 }),
    "--out",
    join(out, "imported.safetensors"),
  ]);
  assert.equal(r.status, 0, r.stderr);
  const { net } = await loadNetwork(join(out, "imported.safetensors"));
  const y = tf.tidy(() => net.apply(x, { training: false }).dataSync() as Float32Array);
  const ref = torchOutput(join(out, "y.safetensors"));
  assert.ok(maxRelDiff(y, ref) < 1e-3, `output differs from upstream: ${maxRelDiff(y, ref)}`);
  net.dispose();
});

test("train -pretrained_weights (nnssl's flag) starts from the imported weights (seg layers excluded)", async () => {
  const demo = join(dir, "demo");
  const d = cli(["demo", "--quick", "--out", demo], {
    nnssl_raw: undefined,
    nnssl_preprocessed: undefined,
    nnssl_results: undefined,
  });
  assert.equal(d.status, 0, d.stderr);
  const env = {
    nnssl_raw: join(demo, "nnssl_raw"),
    nnssl_preprocessed: join(demo, "nnssl_preprocessed"),
    nnssl_results: join(demo, "results"),
  };
  const pre = join(dir, "resenc", "nnssl.pth");
  const r = cli(
    [
      "train",
      "Dataset990_Demo",
      "onemmiso",
      "-tr",
      "BaseMAETrainer",
      "-p",
      "nnsslPlans",
      "--epochs",
      "1",
      "--iters-per-epoch",
      "1",
      "--val-iters",
      "0",
      "--patch-size",
      "16",
      "--arch-preset",
      "resenc-xs",
      "-pretrained_weights",
      pre,
    ],
    { ...env, SSL3D_LOG_LEVEL: "info" },
  );
  assert.equal(r.status, 0, r.stderr);
  const line = r.stderr.split("\n").find((l) => l.includes("Pretrained weights loaded"));
  assert.ok(line !== undefined, r.stderr);
  const logged = JSON.parse(line) as { loaded: number; skipped: number };
  const ck = await readTorchCheckpoint(pre);
  // every parameter but the seg layers (1 output channel here vs 2 in the checkpoint: skipped by name anyway)
  const segParams = [...ck.stateDict.keys()].filter((k) => k.includes(".seg_layers.")).length;
  const ours = await readTorchCheckpoint(
    checkpointPath(
      join(env.nnssl_results, "Dataset990_Demo", "BaseMAETrainer__nnsslPlans__onemmiso", "fold_all"),
      "final",
    ),
  );
  const primary = [...ours.stateDict.keys()].filter((k) => !k.startsWith("optimizer_state."));
  assert.equal(logged.loaded + logged.skipped, primary.length);
  assert.equal(logged.skipped, segParams);
  // one SGD step away from the imported weights, far from a fresh initialisation
  const k = "encoder.stem.convs.0.conv.weight";
  assert.ok(
    maxRelDiff(ours.stateDict.get(k)!.data, ck.stateDict.get(k)!.data) < 0.05,
    `${k} moved too far from the pretrained weights`,
  );
});

test("malformed checkpoints: clear errors naming the file (and the field)", async () => {
  const good = await readFile(join(dir, "resenc", "nnssl.pth"));
  const truncated = join(dir, "truncated.pth");
  writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)));
  const t = cli(["import", truncated]);
  assert.equal(t.status, 3, t.stderr);
  assert.match(t.stderr, /truncated\.pth/);
  const notTorch = join(dir, "notorch.pth");
  const { zipStored } = await import("../../runtime/src/models/torch-zip.js");
  writeFileSync(notTorch, zipStored([{ name: "x/readme.txt", data: Buffer.from("hello") }]));
  const n = cli(["import", notTorch]);
  assert.equal(n.status, 3, n.stderr);
  assert.match(n.stderr, /notorch\.pth.*data\.pkl|data\.pkl.*notorch\.pth/);
  const wrong = cli([
    "import",
    join(dir, "resenc", "nnssl.pth"),
    "--architecture",
    "resenc-xs",
    "--options",
    JSON.stringify({ features: [8, 16, 32, 32], patchSize: PATCH }),
  ]);
  assert.equal(wrong.status, 3, wrong.stderr);
  assert.match(wrong.stderr, /nnssl\.pth/);
  assert.match(wrong.stderr, /encoder\.stages\.3/);
  const badJson = cli(["import", join(dir, "resenc", "nnssl.pth"), "--options", "{nope"]);
  assert.equal(badJson.status, 2, badJson.stderr);
  assert.match(badJson.stderr, /--options/);
});
