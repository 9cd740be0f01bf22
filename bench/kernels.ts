/**
 * `npm run bench:kernels` — the native cpu kernels vs stock tfjs cpu vs stock tfjs wasm vs PyTorch CPU, one run,
 * same machine, reported as ratios to PyTorch (threads: 2 everywhere unless --threads).
 *
 * Workloads (small hand-built networks, independent of the model registry; the shapes of the measurements in
 * docs/performance.md):
 *  - conv3d micro: 3x3x3, 32->32 channels, batch 2, 32^3, forward and forward+backward (given dy)
 *  - resunet step: 3D residual encoder-decoder (8/16/32/64 features, instance norm, LeakyReLU, k2s2 transposed-conv
 *    upsampling, skip concat), batch 2 x 1x32^3, softmax cross-entropy, SGD Nesterov momentum
 *  - vit block step: pre-norm transformer block, B=2, T=512, C=192, 3 heads, MLP 768, exact GELU
 *
 * Flags: --quick (native + torch only; skips the slow stock backends), --reps N, --profile (per-kernel time table of
 * one native step of each net via tf.profile; --detail adds the slowest single calls with input shapes),
 * --threads N, --json FILE (write results), --no-torch.
 * --memory S: peak RSS of one training step of a ResEnc-L-shaped stand-in (widths 32..320, blocks 1,3,4,6,6,6) at
 * batch 2 x 1xS^3, ssl3d native vs torch, each in its own process.
 */
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import {
  instanceNormFused,
  layerNormFused,
  loadNativeKernels,
  nativeInfo,
  setNativeOptions,
  unloadNativeKernels,
} from "../runtime/src/models/backend/native.js";

const argv = process.argv.slice(2);
const flag = (n: string): boolean => argv.includes(n);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : d;
};
const quick = flag("--quick");
const reps = Number(opt("--reps", "5"));
const threads = Number(opt("--threads", "2"));
const here = dirname(fileURLToPath(import.meta.url));

type Net = { vars: tf.Variable[]; loss: () => tf.Scalar };

// ---------- networks (NDHWC, plain tfjs ops: the cpu engine dispatches to the native kernels) ----------
let seed = 1;
const rnd = (shape: number[], std: number): tf.Variable =>
  tf.variable(tf.randomNormal(shape, 0, std, "float32", seed++));
const heStd = (fanIn: number): number => Math.sqrt(2 / fanIn);

/** When set, instance/layer norm are the fused native kernels (instanceNormFused, layerNormFused). */
let fusedNorm = false;

function instanceNorm(x: tf.Tensor5D, g: tf.Variable, b: tf.Variable): tf.Tensor5D {
  if (fusedNorm) return instanceNormFused(x, g as tf.Tensor1D, b as tf.Tensor1D);
  const { mean, variance } = tf.moments(x, [1, 2, 3], true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
}

/** k2s2 transposed conv (upsampling) with a custom gradient; tfjs has none for Conv3DBackpropInputV2. */
function upsample(x: tf.Tensor5D, w: tf.Variable): tf.Tensor5D {
  const outC = w.shape[3]!;
  const outShape: [number, number, number, number, number] = [
    x.shape[0],
    x.shape[1] * 2,
    x.shape[2] * 2,
    x.shape[3] * 2,
    outC,
  ];
  const f = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, wi, save] = inputs as [tf.Tensor5D, tf.Tensor5D, tf.GradSaveFunc];
    save([xi, wi]);
    return {
      value: tf.conv3dTranspose(xi, wi, outShape, 2, "valid"),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as [tf.Tensor5D, tf.Tensor5D];
        const dx = tf.conv3d(dy as tf.Tensor5D, sw, 2, "valid");
        const dw = tf
          .engine()
          .runKernel<tf.Tensor>(
            "Conv3DBackpropFilterV2",
            { x: dy, dy: sx },
            { strides: [2, 2, 2], pad: "valid", filterShape: sw.shape },
          );
        return [dx, dw];
      },
    };
  });
  return f(x, w);
}

function resUNet(batch: number, size: number, feats = [8, 16, 32, 64], blocksPerStage = feats.map(() => 1)): Net {
  const vars: tf.Variable[] = [];
  const conv = (cin: number, cout: number, k = 3): tf.Variable<tf.Rank.R5> => {
    const v = tf.variable(
      tf.randomNormal<tf.Rank.R5>([k, k, k, cin, cout], 0, heStd(k * k * k * cin), "float32", seed++),
    );
    vars.push(v);
    return v;
  };
  const norm = (c: number): [tf.Variable, tf.Variable] => {
    const g = tf.variable(tf.ones([c])),
      b = tf.variable(tf.zeros([c]));
    vars.push(g, b);
    return [g, b];
  };
  const stem = conv(1, feats[0]!),
    stemN = norm(feats[0]!);
  const down = feats.map((f, i) => (i === 0 ? null : { w: conv(feats[i - 1]!, f), n: norm(f) }));
  const blocks = feats.map((f, i) =>
    Array.from({ length: blocksPerStage[i] ?? 1 }, () => ({
      w1: conv(f, f),
      n1: norm(f),
      w2: conv(f, f),
      n2: norm(f),
    })),
  );
  const ups = feats.slice(1).map((f, i) => ({
    w: (() => {
      const v = rnd([2, 2, 2, feats[i]!, f], heStd(8 * f));
      vars.push(v);
      return v;
    })(),
    c: conv(2 * feats[i]!, feats[i]!),
    n: norm(feats[i]!),
  }));
  const head = conv(feats[0]!, 2, 1);
  const headB = tf.variable(tf.zeros([2]));
  vars.push(headB);
  const x = tf.randomNormal<tf.Rank.R5>([batch, size, size, size, 1], 0, 1, "float32", 99);
  const labels = tf.oneHot(
    tf.cast(tf.greater(tf.randomUniform([batch * size ** 3], 0, 1, "float32", 98), 0.5), "int32"),
    2,
  );
  const act = (t: tf.Tensor5D): tf.Tensor5D => tf.leakyRelu(t, 0.01);
  // norm -> LeakyReLU; with fusedNorm one native kernel (and one gradient kernel) does both.
  const normAct = (t: tf.Tensor5D, [g, b]: [tf.Variable, tf.Variable]): tf.Tensor5D =>
    fusedNorm
      ? instanceNormFused(t, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5, { leakyReluAlpha: 0.01 })
      : act(instanceNorm(t, g, b));
  const loss = (): tf.Scalar => {
    let h = normAct(tf.conv3d(x, stem, 1, "same"), stemN);
    const skips: tf.Tensor5D[] = [];
    feats.forEach((_, i) => {
      const d = down[i];
      if (d) h = normAct(tf.conv3d(h, d.w, 2, "same"), d.n);
      for (const bl of blocks[i]!) {
        const r = normAct(tf.conv3d(h, bl.w1, 1, "same"), bl.n1);
        h = act(tf.add(instanceNorm(tf.conv3d(r, bl.w2, 1, "same"), ...bl.n2), h));
      }
      skips.push(h);
    });
    for (let i = feats.length - 2; i >= 0; i--) {
      const u = ups[i]!;
      h = normAct(tf.conv3d(tf.concat([upsample(h, u.w), skips[i]!], 4), u.c, 1, "same"), u.n);
    }
    const logits = tf.add(tf.conv3d(h, head, 1, "valid"), headB).reshape([-1, 2]);
    return tf.losses.softmaxCrossEntropy(labels, logits);
  };
  return { vars, loss };
}

function vitBlock(B: number, T: number, C: number, heads: number, mlp: number): Net {
  const vars: tf.Variable[] = [];
  const lin = (i: number, o: number): [tf.Variable, tf.Variable] => {
    const w = rnd([i, o], Math.sqrt(1 / i)),
      b = tf.variable(tf.zeros([o]));
    vars.push(w, b);
    return [w, b];
  };
  const ln = (): [tf.Variable, tf.Variable] => {
    const g = tf.variable(tf.ones([C])),
      b = tf.variable(tf.zeros([C]));
    vars.push(g, b);
    return [g, b];
  };
  const ln1 = ln(),
    qkv = lin(C, 3 * C),
    proj = lin(C, C),
    ln2 = ln(),
    fc1 = lin(C, mlp),
    fc2 = lin(mlp, C);
  const x = tf.randomNormal<tf.Rank.R3>([B, T, C], 0, 1, "float32", 97);
  const D = C / heads;
  const layerNorm = (t: tf.Tensor, [g, b]: [tf.Variable, tf.Variable]): tf.Tensor => {
    if (fusedNorm) return layerNormFused(t, g as tf.Tensor1D, b as tf.Tensor1D);
    const { mean, variance } = tf.moments(t, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(t, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
  };
  // Rank-3 x rank-2 matMul would broadcast the weight, whose BatchMatMul gradient tfjs cannot reduce: go 2-D.
  const dense = (t: tf.Tensor, [w, b]: [tf.Variable, tf.Variable]): tf.Tensor =>
    tf.reshape(tf.add(tf.matMul(tf.reshape(t, [-1, t.shape[t.shape.length - 1]!]), w), b), [
      ...t.shape.slice(0, -1),
      w.shape[1]!,
    ]);
  const gelu = (t: tf.Tensor): tf.Tensor => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.mul(t, Math.SQRT1_2)), 1));
  const loss = (): tf.Scalar => {
    const q3 = tf.transpose(tf.reshape(dense(layerNorm(x, ln1), qkv), [B, T, 3, heads, D]), [2, 0, 3, 1, 4]);
    const [q, k, v] = tf.unstack(q3, 0) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const att = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)));
    const o = tf.reshape(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]), [B, T, C]);
    const h = tf.add(x, dense(o, proj));
    const out = tf.add(h, dense(gelu(dense(layerNorm(h, ln2), fc1)), fc2));
    return tf.mean(tf.square(out));
  };
  return { vars, loss };
}

// ---------- timing ----------
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** CPU seconds (all threads of this process) of the last `time` call's median run; see `time`. */
let lastCpu = 0;

/**
 * Median wall seconds of fn. Also records the median process CPU seconds (user + sys, all threads) in `lastCpu`:
 * with OpenMP threads sleeping instead of spinning, CPU time measures work and is much less sensitive than wall
 * time to other jobs on a shared machine.
 */
async function time(fn: () => tf.Tensor | tf.Tensor[], n: number, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) {
    const r = fn();
    await Promise.all([r].flat().map((t) => t.data()));
    tf.dispose(r);
  }
  const ts: number[] = [],
    cs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now(),
      c0 = process.cpuUsage();
    const r = fn();
    await Promise.all([r].flat().map((t) => t.data()));
    ts.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cs.push((c.user + c.system) / 1e6);
    tf.dispose(r);
  }
  lastCpu = median(cs);
  return median(ts);
}

function sgdStep(net: Net, opt: tf.Optimizer): tf.Tensor {
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(net.loss, net.vars);
    opt.applyGradients(grads);
    return value;
  });
}

function convMicro(): { x: tf.Tensor5D; w: tf.Tensor5D; dy: tf.Tensor5D } {
  return {
    x: tf.randomNormal<tf.Rank.R5>([2, 32, 32, 32, 32], 0, 1, "float32", 1),
    w: tf.randomNormal<tf.Rank.R5>([3, 3, 3, 32, 32], 0, 0.05, "float32", 2),
    dy: tf.randomNormal<tf.Rank.R5>([2, 32, 32, 32, 32], 0, 1, "float32", 3),
  };
}

async function runTfjs(label: string, n: number, profile: boolean, only?: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  if (only === undefined) {
    const { x, w, dy } = convMicro();
    out.convFwd = await time(() => tf.conv3d(x, w, 1, "same"), n);
    out.convFwdCpu = lastCpu;
    const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, 1, "same"));
    out.convFwdBwd = await time(() => g([x, w], dy), n, n > 1 ? 1 : 0);
    out.convFwdBwdCpu = lastCpu;
    tf.dispose([x, w, dy]);
  }
  const nets = [
    ["resunetStep", () => resUNet(2, 32)],
    ["vitStep", () => vitBlock(2, 512, 192, 3, 768)],
  ] as const;
  for (const [name, make] of nets.filter(([nm]) => only === undefined || only.includes(nm))) {
    const net = make();
    const opt = tf.train.momentum(0.01, 0.99, true);
    const before = tf.memory().numTensors;
    out[name] = await time(() => sgdStep(net, opt), n, 1);
    out[`${name}Cpu`] = lastCpu;
    if (profile) {
      const p = await tf.profile(() => sgdStep(net, opt));
      const byOp = new Map<string, number>();
      for (const k of p.kernels)
        byOp.set(k.name, (byOp.get(k.name) ?? 0) + (typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0));
      const total = [...byOp.values()].reduce((s, v) => s + v, 0);
      console.log(`\n[${label}] ${name}: kernel time by op (total ${total.toFixed(0)} ms)`);
      for (const [op, ms] of [...byOp.entries()].sort((a, b) => b[1] - a[1]).slice(0, 14)) {
        console.log(
          `  ${op.padEnd(24)} ${ms.toFixed(1).padStart(9)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)} %`,
        );
      }
      if (flag("--detail")) {
        const calls = p.kernels.map((k) => ({
          name: k.name,
          ms: typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0,
          shapes: JSON.stringify(k.inputShapes),
        }));
        for (const c of calls.sort((x, y) => y.ms - x.ms).slice(0, 25))
          console.log(`    ${c.name.padEnd(24)} ${c.ms.toFixed(1).padStart(8)} ms ${c.shapes}`);
      }
    }
    opt.dispose();
    tf.dispose(net.vars);
    if (tf.memory().numTensors > before + 2 * net.vars.length + 4) console.warn(`[${label}] ${name}: tensors leaked`);
  }
  return out;
}

function runTorch(): Record<string, number> | null {
  const candidates = [
    process.env.SSL3D_CACHE ? join(process.env.SSL3D_CACHE, "venv/bin/python") : "",
    "/usr/bin/python3",
  ];
  for (const py of candidates.filter((p) => p !== "" && existsSync(p))) {
    // OPENBLAS_NUM_THREADS=1: Debian's torch picks up OpenBLAS through libblas.so.3 when it is installed; its pthread
    // pool then competes with torch's OpenMP pool (3-10x slower steps on 2 cores), exactly as it did in the addon.
    const r = spawnSync(py, [join(here, "kernels_torch.py"), String(threads), String(reps)], {
      encoding: "utf8",
      timeout: 1_800_000,
      env: { ...process.env, OPENBLAS_NUM_THREADS: "1" },
    });
    if (r.status === 0) return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, number>;
    console.warn(`torch reference failed with ${py}: ${r.stderr.split("\n").slice(-3).join(" ")}`);
  }
  return null;
}

/** ResEnc-L's encoder widths and block counts (nnU-Net ResEncL: 6 stages); decoder: one conv per stage. */
const RESENC_L = { feats: [32, 64, 128, 256, 320, 320], blocks: [1, 3, 4, 6, 6, 6] };

/** Child-process mode: one training step of a ResEnc-L-shaped stand-in at size^3, batch 2; prints peak RSS. */
async function memoryChild(size: number): Promise<void> {
  await tf.setBackend("cpu");
  if (!loadNativeKernels()) throw new Error("native addon not built");
  fusedNorm = flag("--fused-norm");
  const net = resUNet(2, size, RESENC_L.feats, RESENC_L.blocks);
  const opt = tf.train.momentum(0.01, 0.99, true);
  const before = process.resourceUsage().maxRSS;
  const t0 = performance.now();
  let loss: tf.Tensor | undefined;
  const prof = await tf.profile(() => {
    loss = sgdStep(net, opt);
    return loss;
  });
  await loss!.data();
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    JSON.stringify({
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      setupRssMiB: before / 1024,
      seconds,
      tfjsPeakTensorMiB: prof.peakBytes / 2 ** 20,
    }),
  );
}

function memoryCompare(size: number): void {
  const run = (cmd: string, args: string[]): Record<string, number> | null => {
    const r = spawnSync(cmd, args, {
      encoding: "utf8",
      timeout: 3_600_000,
      env: { ...process.env, OPENBLAS_NUM_THREADS: "1" },
    });
    if (r.status !== 0) {
      console.warn(`${cmd} failed: ${r.stderr.split("\n").slice(-4).join(" ")}`);
      return null;
    }
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, number>;
  };
  const node = run(process.execPath, ["--import", "tsx", join(here, "kernels.ts"), "--memory-child", String(size)]);
  const nodeFused = run(process.execPath, [
    "--import",
    "tsx",
    join(here, "kernels.ts"),
    "--memory-child",
    String(size),
    "--fused-norm",
  ]);
  const py = ["/usr/bin/python3"].find((p) => existsSync(p))!;
  const torch = run(py, [join(here, "kernels_torch.py"), String(threads), "1", "memory", String(size)]);
  console.log(`ResEnc-L-shaped stand-in, batch 2 x 1x${size}^3, one SGD step: peak RSS (MiB) and step seconds`);
  console.log(`  ssl3d native: ${JSON.stringify(node)}`);
  console.log(`  ssl3d native, fused instance norm: ${JSON.stringify(nodeFused)}`);
  console.log(`  torch:        ${JSON.stringify(torch)}`);
  if (node && torch) console.log(`  peak RSS ratio ssl3d/torch: ${(node.maxRssMiB! / torch.maxRssMiB!).toFixed(2)}`);
  if (nodeFused && torch)
    console.log(`  peak RSS ratio ssl3d (fused IN)/torch: ${(nodeFused.maxRssMiB! / torch.maxRssMiB!).toFixed(2)}`);
}

async function main(): Promise<void> {
  const child = opt("--memory-child", "");
  if (child !== "") return memoryChild(Number(child));
  const mem = opt("--memory", "");
  if (mem !== "") {
    await tf.setBackend("cpu");
    loadNativeKernels();
    memoryCompare(Number(mem));
    return;
  }
  process.env.OMP_NUM_THREADS ??= String(threads);
  await tf.setBackend("cpu");
  if (!loadNativeKernels()) throw new Error("native addon not built: run `node native/build.mjs`");
  setNativeOptions({ threads });
  console.log(`native addon: ${JSON.stringify(nativeInfo())}`);
  const results: Record<string, Record<string, number>> = {};
  const torch = flag("--no-torch") ? null : runTorch();
  if (torch) results.torch = torch;
  results.native = await runTfjs("native", reps, flag("--profile"));
  fusedNorm = true;
  results.nativeFusedNorm = await runTfjs("native+fused norms", reps, flag("--profile"), ["resunetStep", "vitStep"]);
  fusedNorm = false;
  setNativeOptions({ dnnl: false, blas: false });
  results.nativePortable = await runTfjs("native-portable", Math.max(1, Math.floor(reps / 2)), false);
  setNativeOptions({ dnnl: true, blas: false });
  // The machine may be shared: measure torch again after the native runs and keep, per workload, the faster of the
  // two torch medians (conservative for ssl3d's ratios).
  const torchAfter = torch ? runTorch() : null;
  if (torch && torchAfter) {
    for (const [k, v] of Object.entries(torchAfter)) torch[k] = Math.min(torch[k] ?? v, v);
  }
  if (!quick) {
    unloadNativeKernels();
    results.stockCpu = await runTfjs("stock-cpu", 1, flag("--profile"));
    setWasmPaths(join(here, "..", "node_modules", "@tensorflow", "tfjs-backend-wasm", "dist") + "/");
    await tf.setBackend("wasm");
    const { x, w, dy } = convMicro();
    const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, 1, "same"));
    results.stockWasm = {
      convFwd: await time(() => tf.conv3d(x, w, 1, "same"), 1, 0),
      convFwdBwd: await time(() => g([x, w], dy), 1, 0),
    };
    tf.dispose([x, w, dy]);
  }
  const table = (title: string, cols: string[]): void => {
    console.log(`\n${title}`);
    console.log(`${"impl".padEnd(16)}${cols.map((c) => c.padStart(22)).join("")}`);
    for (const [impl, r] of Object.entries(results)) {
      const cells = cols.map((c) => {
        const v = r[c];
        if (v === undefined) return "-".padStart(22);
        const ratio = torch?.[c] !== undefined && impl !== "torch" ? ` (${(v / torch[c]).toFixed(2)}x)` : "";
        return `${v.toFixed(3)}${ratio}`.padStart(22);
      });
      console.log(`${impl.padEnd(16)}${cells.join("")}`);
    }
  };
  const cols = ["convFwd", "convFwdBwd", "resunetStep", "vitStep"];
  table(
    `wall seconds (median of ${reps}; stock backends n=1; torch: faster of two medians, before and after), ` +
      `threads=${threads}; ratio = time / torch time`,
    cols,
  );
  table(
    "CPU seconds, all threads (median; less sensitive to other jobs on the machine); ratio = CPU / torch CPU",
    cols.map((c) => `${c}Cpu`),
  );
  const jsonOut = opt("--json", "");
  if (jsonOut !== "") writeFileSync(jsonOut, JSON.stringify({ threads, reps, results }, null, 2));
}

await main();
