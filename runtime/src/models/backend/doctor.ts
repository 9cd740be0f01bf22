/**
 * `ssl3d doctor`: which tfjs backends can load here and why the others cannot, TensorFlow's version, the devices it
 * registered and the CUDA libraries it loaded, and the native kernels' build options. Each TensorFlow package is
 * probed in a child process (tfjs-node and tfjs-node-gpu both register the backend "tensorflow", so one process can
 * hold only one; the child also captures TensorFlow's own log, which names why a GPU was skipped).
 * `--gpu`: fails with one line unless TensorFlow registered a GPU; otherwise checks conv3d forward + both gradients
 * on the GPU against the cpu backend with TF32 off (NVIDIA_TF32_OVERRIDE=0) and times one ResEnc training step.
 */
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs";
import { EnvironmentError } from "../../errors.js";
import { createNetwork } from "../registry.js";
import { valueAndGrads } from "../../training/backprop.js";
import { nativeInfo, type NativeInfo } from "./native.js";
import { selectBackend, TFJS_NODE_PACKAGES, tfjsNodeMissing, tfjsNodePackageDir } from "./select.js";
import { childEnv, envString, setProcessDefault, setProcessValue } from "../../config/settings.js";

export interface TensorFlowProbe {
  readonly package: string;
  readonly loads: boolean;
  /** Why it does not load (not built, import error). */
  readonly error?: string;
  readonly version?: string;
  /** Devices TensorFlow registered, e.g. ["CPU:0", "GPU:0 (NVIDIA H100 80GB HBM3, 79 GiB)"]. */
  readonly devices?: readonly string[];
  readonly gpu?: boolean;
  /** CUDA libraries mapped into the process after TensorFlow initialised. */
  readonly cudaLibraries?: readonly string[];
  /** TensorFlow's warnings about GPU setup (dlopen failures, cuInit errors, ...). */
  readonly gpuLog?: readonly string[];
}

export interface DoctorReport {
  readonly backends: readonly { readonly name: string; readonly available: boolean; readonly detail: string }[];
  readonly tensorflow: readonly TensorFlowProbe[];
  readonly native: NativeInfo | null;
  readonly gpuCheck?: GpuCheck;
}

export interface GpuCheck {
  readonly device: string;
  /** conv3d forward, dx, dw: max |gpu − cpu| / max |cpu|. */
  readonly conv3d: { readonly forward: number; readonly dx: number; readonly dw: number };
  readonly resencStepSeconds: number;
  readonly resencShape: string;
}

const PROBE = String.raw`
const tf = require(process.env.SSL3D_PROBE_PKG);
const b = tf.backend();
tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(1)).dataSync());
const maps = require("fs").readFileSync("/proc/self/maps", "utf8").split("\n").map((l) => l.trim().split(/\s+/)[5]);
const libs = [...new Set(maps.filter((p) => p && /\/lib(cu|nv)[^/]*\.so/.test(p)))].sort();
console.log(JSON.stringify({ version: b.binding.TF_Version, gpu: b.isUsingGpuDevice, libs }));
`;

/** Probe one tfjs-node package in a child process with TensorFlow's full log. */
export function probeTensorFlow(pkg: string): TensorFlowProbe {
  const missing = tfjsNodeMissing(pkg);
  if (missing !== undefined) return { package: pkg, loads: false, error: missing };
  const dir = tfjsNodePackageDir(pkg)!;
  const env = childEnv({
    SSL3D_PROBE_PKG: dir,
    TF_CPP_MIN_LOG_LEVEL: "0",
    TF_FORCE_GPU_ALLOW_GROWTH: envString("TF_FORCE_GPU_ALLOW_GROWTH") ?? "true",
  });
  const r = spawnSync(process.execPath, ["-e", PROBE], { env, encoding: "utf8", timeout: 300_000 });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !last.startsWith("{")) {
    return {
      package: pkg,
      loads: false,
      error: (
        r.stderr
          .trim()
          .split("\n")
          .filter((l) => /error/i.test(l))
          .pop() ?? `exit ${String(r.status)}`
      ).slice(0, 300),
    };
  }
  const out = JSON.parse(last) as { version: string; gpu: boolean; libs: string[] };
  const log = r.stderr.split("\n");
  const gpus = log.flatMap((l) => {
    const m = /Created device \/job:\S+\/device:(GPU:\d+) with (\d+) MB memory:.*name: ([^,]+)/.exec(l);
    return m === null ? [] : [`${m[1]} (${m[3]}, ${(Number(m[2]) / 1024).toFixed(0)} GiB)`];
  });
  const gpuLog = log
    .filter((l) => /dlopen|GPU|cuInit|CUDA|cuda driver|libcuda/i.test(l) && !/Created device/.test(l))
    .map((l) => l.replace(/^[IWEF]\d{4} [\d:.]+\s+\d+\s+\S+:\d+\]\s*/, "").trim())
    .filter((l) => l !== "")
    .slice(0, 8);
  return {
    package: pkg,
    loads: true,
    version: out.version,
    gpu: out.gpu,
    devices: ["CPU:0", ...gpus],
    cudaLibraries: out.libs,
    gpuLog,
  };
}

/** The one-line reason TensorFlow registered no GPU, from its log. */
export function noGpuReason(p: TensorFlowProbe): string {
  if (!p.loads) return p.error ?? `${p.package} does not load`;
  const telling = p.gpuLog?.find((l) => /Cannot dlopen|cuInit|could not find cuda|libcuda|driver/i.test(l));
  return `TensorFlow ${p.version ?? "?"} registered no GPU device${telling === undefined ? "" : `: ${telling}`}`;
}

export function doctorReport(): DoctorReport {
  const tfProbes = [probeTensorFlow(TFJS_NODE_PACKAGES["node-gpu"]), probeTensorFlow(TFJS_NODE_PACKAGES.node)];
  const native = nativeInfo();
  const [gpu, cpu] = tfProbes as [TensorFlowProbe, TensorFlowProbe];
  const backends = [
    {
      name: "node-gpu",
      available: gpu.loads && gpu.gpu === true,
      detail: gpu.loads
        ? gpu.gpu === true
          ? `TensorFlow ${gpu.version} on ${gpu.devices?.[1] ?? "GPU"}`
          : noGpuReason(gpu)
        : (gpu.error ?? ""),
    },
    {
      name: "node",
      available: cpu.loads,
      detail: cpu.loads
        ? `TensorFlow ${cpu.version} on the CPU (forced with --backend node; auto prefers the native kernels)`
        : (cpu.error ?? ""),
    },
    {
      name: "cpu-native",
      available: native !== null,
      detail:
        native === null
          ? "the native kernel addon is not built (npm run build:native)"
          : `native kernels: oneDNN ${native.dnnl ? "yes" : "no"}, OpenBLAS ${native.blas ? "yes" : "no"}, GEMM ${native.gemmIsa}`,
    },
    { name: "wasm", available: true, detail: "XNNPACK (4 GiB heap)" },
    { name: "cpu", available: true, detail: "stock tfjs kernels (slow)" },
  ];
  return { backends, tensorflow: tfProbes, native };
}

/** float32 with a different summation order; TF32 (10-bit mantissa) would give ~1e-3. */
const GPU_PARITY_TOL = 1e-4;

function rel(a: Float32Array, b: Float32Array): number {
  let d = 0,
    m = 1e-12;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

function conv3dGrads(x: tf.Tensor5D, w: tf.Tensor5D): Float32Array[] {
  return tf.tidy(() => {
    const r = tf.randomNormal(x.shape.slice(0, 4).concat([w.shape[4]]), 0, 1, "float32", 3);
    const f = (a: tf.Tensor5D, b: tf.Tensor5D): tf.Tensor => tf.sum(tf.mul(tf.conv3d(a, b, 1, "same"), r));
    const { grads } = tf.valueAndGrads(f as (...a: tf.Tensor[]) => tf.Scalar)([x, w]);
    return [tf.conv3d(x, w, 1, "same"), ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

/** `doctor --gpu`: the GPU must be registered; conv3d parity against the cpu backend (TF32 off) and one ResEnc step. */
export async function gpuCheck(probe: TensorFlowProbe, size = 64): Promise<GpuCheck> {
  if (probe.gpu !== true) throw new EnvironmentError(`no GPU: ${noGpuReason(probe)}`, { field: "--gpu" });
  setProcessValue("NVIDIA_TF32_OVERRIDE", "0");
  setProcessDefault("TF_FORCE_GPU_ALLOW_GROWTH", "true");
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 8], 0, 1, "float32", 1);
  const w = tf.randomNormal<tf.Rank.R5>([3, 3, 3, 8, 16], 0, 0.2, "float32", 2);
  await selectBackend("cpu");
  const ref = conv3dGrads(x, w);
  const choice = await selectBackend("node-gpu");
  if (choice.gpu !== true)
    throw new EnvironmentError("no GPU: TensorFlow registered no GPU device in this process", { field: "--gpu" });
  const got = conv3dGrads(x, w);
  tf.dispose([x, w]);
  const net = createNetwork("resenc-l", { patchSize: [size, size, size], seed: 0 });
  const input = tf.randomNormal<tf.Rank.R5>([2, size, size, size, 1]);
  const vars = [...net.weights.values()].filter((v) => v.trainable);
  const opt = tf.train.momentum(1e-3, 0.99, true);
  let seconds = 0;
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    const { value, grads } = valueAndGrads(
      () => tf.mean(tf.square(tf.sub(net.apply(input, { training: true, seed: i }), input))),
      vars,
    );
    opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
    seconds = (performance.now() - t0) / 1000; // the second (warm) step is reported
  }
  tf.dispose(input);
  opt.dispose();
  net.dispose();
  const conv = { forward: rel(got[0]!, ref[0]!), dx: rel(got[1]!, ref[1]!), dw: rel(got[2]!, ref[2]!) };
  const worst = Math.max(conv.forward, conv.dx, conv.dw);
  if (!(worst <= GPU_PARITY_TOL))
    throw new EnvironmentError(
      `GPU conv3d differs from the cpu backend: forward ${conv.forward}, dx ${conv.dx}, dw ${conv.dw} (max relative, TF32 off; limit ${GPU_PARITY_TOL})`,
      { field: "--gpu" },
    );
  return {
    device: probe.devices?.[1] ?? "GPU:0",
    conv3d: conv,
    resencStepSeconds: seconds,
    resencShape: `resenc-l, 2×1×${size}³, SGD step`,
  };
}

/** Human-readable report. */
export function formatDoctor(r: DoctorReport): string {
  const lines = ["backends:"];
  for (const b of r.backends) lines.push(`  ${b.available ? "yes" : "no "} ${b.name.padEnd(10)} ${b.detail}`);
  for (const p of r.tensorflow.filter((t) => t.loads)) {
    lines.push(
      `${p.package}: TensorFlow ${p.version}; devices ${p.devices?.join(", ")}; CUDA libraries loaded: ${p.cudaLibraries?.length ? p.cudaLibraries.map((l) => l.split("/").pop()).join(" ") : "none"}`,
    );
    for (const l of p.gpuLog ?? []) lines.push(`  TensorFlow: ${l}`);
  }
  lines.push(`native kernels: ${r.native === null ? "not built" : JSON.stringify(r.native)}`);
  if (r.gpuCheck !== undefined) {
    const g = r.gpuCheck;
    lines.push(
      `GPU check on ${g.device}: conv3d vs cpu (TF32 off) forward ${g.conv3d.forward.toExponential(1)}, dx ${g.conv3d.dx.toExponential(1)}, dw ${g.conv3d.dw.toExponential(1)}; ${g.resencShape}: ${g.resencStepSeconds.toFixed(2)} s`,
    );
  }
  return lines.join("\n");
}
