import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "./runtime/src/models/backend/select.js";
import { createNetwork } from "./runtime/src/models/registry.js";
await selectBackend("cpu");
const key = process.argv[2]!;
const opts = key === "primus-xs" ? { embedDim: 192, heads: 4, depth: 2, patchSize: [64, 64, 64] as [number, number, number], dropPathRate: 0 } : { features: [8, 16, 32, 64], patchSize: [32, 32, 32] as [number, number, number] };
const size = key === "primus-xs" ? 64 : 32;
const net = createNetwork(key, { ...opts, seed: 0 });
const opt = tf.train.momentum(1e-3, 0.99, true);
const x = tf.randomNormal<tf.Rank.R5>([2, size, size, size, 1]); const target = tf.randomNormal<tf.Rank.R5>([2, size, size, size, 1]);
const vars = [...net.weights.values()].filter((v) => v.trainable);
const step = () => { const { value, grads } = tf.variableGrads(() => tf.mean(tf.squaredDifference(net.apply(x, { training: true, seed: 0 }), target)), vars); opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor }))); tf.dispose(Object.values(grads)); return value; };
for (let i = 0; i < 2; i++) { const c0 = process.cpuUsage(); const t0 = performance.now(); const v = step(); await v.data(); v.dispose(); const c = process.cpuUsage(c0); console.log("step wall", ((performance.now() - t0) / 1000).toFixed(3), "cpu", ((c.user + c.system) / 1e6).toFixed(3)); }
const p = await tf.profile(() => step());
const by = new Map<string, [number, number]>();
for (const k of p.kernels) { const e = by.get(k.name) ?? [0, 0]; e[0] += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0; e[1]++; by.set(k.name, e); }
console.log("kernels", p.kernels.length);
for (const [n, [ms, c]] of [...by.entries()].sort((a, b) => b[1][0] - a[1][0]).slice(0, 15)) console.log(n.padEnd(26), ms.toFixed(1).padStart(8), "ms", String(c).padStart(5), "calls");
