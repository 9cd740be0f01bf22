/**
 * Where one training step's time goes, by kernel: `npm run bench:profile -- [--arch primus-xs|resenc-xs|spark-resenc-xs] [--block N] [--size N]
 * [--batch B] [--top K] [--calls KernelName]`. Runs warm-up steps, times 5 steps (wall), then one step under
 * `tf.profile` and prints kernel time per kernel name (calls, ms) and, with `--calls`, the slowest calls of one kernel
 * with their shapes. The step is the training loop's: MSE loss, `valueAndGrads`, SGD-Nesterov update. Backend: the
 * default cpu path (native kernels when built). Kernel times are wall times of each kernel on a possibly shared
 * machine: compare within one run.
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../runtime/src/models/backend/select.js";
import { createNetwork } from "../runtime/src/models/registry.js";
import { valueAndGrads } from "../runtime/src/training/backprop.js";
import { isSparkNetwork } from "../runtime/src/models/spark.js";
import { blockMask } from "../runtime/src/methods/mae.js";
import { Rng } from "../runtime/src/data/rng.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : dflt;
}

const key = arg("arch", "primus-xs");
const size = Number(arg("size", key.startsWith("primus") ? "64" : "32"));
const batch = Number(arg("batch", "2"));
const top = Number(arg("top", "25"));
const callsOf = arg("calls", "");

const choice = await selectBackend("cpu");
const presets: Record<string, Record<string, unknown>> = {
  "primus-xs": { embedDim: 192, depth: 2, heads: 4, dropPathRate: 0 },
  "resenc-xs": { features: [8, 16, 32, 64] },
  "spark-resenc-xs": { features: [8, 16, 32, 64] },
};
const net = createNetwork(key, { patchSize: [size, size, size], seed: 0, ...(presets[key] ?? {}) });
const x = tf.randomNormal<tf.Rank.R5>([batch, size, size, size, 1]);
const target = tf.randomNormal<tf.Rank.R5>([batch, size, size, size, 1]);
const vars = [...net.weights.values()].filter((v) => v.trainable);
const opt = tf.train.momentum(1e-3, 0.99, true);
// SparK wrappers: the masked forward with a 75 % block mask of --block (default 16) voxels
const block = Number(arg("block", "16"));
const mask = isSparkNetwork(net)
  ? tf.tensor5d(
      Float32Array.from(
        Array.from({ length: batch }, (_, b) =>
          Array.from(blockMask(new Rng(b), [size, size, size], block, 0.75).mask),
        ).flat(),
      ),
      [batch, size, size, size, 1],
    )
  : undefined;
const forward = (): tf.Tensor5D =>
  isSparkNetwork(net) && mask !== undefined
    ? net.forwardSparse(x, { mask, blockSize: block }, { training: true })
    : net.apply(x, { training: true, seed: 0 });
const step = (): tf.Tensor[] => {
  const r = valueAndGrads(() => tf.mean(tf.squaredDifference(forward(), target)), vars);
  opt.applyGradients(Object.entries(r.grads).map(([name, tensor]) => ({ name, tensor })));
  return [r.value, ...Object.values(r.grads)];
};
for (let i = 0; i < 3; i++) tf.dispose(step());
const t0 = performance.now();
for (let i = 0; i < 5; i++) tf.dispose(step());
const wall = (performance.now() - t0) / 5;
const info = await tf.profile(() => step());
const byName = new Map<string, { ms: number; n: number }>();
const calls: { name: string; ms: number; shapes: string }[] = [];
let total = 0;
for (const k of info.kernels) {
  const ms = k.kernelTimeMs as number;
  // scope entries (`fusedMatMul__op`, custom-gradient scopes) contain their kernels: count kernels only
  if (k.name.endsWith("__op") || k.name === "unnamed scope") continue;
  total += ms;
  const r = byName.get(k.name) ?? { ms: 0, n: 0 };
  r.ms += ms;
  r.n++;
  byName.set(k.name, r);
  if (k.name === callsOf) {
    const fmt = (ss: (number[] | null)[]): string => ss.map((s) => `[${s === null ? "?" : s.join(",")}]`).join(" ");
    calls.push({ name: k.name, ms, shapes: `${fmt(k.inputShapes)} -> ${fmt(k.outputShapes)}` });
  }
}
process.stdout.write(
  `${key} ${batch}×1×${size}³, backend cpu${choice.nativeKernels ? " + native kernels" : " (stock kernels)"}: wall ${wall.toFixed(1)} ms/step (mean of 5), profiled step kernel time ${total.toFixed(1)} ms in ${info.kernels.length} kernel calls\n`,
);
process.stdout.write("| kernel | ms | calls | share |\n| --- | --- | --- | --- |\n");
for (const [name, r] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) {
  process.stdout.write(`| ${name} | ${r.ms.toFixed(1)} | ${r.n} | ${((100 * r.ms) / total).toFixed(1)} % |\n`);
}
for (const c of calls.sort((a, b) => b.ms - a.ms).slice(0, 12))
  process.stdout.write(`${c.name} ${c.ms.toFixed(2)} ms ${c.shapes}\n`);
tf.dispose([x, target]);
opt.dispose();
net.dispose();
