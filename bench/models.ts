/**
 * One training step (forward, MSE loss, backward, SGD-Nesterov update) per small preset (and of one 3×3×3 conv3d layer,
 * the micro-benchmark) and available tfjs
 * backend, beside PyTorch CPU (Debian torch, upstream dynamic-network-architectures) on the same preset and input
 * in the same run. Reports medians and the ratio tfjs/torch. torch uses 1 thread by default, like the default wasm
 * build (on a loaded machine 2 OpenMP threads can be 40× slower than 1). Run: `npm run bench:models [-- --backends wasm,cpu
 * --reps 3 --threads 1]`. Numbers go to docs/performance.md.
 *
 * `--memory SIZE [--batch B]`: peak RSS of ONE training step of the real full-size `resenc-l` at B×1×SIZE³ on the
 * default cpu path (native kernels), each side in a fresh child process, beside PyTorch's (upstream
 * ResidualEncoderUNet with ResEnc-L's configuration) for the same step. The gradient is the training loop's
 * `valueAndGrads` (training/backprop.ts); `--grads tfjs` measures `tf.variableGrads` instead.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../runtime/src/models/backend/select.js";
import type { CreateNetworkOptions } from "../runtime/src/models/architecture.js";
import { createNetwork } from "../runtime/src/models/registry.js";
import { conv3d } from "../runtime/src/models/ops/conv3d.js";
import { valueAndGrads } from "../runtime/src/training/backprop.js";
import { pythonBin } from "../test/helpers/python.js";

interface Case {
  readonly label: string;
  readonly key: string;
  readonly opts: CreateNetworkOptions;
  readonly batch: number;
  readonly size: [number, number, number];
  readonly torch: { arch: string; kwargs: Record<string, unknown> };
}

const cases: Case[] = [
  {
    // the conv3d micro-benchmark of issue 8 (bench/kernels.ts): one 3×3×3 convolution (+ bias), forward and backward
    label: "conv3d 3³ 32→32 + bias, 2×32×32³",
    key: "conv3d",
    opts: {},
    batch: 2,
    size: [32, 32, 32],
    torch: { arch: "conv3d", kwargs: { input_channels: 32, out_channels: 32 } },
  },
  {
    label: "resenc-xs 8/16/32/64, 2×1×32³",
    key: "resenc-xs",
    opts: { features: [8, 16, 32, 64], patchSize: [32, 32, 32] },
    batch: 2,
    size: [32, 32, 32],
    torch: {
      arch: "resenc",
      kwargs: {
        input_channels: 1,
        n_stages: 4,
        features_per_stage: [8, 16, 32, 64],
        strides: [1, 2, 2, 2],
        n_blocks_per_stage: [1, 1, 1, 1],
        num_classes: 1,
        n_conv_per_stage_decoder: [1, 1, 1],
      },
    },
  },
  {
    label: "primus-xs embed 192/4 heads/depth 2, 2×1×64³ (512 tokens)",
    key: "primus-xs",
    opts: { embedDim: 192, heads: 4, depth: 2, patchSize: [64, 64, 64], dropPathRate: 0 },
    batch: 2,
    size: [64, 64, 64],
    torch: {
      arch: "primus",
      kwargs: {
        input_channels: 1,
        embed_dim: 192,
        patch_embed_size: [8, 8, 8],
        num_classes: 1,
        eva_depth: 2,
        eva_numheads: 4,
        input_shape: [64, 64, 64],
        init_values: 0.1,
        scale_attn_inner: true,
      },
    },
  },
];

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : dflt;
}

const reps = Number(arg("reps", "3"));
const threads = Number(arg("threads", "1"));
const gradsImpl = arg("grads", "release");
const backends = arg("backends", "wasm").split(",");

function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

/** A single convolution layer through the models' op layer (`ops/conv3d.ts`), shaped like a Network. */
function convLayer(
  cin: number,
  cout: number,
): { weights: Map<string, tf.Variable>; apply(x: tf.Tensor5D, ctx?: unknown): tf.Tensor5D; dispose(): void } {
  const w = tf.variable(
    tf.randomNormal<tf.Rank.R5>([3, 3, 3, cin, cout], 0, Math.sqrt(2 / (27 * cin)), "float32", 1),
    true,
    "conv.weight",
  );
  const bias = tf.variable(tf.zeros<tf.Rank.R1>([cout]), true, "conv.bias");
  return {
    weights: new Map<string, tf.Variable>([
      ["conv.weight", w],
      ["conv.bias", bias],
    ]),
    apply: (x: tf.Tensor5D) => conv3d(x, w, { bias }),
    dispose: () => {
      tf.dispose([w, bias]);
    },
  };
}

async function tfjsStep(c: Case, backend: string): Promise<number[]> {
  await selectBackend(backend);
  const cin = Number(c.torch.kwargs.input_channels ?? 1),
    cout = Number(c.torch.kwargs.out_channels ?? 1);
  const net = c.key === "conv3d" ? convLayer(cin, cout) : createNetwork(c.key, { ...c.opts, seed: 0 });
  const opt = tf.train.momentum(1e-3, 0.99, true);
  const x = tf.randomNormal<tf.Rank.R5>([c.batch, ...c.size, cin]);
  const target = tf.randomNormal<tf.Rank.R5>([c.batch, ...c.size, cout]);
  const vars = [...net.weights.values()].filter((v) => v.trainable);
  const times: number[] = [];
  for (let i = 0; i <= reps; i++) {
    const t0 = performance.now();
    const loss = (): tf.Scalar => tf.mean(tf.squaredDifference(net.apply(x, { training: true, seed: i }), target));
    const { value, grads } = gradsImpl === "tfjs" ? tf.variableGrads(loss, vars) : valueAndGrads(loss, vars);
    opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
    if (i > 0) times.push((performance.now() - t0) / 1000);
  }
  tf.dispose([x, target]);
  opt.dispose();
  net.dispose();
  return times;
}

function torchStep(c: Case): number {
  const script = fileURLToPath(new URL("./torch-step.py", import.meta.url));
  const r = spawnSync(
    pythonBin(),
    [script, JSON.stringify({ ...c.torch, batch: c.batch, size: c.size, out: 1, reps, threads })],
    {
      encoding: "utf8",
      env: { ...process.env, OMP_NUM_THREADS: String(threads) },
      timeout: 1_800_000,
    },
  );
  if (r.status !== 0) throw new Error(`torch baseline failed: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { median: number }).median;
}

const RESENC_L_TORCH = {
  input_channels: 1,
  n_stages: 6,
  features_per_stage: [32, 64, 128, 256, 320, 320],
  strides: [1, 2, 2, 2, 2, 2],
  n_blocks_per_stage: [1, 3, 4, 6, 6, 6],
  num_classes: 1,
  n_conv_per_stage_decoder: [1, 1, 1, 1, 1],
};

/** Child: one resenc-l step at batch×1×size³; prints {maxRssMiB, setupRssMiB, seconds}. */
async function memoryChild(size: number, batch: number): Promise<void> {
  const choice = await selectBackend("cpu");
  const net = createNetwork("resenc-l", { patchSize: [size, size, size], seed: 0 });
  const opt = tf.train.momentum(1e-3, 0.99, true);
  const x = tf.randomNormal<tf.Rank.R5>([batch, size, size, size, 1]);
  const target = tf.randomNormal<tf.Rank.R5>([batch, size, size, size, 1]);
  const vars = [...net.weights.values()].filter((v) => v.trainable);
  const setup = process.resourceUsage().maxRSS / 1024;
  const t0 = performance.now();
  const loss = (): tf.Scalar => tf.mean(tf.squaredDifference(net.apply(x, { training: true, seed: 0 }), target));
  // the training loop's gradient (releases saved tensors during backprop); `--grads tfjs` measures tf.variableGrads
  const { value, grads } = gradsImpl === "tfjs" ? tf.variableGrads(loss, vars) : valueAndGrads(loss, vars);
  opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
  const lossValue = (await value.data())[0]!;
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(
    `${JSON.stringify({ maxRssMiB: process.resourceUsage().maxRSS / 1024, setupRssMiB: setup, seconds, loss: lossValue, nativeKernels: choice.nativeKernels })}\n`,
  );
}

function memoryCompare(size: number, batch: number): void {
  const here = fileURLToPath(new URL(".", import.meta.url));
  const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv): Record<string, number> | string => {
    const r = spawnSync(cmd, args, {
      encoding: "utf8",
      timeout: 3_600_000,
      env: { ...process.env, OMP_NUM_THREADS: String(threads), ...env },
    });
    if (r.status !== 0)
      return `failed (status ${String(r.status)}, signal ${String(r.signal)}): ${r.stderr.split("\n").slice(-3).join(" ")}`;
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, number>;
  };
  const ours = run(
    process.execPath,
    [
      "--import",
      "tsx",
      `${here}models.ts`,
      "--memory-child",
      String(size),
      "--batch",
      String(batch),
      "--grads",
      gradsImpl,
    ],
    { SSL3D_LOG_LEVEL: "warn" },
  );
  const torch = run(
    pythonBin(),
    [
      `${here}torch-step.py`,
      JSON.stringify({
        arch: "resenc",
        kwargs: RESENC_L_TORCH,
        batch,
        size: [size, size, size],
        out: 1,
        reps: 0,
        threads,
      }),
    ],
    {},
  );
  const line = (r: Record<string, number> | string): string =>
    typeof r === "string"
      ? r
      : `peak RSS ${(r.maxRssMiB! / 1024).toFixed(2)} GiB (after setup ${(r.setupRssMiB! / 1024).toFixed(2)} GiB), step ${r.seconds!.toFixed(1)} s`;
  process.stdout.write(
    `resenc-l (102.3 M params), one SGD step at ${batch}×1×${size}³, ${threads} threads\n  ssl3d cpu+native (${gradsImpl === "tfjs" ? "tf.variableGrads" : "valueAndGrads"}): ${line(ours)}\n  PyTorch CPU:      ${line(torch)}\n`,
  );
  if (typeof ours !== "string" && typeof torch !== "string")
    process.stdout.write(`  peak RSS ratio ssl3d/PyTorch: ${(ours.maxRssMiB! / torch.maxRssMiB!).toFixed(2)}\n`);
}

const memChild = arg("memory-child", "");
const memSize = arg("memory", "");
if (memChild !== "") {
  await memoryChild(Number(memChild), Number(arg("batch", "2")));
  process.exit(0);
}
if (memSize !== "") {
  memoryCompare(Number(memSize), Number(arg("batch", "2")));
  process.exit(0);
}

const rows: string[] = [
  "| preset | backend | tfjs step (s) | torch CPU step (s) | tfjs / torch |",
  "| --- | --- | --- | --- | --- |",
];
for (const c of cases) {
  const torchS = torchStep(c);
  for (const b of backends) {
    const ts = median(await tfjsStep(c, b));
    rows.push(
      `| ${c.label} | ${b} | ${ts.toFixed(3)} | ${torchS.toFixed(3)} (${threads} threads) | ${(ts / torchS).toFixed(1)}× |`,
    );
    process.stderr.write(`${rows[rows.length - 1]!}\n`);
  }
}
process.stdout.write(`${rows.join("\n")}\n`);
