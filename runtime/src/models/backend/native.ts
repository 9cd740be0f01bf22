/**
 * ssl3d native CPU kernels: registers the optional C++ addon (`native/`, built by `npm install`) as the
 * implementation of the hot tfjs kernels on the `cpu` backend, under their standard kernel names. Models keep
 * calling plain tfjs ops (tf.conv3d and its autodiff, tf.matMul, ...); the engine dispatches to these kernels.
 *
 * Kernels: Conv3D, Conv3DBackpropInputV2, Conv3DBackpropFilterV2 (oneDNN when the addon was built with it, else
 * im2col + GEMM), BatchMatMul and _FusedMatMul (oneDNN's sgemm when built with oneDNN, else the addon's own SIMD
 * GEMM; OpenBLAS sgemm on request; SSL3D_NATIVE_GEMM=own forces the own GEMM),
 * and the memory-bound ops that dominate a step once convolutions are fast: broadcasting Add/Sub/Multiply/RealDiv/
 * SquaredDifference, Greater/GreaterEqual/Less/LessEqual/Equal, Select, Sum/Mean over a contiguous run of axes, Concat, SplitV, Slice (non-contiguous), PadV2, AvgPool3D/AvgPool3DGrad ('valid'), Transpose, Softmax (last axis) and
 * the unary Neg/Exp/Erf/LeakyRelu/Square/Rsqrt/Relu/Sqrt/Sigmoid (all float32; other dtypes and shapes fall through to
 * the stock kernels).
 * Tensors are read and written in place through the cpu backend's data storage (no copies).
 *
 * Env: SSL3D_NATIVE=0 disables; SSL3D_NATIVE_THREADS=n sets the kernel thread count (default: all cores);
 * SSL3D_NATIVE_BLAS=1 uses the linked OpenBLAS (single-threaded) instead of the addon's own GEMM;
 * SSL3D_NATIVE_ADDON=/path/to/ssl3d_native.node loads a specific build. OMP_WAIT_POLICY defaults to `passive` (set
 * it, or GOMP_SPINCOUNT, to override) because spinning OpenMP threads stall on shared or throttled cores.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { log } from "../../observability/log.js";

/** The N-API surface of native/src/addon.cc. */
export interface NativeAddon {
  conv3d(x: Float32Array, w: Float32Array, y: Float32Array, geometry: Int32Array): void;
  conv3dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, geometry: Int32Array): void;
  conv3dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, geometry: Int32Array): void;
  matmul(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transposeA: boolean,
    transposeB: boolean, batchIndexA: Int32Array, batchIndexB: Int32Array): void;
  /** op: 0 add, 1 sub, 2 mul, 3 div, 4 squared difference (numpy broadcasting). */
  binary(op: number, a: Float32Array, aShape: Int32Array, b: Float32Array, bShape: Int32Array, out: Float32Array): void;
  /** op: 0 greater, 1 greaterEqual, 2 less, 3 lessEqual, 4 equal; out is tfjs's bool storage. */
  compare(op: number, a: Float32Array, aShape: Int32Array, b: Float32Array, bShape: Int32Array, out: Uint8Array): void;
  select(condition: Uint8Array, t: Float32Array, e: Float32Array, out: Float32Array): void;
  reduceSum(x: Float32Array, outer: number, reduced: number, inner: number, scale: number, y: Float32Array): void;
  concat(inputs: Float32Array[], widths: Int32Array, outer: number, out: Float32Array): void;
  split(x: Float32Array, outputs: Float32Array[], widths: Int32Array, outer: number): void;
  softmax(x: Float32Array, rows: number, n: number, y: Float32Array): void;
  /** op: 0 neg, 1 exp, 2 erf, 3 leaky relu, 4 square, 5 rsqrt, 6 relu, 7 sqrt, 8 sigmoid. */
  unary(op: number, x: Float32Array, alpha: number, y: Float32Array): void;
  transpose(x: Float32Array, shape: Int32Array, perm: Int32Array, y: Float32Array): void;
  /** alpha: slope of a fused LeakyReLU after the affine; 1 = none. */
  instanceNorm(x: Float32Array, b: number, s: number, c: number, gamma: Float32Array, beta: Float32Array, eps: number,
    y: Float32Array, mean: Float32Array, rstd: Float32Array, alpha: number): void;
  instanceNormGrad(x: Float32Array, dy: Float32Array, b: number, s: number, c: number, gamma: Float32Array,
    mean: Float32Array, rstd: Float32Array, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
    beta: Float32Array, alpha: number): void;
  /** Sparse instance norm (SparK): statistics over voxels with mask != 0 only; 0 output where masked. Absent in addons built before it. */
  sparseInstanceNorm?(x: Float32Array, mask: Float32Array, b: number, s: number, c: number, gamma: Float32Array,
    beta: Float32Array, eps: number, alpha: number, y: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  sparseInstanceNormGrad?(x: Float32Array, dy: Float32Array, mask: Float32Array, b: number, s: number, c: number,
    gamma: Float32Array, beta: Float32Array, mean: Float32Array, rstd: Float32Array, alpha: number, dx: Float32Array,
    dgamma: Float32Array, dbeta: Float32Array): void;
  layerNorm(x: Float32Array, rows: number, c: number, gamma: Float32Array, beta: Float32Array, eps: number,
    y: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  layerNormGrad(x: Float32Array, dy: Float32Array, rows: number, c: number, gamma: Float32Array, mean: Float32Array,
    rstd: Float32Array, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array): void;
  attention(q: Float32Array, k: Float32Array, v: Float32Array, bh: number, t: number, s: number, d: number, scale: number,
    o: Float32Array, lse: Float32Array): void;
  attentionGrad(q: Float32Array, k: Float32Array, v: Float32Array, o: Float32Array, lse: Float32Array, dout: Float32Array,
    bh: number, t: number, s: number, d: number, scale: number, dq: Float32Array, dk: Float32Array, dv: Float32Array): void;
  copyBlock(src: Float32Array, srcShape: Int32Array, srcOffset: Int32Array, dst: Float32Array, dstShape: Int32Array,
    dstOffset: Int32Array, size: Int32Array): void;
  avgPool3d(x: Float32Array, geometry: Int32Array, y: Float32Array): void;
  avgPool3dGrad(dy: Float32Array, geometry: Int32Array, dx: Float32Array): void;
  setOptions(dnnl: boolean, blas: boolean, threads: number): void;
  info(): NativeInfo;
}

export interface NativeInfo {
  /** oneDNN compiled in (convolutions). */
  readonly dnnl: boolean;
  /** OpenBLAS compiled in (GEMM). */
  readonly blas: boolean;
  /** ISA of the addon's own GEMM: "avx2-fma" or "generic". */
  readonly gemmIsa: string;
  readonly threads: number;
  readonly useDnnl: boolean;
  readonly useBlas: boolean;
}

/** Fused custom kernels (no stock tfjs equivalent), used through `instanceNormFused`. */
export const FUSED_KERNEL_NAMES = [
  "Ssl3dInstanceNorm", "Ssl3dInstanceNormGrad", "Ssl3dLayerNorm", "Ssl3dLayerNormGrad", "Ssl3dAttention", "Ssl3dAttentionGrad",
  "Ssl3dSparseInstanceNorm", "Ssl3dSparseInstanceNormGrad",
] as const;

/** Names of the stock tfjs kernels this module replaces on the cpu backend. */
export const NATIVE_KERNEL_NAMES = [
  "Conv3D", "Conv3DBackpropInputV2", "Conv3DBackpropFilterV2", "BatchMatMul", "_FusedMatMul",
  "Add", "Sub", "Multiply", "RealDiv", "SquaredDifference", "Sum", "Mean", "Concat", "SplitV",
  "Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "Select", "Softmax", "Transpose", "Slice", "PadV2", "AvgPool3D", "AvgPool3DGrad", "Neg", "Exp", "Erf", "LeakyRelu", "Square", "Rsqrt", "Relu", "Sqrt", "Sigmoid",
] as const;

interface CpuData { values?: unknown }
interface CpuBackend {
  data: { get(dataId: object): CpuData };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array | Uint8Array): tf.TensorInfo;
  disposeIntermediateTensorInfo(info: tf.TensorInfo): void;
}

let addon: NativeAddon | null | undefined;
let disabledLogged = false;
let loaded = false;
const stock = new Map<string, tf.KernelConfig>();
let kernels: tf.KernelConfig[] | undefined;

function findAddonPath(): string | null {
  const override = process.env.SSL3D_NATIVE_ADDON;
  if (override !== undefined && override !== "") return existsSync(override) ? override : null;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, "native", "build", "ssl3d_native.node");
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

/** The addon, or null when it is disabled, not built, or fails to load (logged once). */
export function nativeAddon(): NativeAddon | null {
  // checked on every call (not cached), so SSL3D_NATIVE=0 set later in the process still disables loading
  if (process.env.SSL3D_NATIVE === "0") {
    if (!disabledLogged) log().info("native kernels disabled (SSL3D_NATIVE=0); the cpu backend uses stock tfjs kernels");
    disabledLogged = true;
    return null;
  }
  if (addon !== undefined) return addon;
  addon = null;
  const path = findAddonPath();
  if (path === null) {
    log().warn("native kernel addon not built (run `npm rebuild` or `node native/build.mjs`); " +
      "the cpu backend uses stock tfjs kernels, which are ~100x slower for 3D convolutions");
    return addon;
  }
  // OpenMP threads that spin-wait between parallel regions (libgomp's default) are catastrophic when the cores are
  // shared or CFS-throttled (k8s CPU limits): a 6-head attention matMul measured 200 ms instead of 6 ms on a
  // 2-core machine at load 9. Sleep-waiting costs ~10-50 us per region on an idle machine. Users can override.
  if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) {
    process.env.OMP_WAIT_POLICY = "passive";
  }
  try {
    const a = createRequire(import.meta.url)(path) as NativeAddon;
    const threads = Number(process.env.SSL3D_NATIVE_THREADS ?? "0");
    a.setOptions(true, process.env.SSL3D_NATIVE_BLAS === "1", Number.isInteger(threads) && threads > 0 ? threads : 0);
    addon = a;
  } catch (e) {
    log().warn({ err: e instanceof Error ? e.message : String(e), path },
      "native kernel addon failed to load; the cpu backend uses stock tfjs kernels");
  }
  return addon;
}

/** Build features and thread count of the loaded addon, or null. */
export function nativeInfo(): NativeInfo | null {
  return nativeAddon()?.info() ?? null;
}

/**
 * Runtime switches, mainly for tests and benchmarks: `dnnl: false` forces the portable im2col convolutions,
 * `blas: false` the addon's own GEMM.
 */
export function setNativeOptions(opts: { dnnl?: boolean; blas?: boolean; threads?: number }): void {
  const a = nativeAddon();
  if (a === null) return;
  const cur = a.info();
  a.setOptions(opts.dnnl ?? cur.useDnnl, opts.blas ?? cur.useBlas, opts.threads ?? 0);
}

/**
 * An output buffer the kernel overwrites completely: uninitialised memory (Buffer.allocUnsafeSlow, not pooled),
 * which skips the zero-fill of `new Float32Array(n)` (a full extra pass over memory for 10^8-element tensors).
 */
function alloc(n: number): Float32Array {
  if (n < 1024) return new Float32Array(n);
  const buf = Buffer.allocUnsafeSlow(n * 4);
  return new Float32Array(buf.buffer, buf.byteOffset, n);
}

function f32(backend: CpuBackend, t: tf.TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  if (v instanceof Float32Array) return v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Float32Array.from(v as unknown as ArrayLike<number>);
  throw new Error(`native kernels: tensor of dtype ${t.dtype} has no numeric values on the cpu backend`);
}

type Triple = [number, number, number];
type Shape5 = [number, number, number, number, number];

function asShape5(shape: readonly number[], what: string): Shape5 {
  if (shape.length !== 5) throw new Error(`native kernels: ${what} must be rank 5 (NDHWC), got shape [${shape.join(",")}]`);
  return shape as unknown as Shape5;
}

function geometry(ci: tf.backend_util.Conv3DInfo): Int32Array {
  const p = ci.padInfo;
  return Int32Array.from([
    ci.batchSize, ci.inDepth, ci.inHeight, ci.inWidth, ci.inChannels,
    ci.filterDepth, ci.filterHeight, ci.filterWidth, ci.outChannels,
    ci.outDepth, ci.outHeight, ci.outWidth,
    ci.strideDepth, ci.strideHeight, ci.strideWidth,
    ci.dilationDepth, ci.dilationHeight, ci.dilationWidth,
    p.front, p.top, p.left, p.back, p.bottom, p.right,
  ]);
}

type ConvPad = "valid" | "same" | number;

function makeKernels(a: NativeAddon): tf.KernelConfig[] {
  const conv3d: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const { strides, pad, dilations } = attrs as unknown as { strides: Triple | number; pad: ConvPad; dilations: Triple | number };
    const ci = tf.backend_util.computeConv3DInfo(asShape5(x.shape, "x"), asShape5(filter.shape, "filter"),
      strides, dilations, pad);
    const y = alloc(tf.util.sizeFromShape(ci.outShape));
    a.conv3d(f32(b, x), f32(b, filter), y, geometry(ci));
    return b.makeTensorInfo(ci.outShape, "float32", y);
  };
  const conv3dBackpropInput: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const { strides, pad, inputShape } = attrs as unknown as { strides: Triple | number; pad: ConvPad; inputShape: number[] };
    const ci = tf.backend_util.computeConv3DInfo(asShape5(inputShape, "inputShape"), asShape5(filter.shape, "filter"),
      strides, 1, pad);
    const dx = alloc(tf.util.sizeFromShape(ci.inShape));
    a.conv3dBackpropInput(f32(b, dy), f32(b, filter), dx, geometry(ci));
    return b.makeTensorInfo(ci.inShape, "float32", dx);
  };
  const conv3dBackpropFilter: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const { strides, pad, filterShape } = attrs as unknown as { strides: Triple | number; pad: ConvPad; filterShape: number[] };
    const ci = tf.backend_util.computeConv3DInfo(asShape5(x.shape, "x"), asShape5(filterShape, "filterShape"),
      strides, 1, pad);
    const dw = alloc(tf.util.sizeFromShape(ci.filterShape));
    a.conv3dBackpropFilter(f32(b, x), f32(b, dy), dw, geometry(ci));
    return b.makeTensorInfo(ci.filterShape, "float32", dw);
  };

  const batchMatMulImpl = (b: CpuBackend, x: tf.TensorInfo, y: tf.TensorInfo, transposeA: boolean,
    transposeB: boolean): tf.TensorInfo => {
    const ra = x.shape.length, rb = y.shape.length;
    if (ra < 2 || rb < 2) throw new Error("native BatchMatMul: inputs must have rank >= 2");
    const m = transposeA ? x.shape[ra - 1]! : x.shape[ra - 2]!;
    const kA = transposeA ? x.shape[ra - 2]! : x.shape[ra - 1]!;
    const kB = transposeB ? y.shape[rb - 1]! : y.shape[rb - 2]!;
    const n = transposeB ? y.shape[rb - 2]! : y.shape[rb - 1]!;
    if (kA !== kB) {
      throw new Error(`Error in matMul: inner shapes (${kA}) and (${kB}) of Tensors with shapes ${x.shape.join(",")} and ` +
        `${y.shape.join(",")} and transposeA=${transposeA} and transposeB=${transposeB} must match.`);
    }
    const outerA = x.shape.slice(0, -2), outerB = y.shape.slice(0, -2);
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
    const batch = tf.util.sizeFromShape(outer);
    // Resolve broadcasting to one source batch index per output batch (numpy semantics).
    const ia = new Int32Array(batch), ib = new Int32Array(batch);
    const stridesOf = (dims: number[]): number[] => {
      const s = new Array<number>(dims.length).fill(1);
      for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
      return s;
    };
    const sa = stridesOf(outerA), sb = stridesOf(outerB);
    for (let bi = 0; bi < batch; bi++) {
      let rem = bi, offA = 0, offB = 0;
      for (let d = outer.length - 1; d >= 0; d--) {
        const idx = rem % outer[d]!;
        rem = Math.floor(rem / outer[d]!);
        const da = d - (outer.length - outerA.length), db = d - (outer.length - outerB.length);
        if (da >= 0 && outerA[da]! > 1) offA += idx * sa[da]!;
        if (db >= 0 && outerB[db]! > 1) offB += idx * sb[db]!;
      }
      ia[bi] = offA;
      ib[bi] = offB;
    }
    const out = alloc(batch * m * n);
    a.matmul(f32(b, x), f32(b, y), out, m, n, kA, transposeA, transposeB, ia, ib);
    return b.makeTensorInfo([...outer, m, n], "float32", out);
  };

  const batchMatMul: tf.KernelFunc = (args) => {
    const { a: x, b: y } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (x.dtype !== "float32" || y.dtype !== "float32") return stock.get("BatchMatMul")!.kernelFunc(args);
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    return batchMatMulImpl(args.backend as unknown as CpuBackend, x, y, transposeA, transposeB);
  };

  const fusedMatMul: tf.KernelFunc = (args) => {
    const { a: x, b: y, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    if (x?.dtype !== "float32" || y?.dtype !== "float32") return stock.get("_FusedMatMul")!.kernelFunc(args);
    const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as {
      transposeA: boolean; transposeB: boolean; activation?: string; leakyreluAlpha?: number;
    };
    const b = args.backend as unknown as CpuBackend;
    const run = (name: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): tf.TensorInfo =>
      stock.get(name)!.kernelFunc({ inputs, backend: args.backend, attrs }) as tf.TensorInfo;
    let current = batchMatMulImpl(b, x, y, transposeA, transposeB);
    if (bias !== undefined && bias.dtype === "float32") {
      // the native broadcasting add (the stock Add is a JS loop: ~2 ms per [1024,576] bias add)
      const shape = tf.broadcast_util.assertAndGetBroadcastShape(current.shape, bias.shape);
      const out = alloc(tf.util.sizeFromShape(shape));
      a.binary(0, f32(b, current), Int32Array.from(current.shape), f32(b, bias), Int32Array.from(bias.shape), out);
      b.disposeIntermediateTensorInfo(current);
      current = b.makeTensorInfo(shape, "float32", out);
    } else if (bias !== undefined) {
      const next = run("Add", { a: current, b: bias });
      b.disposeIntermediateTensorInfo(current);
      current = next;
    }
    if (activation !== undefined && activation !== "linear") {
      const act: Record<string, string> = {
        relu: "Relu", elu: "Elu", relu6: "Relu6", prelu: "Prelu", leakyrelu: "LeakyRelu", sigmoid: "Sigmoid",
      };
      const name = act[activation];
      if (name === undefined) throw new Error(`Activation ${activation} has not been implemented for the CPU backend.`);
      const next = name === "Prelu" ? run(name, { x: current, alpha: preluActivationWeights! })
        : name === "LeakyRelu" ? run(name, { x: current }, { alpha: leakyreluAlpha ?? 0.2 })
          : run(name, { x: current });
      b.disposeIntermediateTensorInfo(current);
      current = next;
    }
    return current;
  };

  const binary = (name: string, op: number): tf.KernelConfig => ({
    kernelName: name,
    backendName: "cpu",
    kernelFunc: (args) => {
      const { a: x, b: y } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (x.dtype !== "float32" || y.dtype !== "float32") return stock.get(name)!.kernelFunc(args);
      const b = args.backend as unknown as CpuBackend;
      const shape = tf.broadcast_util.assertAndGetBroadcastShape(x.shape, y.shape);
      const out = alloc(tf.util.sizeFromShape(shape));
      a.binary(op, f32(b, x), Int32Array.from(x.shape), f32(b, y), Int32Array.from(y.shape), out);
      return b.makeTensorInfo(shape, "float32", out);
    },
  });

  const comparison = (name: string, op: number): tf.KernelConfig => ({
    kernelName: name,
    backendName: "cpu",
    kernelFunc: (args) => {
      const { a: x, b: y } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (x.dtype !== "float32" || y.dtype !== "float32") return stock.get(name)!.kernelFunc(args);
      const b = args.backend as unknown as CpuBackend;
      const shape = tf.broadcast_util.assertAndGetBroadcastShape(x.shape, y.shape);
      const out = new Uint8Array(tf.util.sizeFromShape(shape));
      a.compare(op, f32(b, x), Int32Array.from(x.shape), f32(b, y), Int32Array.from(y.shape), out);
      return b.makeTensorInfo(shape, "bool", out);
    },
  });

  const select: tf.KernelFunc = (args) => {
    const { condition, t, e } = args.inputs as { condition: tf.TensorInfo; t: tf.TensorInfo; e: tf.TensorInfo };
    const cv = (args.backend as unknown as CpuBackend).data.get(condition.dataId).values;
    const n = tf.util.sizeFromShape(t.shape);
    if (t.dtype !== "float32" || e.dtype !== "float32" || !(cv instanceof Uint8Array) || cv.length !== n ||
        tf.util.sizeFromShape(e.shape) !== n) {
      return stock.get("Select")!.kernelFunc(args);
    }
    const b = args.backend as unknown as CpuBackend;
    const out = alloc(n);
    a.select(cv, f32(b, t), f32(b, e), out);
    return b.makeTensorInfo(t.shape, "float32", out);
  };

  const reduction = (name: "Sum" | "Mean"): tf.KernelConfig => ({
    kernelName: name,
    backendName: "cpu",
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
      const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
      const contiguous = axes.every((v, i) => i === 0 || v === axes[i - 1]! + 1);
      if (x.dtype !== "float32" || axes.length === 0 || !contiguous) return stock.get(name)!.kernelFunc(args);
      const b = args.backend as unknown as CpuBackend;
      const first = axes[0]!, last = axes[axes.length - 1]!;
      const outer = tf.util.sizeFromShape(x.shape.slice(0, first));
      const reduced = tf.util.sizeFromShape(x.shape.slice(first, last + 1));
      const inner = tf.util.sizeFromShape(x.shape.slice(last + 1));
      const out = alloc(outer * inner);
      a.reduceSum(f32(b, x), outer, reduced, inner, name === "Mean" ? 1 / reduced : 1, out);
      const shape = keepDims ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d))
        : x.shape.filter((_, i) => i < first || i > last);
      return b.makeTensorInfo(shape, "float32", out);
    },
  });

  const concat: tf.KernelFunc = (args) => {
    const ins = Object.values(args.inputs) as tf.TensorInfo[];
    const { axis } = args.attrs as { axis: number | number[] };
    const first = ins[0];
    if (first === undefined || ins.some((t) => t.dtype !== "float32" || t.shape.length !== first.shape.length)) {
      return stock.get("Concat")!.kernelFunc(args);
    }
    const ax = tf.util.parseAxisParam(axis, first.shape)[0]!;
    const outShape = tf.backend_util.computeOutShape(ins.map((t) => t.shape), ax);
    const b = args.backend as unknown as CpuBackend;
    const outer = tf.util.sizeFromShape(first.shape.slice(0, ax));
    const inner = tf.util.sizeFromShape(first.shape.slice(ax + 1));
    const out = alloc(tf.util.sizeFromShape(outShape));
    a.concat(ins.map((t) => f32(b, t)), Int32Array.from(ins.map((t) => t.shape[ax]! * inner)), outer, out);
    return b.makeTensorInfo(outShape, "float32", out);
  };

  const splitV: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    if (x.dtype !== "float32") return stock.get("SplitV")!.kernelFunc(args);
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, numOrSizeSplits, ax);
    const b = args.backend as unknown as CpuBackend;
    const outer = tf.util.sizeFromShape(x.shape.slice(0, ax));
    const inner = tf.util.sizeFromShape(x.shape.slice(ax + 1));
    const outs = sizes.map((s) => alloc(outer * s * inner));
    a.split(f32(b, x), outs, Int32Array.from(sizes.map((s) => s * inner)), outer);
    return outs.map((o, i) => b.makeTensorInfo(x.shape.map((d, j) => (j === ax ? sizes[i]! : d)), "float32", o));
  };

  const softmax: tf.KernelFunc = (args) => {
    const { logits } = args.inputs as { logits: tf.TensorInfo };
    const { dim } = args.attrs as { dim: number };
    const rank = logits.shape.length;
    if (logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1)) return stock.get("Softmax")!.kernelFunc(args);
    const b = args.backend as unknown as CpuBackend;
    const n = logits.shape[rank - 1]!;
    const size = tf.util.sizeFromShape(logits.shape);
    const out = alloc(size);
    if (size > 0) a.softmax(f32(b, logits), size / n, n, out);
    return b.makeTensorInfo(logits.shape, "float32", out);
  };

  const unary = (name: string, op: number): tf.KernelConfig => ({
    kernelName: name,
    backendName: "cpu",
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      if (x.dtype !== "float32") return stock.get(name)!.kernelFunc(args);
      const b = args.backend as unknown as CpuBackend;
      const alpha = name === "LeakyRelu" ? (args.attrs as { alpha: number }).alpha : 0;
      const out = alloc(tf.util.sizeFromShape(x.shape));
      a.unary(op, f32(b, x), alpha, out);
      return b.makeTensorInfo(x.shape, "float32", out);
    },
  });

  const transpose: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { perm } = args.attrs as { perm: number[] };
    if (x.dtype !== "float32" || x.shape.length === 0) return stock.get("Transpose")!.kernelFunc(args);
    const b = args.backend as unknown as CpuBackend;
    const out = alloc(tf.util.sizeFromShape(x.shape));
    a.transpose(f32(b, x), Int32Array.from(x.shape), Int32Array.from(perm), out);
    return b.makeTensorInfo(perm.map((p) => x.shape[p]!), "float32", out);
  };

  // x: [B, ..., C] channels-last; statistics over all axes between batch and channels.
  const inSizes = (x: tf.TensorInfo): [number, number, number] => {
    const bsz = x.shape[0]!, c = x.shape[x.shape.length - 1]!;
    return [bsz, tf.util.sizeFromShape(x.shape) / Math.max(1, bsz * c), c];
  };
  const instanceNorm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
    const [bsz, sp, c] = inSizes(x);
    const y = alloc(bsz * sp * c), mean = alloc(bsz * c), rstd = alloc(bsz * c);
    const { eps, alpha } = attrs as { eps: number; alpha: number };
    a.instanceNorm(f32(b, x), bsz, sp, c, f32(b, gamma), f32(b, beta), eps, y, mean, rstd, alpha);
    return [b.makeTensorInfo(x.shape, "float32", y), b.makeTensorInfo([bsz, c], "float32", mean),
      b.makeTensorInfo([bsz, c], "float32", rstd)];
  };
  const instanceNormGrad: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, dy, gamma, beta, mean, rstd } = inputs as Record<"x" | "dy" | "gamma" | "beta" | "mean" | "rstd", tf.TensorInfo>;
    const [bsz, sp, c] = inSizes(x);
    const dx = alloc(bsz * sp * c), dgamma = alloc(c), dbeta = alloc(c);
    a.instanceNormGrad(f32(b, x), f32(b, dy), bsz, sp, c, f32(b, gamma), f32(b, mean), f32(b, rstd), dx, dgamma, dbeta,
      f32(b, beta), (attrs as { alpha: number }).alpha);
    return [b.makeTensorInfo(x.shape, "float32", dx), b.makeTensorInfo([c], "float32", dgamma),
      b.makeTensorInfo([c], "float32", dbeta)];
  };

  const sparseInstanceNorm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, mask, gamma, beta } = inputs as Record<"x" | "mask" | "gamma" | "beta", tf.TensorInfo>;
    if (a.sparseInstanceNorm === undefined) throw new Error("native addon has no sparseInstanceNorm (stale build: npm run build:native)");
    const [bsz, sp, c] = inSizes(x);
    const y = alloc(bsz * sp * c), mean = alloc(bsz * c), rstd = alloc(bsz * c);
    const { eps, alpha } = attrs as { eps: number; alpha: number };
    a.sparseInstanceNorm(f32(b, x), f32(b, mask), bsz, sp, c, f32(b, gamma), f32(b, beta), eps, alpha, y, mean, rstd);
    return [b.makeTensorInfo(x.shape, "float32", y), b.makeTensorInfo([bsz, c], "float32", mean),
      b.makeTensorInfo([bsz, c], "float32", rstd)];
  };
  const sparseInstanceNormGrad: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, dy, mask, gamma, beta, mean, rstd } = inputs as Record<"x" | "dy" | "mask" | "gamma" | "beta" | "mean" | "rstd", tf.TensorInfo>;
    if (a.sparseInstanceNormGrad === undefined) throw new Error("native addon has no sparseInstanceNormGrad (stale build: npm run build:native)");
    const [bsz, sp, c] = inSizes(x);
    const dx = alloc(bsz * sp * c), dgamma = alloc(c), dbeta = alloc(c);
    a.sparseInstanceNormGrad(f32(b, x), f32(b, dy), f32(b, mask), bsz, sp, c, f32(b, gamma), f32(b, beta), f32(b, mean),
      f32(b, rstd), (attrs as { alpha: number }).alpha, dx, dgamma, dbeta);
    return [b.makeTensorInfo(x.shape, "float32", dx), b.makeTensorInfo([c], "float32", dgamma),
      b.makeTensorInfo([c], "float32", dbeta)];
  };

  const layerNorm: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
    const c = x.shape[x.shape.length - 1]!, rows = tf.util.sizeFromShape(x.shape) / c;
    const y = alloc(rows * c), mean = alloc(rows), rstd = alloc(rows);
    a.layerNorm(f32(b, x), rows, c, f32(b, gamma), f32(b, beta), (attrs as { eps: number }).eps, y, mean, rstd);
    return [b.makeTensorInfo(x.shape, "float32", y), b.makeTensorInfo([rows], "float32", mean),
      b.makeTensorInfo([rows], "float32", rstd)];
  };
  const layerNormGrad: tf.KernelFunc = ({ inputs, backend }) => {
    const b = backend as unknown as CpuBackend;
    const { x, dy, gamma, mean, rstd } = inputs as Record<"x" | "dy" | "gamma" | "mean" | "rstd", tf.TensorInfo>;
    const c = x.shape[x.shape.length - 1]!, rows = tf.util.sizeFromShape(x.shape) / c;
    const dx = alloc(rows * c), dgamma = alloc(c), dbeta = alloc(c);
    a.layerNormGrad(f32(b, x), f32(b, dy), rows, c, f32(b, gamma), f32(b, mean), f32(b, rstd), dx, dgamma, dbeta);
    return [b.makeTensorInfo(x.shape, "float32", dx), b.makeTensorInfo([c], "float32", dgamma),
      b.makeTensorInfo([c], "float32", dbeta)];
  };

  const sliceDims = (q: tf.TensorInfo, k: tf.TensorInfo): { bh: number; t: number; s: number; d: number } => {
    const r = q.shape.length;
    const d = q.shape[r - 1]!, t = q.shape[r - 2]!, s = k.shape[r - 2]!;
    return { bh: tf.util.sizeFromShape(q.shape.slice(0, -2)), t, s, d };
  };
  const attention: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { q, k, v } = inputs as Record<"q" | "k" | "v", tf.TensorInfo>;
    const { bh, t, s, d } = sliceDims(q, k);
    const o = alloc(bh * t * d), lse = alloc(bh * t);
    a.attention(f32(b, q), f32(b, k), f32(b, v), bh, t, s, d, (attrs as { scale: number }).scale, o, lse);
    return [b.makeTensorInfo(q.shape, "float32", o), b.makeTensorInfo(q.shape.slice(0, -1), "float32", lse)];
  };
  const attentionGrad: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const b = backend as unknown as CpuBackend;
    const { q, k, v, o, lse, dy } = inputs as Record<"q" | "k" | "v" | "o" | "lse" | "dy", tf.TensorInfo>;
    const { bh, t, s, d } = sliceDims(q, k);
    const dq = alloc(bh * t * d), dk = alloc(bh * s * d), dv = alloc(bh * s * d);
    a.attentionGrad(f32(b, q), f32(b, k), f32(b, v), f32(b, o), f32(b, lse), f32(b, dy), bh, t, s, d, (attrs as { scale: number }).scale, dq, dk, dv);
    return [b.makeTensorInfo(q.shape, "float32", dq), b.makeTensorInfo(k.shape, "float32", dk), b.makeTensorInfo(v.shape, "float32", dv)];
  };

  const slice: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { begin, size } = args.attrs as { begin: number | number[]; size?: number | number[] };
    if (x.dtype !== "float32" || x.shape.length === 0) return stock.get("Slice")!.kernelFunc(args);
    const parsed = tf.slice_util.parseSliceParams(x, begin, size);
    const b0 = parsed[0]!, s0 = parsed[1]!;
    // Contiguous slices are zero-copy subarray views in the stock kernel: keep those.
    if (tf.slice_util.isSliceContinous(x.shape, b0, s0)) return stock.get("Slice")!.kernelFunc(args);
    const b = args.backend as unknown as CpuBackend;
    const out = alloc(tf.util.sizeFromShape(s0));
    a.copyBlock(f32(b, x), Int32Array.from(x.shape), Int32Array.from(b0), out, Int32Array.from(s0),
      new Int32Array(s0.length), Int32Array.from(s0));
    return b.makeTensorInfo(s0, "float32", out);
  };

  const pad: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { paddings, constantValue } = args.attrs as { paddings: [number, number][]; constantValue: number };
    if (x.dtype !== "float32" || x.shape.length === 0) return stock.get("PadV2")!.kernelFunc(args);
    const b = args.backend as unknown as CpuBackend;
    const outShape = paddings.map((p, i) => p[0] + x.shape[i]! + p[1]);
    const n = tf.util.sizeFromShape(outShape);
    const out = constantValue === 0 ? new Float32Array(n) : alloc(n).fill(constantValue);
    a.copyBlock(f32(b, x), Int32Array.from(x.shape), new Int32Array(x.shape.length), out, Int32Array.from(outShape),
      Int32Array.from(paddings.map((p) => p[0])), Int32Array.from(x.shape));
    return b.makeTensorInfo(outShape, "float32", out);
  };

  // 'valid' average pooling (ResEnc's strided skip path); other paddings and rounding modes use the stock kernels.
  const poolInfo = (shape: number[], attrs: tf.NamedAttrMap): tf.backend_util.Conv3DInfo | null => {
    const { filterSize, strides, pad, dimRoundingMode } = attrs as {
      filterSize: number | [number, number, number]; strides: number | [number, number, number]; pad: unknown;
      dimRoundingMode?: string;
    };
    if (pad !== "valid" || dimRoundingMode !== undefined || shape.length !== 5) return null;
    return tf.backend_util.computePool3DInfo(shape as Shape5, filterSize, strides, 1, "valid");
  };
  const poolGeometry = (ci: tf.backend_util.Conv3DInfo): Int32Array => Int32Array.from([
    ci.batchSize, ci.inDepth, ci.inHeight, ci.inWidth, ci.inChannels, ci.filterDepth, ci.filterHeight, ci.filterWidth,
    ci.strideDepth, ci.strideHeight, ci.strideWidth, ci.outDepth, ci.outHeight, ci.outWidth,
  ]);
  const avgPool: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const ci = x.dtype === "float32" ? poolInfo(x.shape, args.attrs ?? {}) : null;
    if (ci === null) return stock.get("AvgPool3D")!.kernelFunc(args);
    const b = args.backend as unknown as CpuBackend;
    const out = alloc(tf.util.sizeFromShape(ci.outShape));
    a.avgPool3d(f32(b, x), poolGeometry(ci), out);
    return b.makeTensorInfo(ci.outShape, "float32", out);
  };
  const avgPoolGrad: tf.KernelFunc = (args) => {
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    const ci = dy.dtype === "float32" ? poolInfo(input.shape, args.attrs ?? {}) : null;
    if (ci === null) return stock.get("AvgPool3DGrad")!.kernelFunc(args);
    const b = args.backend as unknown as CpuBackend;
    const out = alloc(tf.util.sizeFromShape(input.shape));
    a.avgPool3dGrad(f32(b, dy), poolGeometry(ci), out);
    return b.makeTensorInfo(input.shape, "float32", out);
  };

  return [
    { kernelName: "AvgPool3D", backendName: "cpu", kernelFunc: avgPool },
    { kernelName: "AvgPool3DGrad", backendName: "cpu", kernelFunc: avgPoolGrad },
    { kernelName: "Slice", backendName: "cpu", kernelFunc: slice },
    { kernelName: "PadV2", backendName: "cpu", kernelFunc: pad },
    { kernelName: "Ssl3dLayerNorm", backendName: "cpu", kernelFunc: layerNorm },
    { kernelName: "Ssl3dLayerNormGrad", backendName: "cpu", kernelFunc: layerNormGrad },
    { kernelName: "Ssl3dAttention", backendName: "cpu", kernelFunc: attention },
    { kernelName: "Ssl3dAttentionGrad", backendName: "cpu", kernelFunc: attentionGrad },
    { kernelName: "Ssl3dInstanceNorm", backendName: "cpu", kernelFunc: instanceNorm },
    { kernelName: "Ssl3dSparseInstanceNorm", backendName: "cpu", kernelFunc: sparseInstanceNorm },
    { kernelName: "Ssl3dSparseInstanceNormGrad", backendName: "cpu", kernelFunc: sparseInstanceNormGrad },
    { kernelName: "Ssl3dInstanceNormGrad", backendName: "cpu", kernelFunc: instanceNormGrad },
    comparison("Greater", 0), comparison("GreaterEqual", 1), comparison("Less", 2), comparison("LessEqual", 3),
    comparison("Equal", 4),
    { kernelName: "Select", backendName: "cpu", kernelFunc: select },
    { kernelName: "Softmax", backendName: "cpu", kernelFunc: softmax },
    { kernelName: "Transpose", backendName: "cpu", kernelFunc: transpose },
    unary("Neg", 0), unary("Exp", 1), unary("Erf", 2), unary("LeakyRelu", 3), unary("Square", 4), unary("Rsqrt", 5),
    unary("Relu", 6), unary("Sqrt", 7), unary("Sigmoid", 8),
    binary("Add", 0), binary("Sub", 1), binary("Multiply", 2), binary("RealDiv", 3), binary("SquaredDifference", 4),
    reduction("Sum"), reduction("Mean"),
    { kernelName: "Concat", backendName: "cpu", kernelFunc: concat },
    { kernelName: "SplitV", backendName: "cpu", kernelFunc: splitV },
    { kernelName: "Conv3D", backendName: "cpu", kernelFunc: conv3d },
    { kernelName: "Conv3DBackpropInputV2", backendName: "cpu", kernelFunc: conv3dBackpropInput },
    { kernelName: "Conv3DBackpropFilterV2", backendName: "cpu", kernelFunc: conv3dBackpropFilter },
    { kernelName: "BatchMatMul", backendName: "cpu", kernelFunc: batchMatMul },
    { kernelName: "_FusedMatMul", backendName: "cpu", kernelFunc: fusedMatMul },
  ];
}

/**
 * Registers the native kernels on the `cpu` backend. Idempotent. Returns false (after one log line) when the
 * addon is disabled or absent; tfjs then keeps its stock kernels.
 */
export function loadNativeKernels(): boolean {
  if (loaded) return true;
  const a = nativeAddon();
  if (a === null) return false;
  for (const name of [...NATIVE_KERNEL_NAMES, "Elu", "Relu6", "Prelu", "Sigmoid"]) {
    if (!stock.has(name)) {
      const k = tf.getKernel(name, "cpu") as tf.KernelConfig | undefined;
      if (k === undefined) throw new Error(`native kernels: tfjs cpu backend has no kernel ${name}`);
      stock.set(name, k);
    }
  }
  kernels ??= makeKernels(a);
  registerFusedGradients();
  for (const k of kernels) {
    if (tf.getKernel(k.kernelName, "cpu") as tf.KernelConfig | undefined) tf.unregisterKernel(k.kernelName, "cpu");
    tf.registerKernel(k);
  }
  loaded = true;
  return true;
}

/** Restores tfjs's stock cpu kernels (tests and benchmarks compare against them in the same process). */
export function unloadNativeKernels(): void {
  if (!loaded) return;
  for (const name of FUSED_KERNEL_NAMES) tf.unregisterKernel(name, "cpu");
  for (const name of NATIVE_KERNEL_NAMES) {
    const k = stock.get(name);
    if (k === undefined) continue;
    tf.unregisterKernel(name, "cpu");
    tf.registerKernel(k);
  }
  loaded = false;
}

/** True while the native kernels are registered. */
export function nativeKernelsLoaded(): boolean {
  return loaded;
}

/**
 * Whether the loaded addon has the fused attention kernels (an addon built from older sources lacks them; the
 * install hook rebuilds when sources change, but a copied or pinned build may be stale): callers fall back to the
 * composed ops.
 */
export function fusedAttentionAvailable(): boolean {
  return loaded && typeof addon?.attention === "function" && typeof addon.attentionGrad === "function";
}

/**
 * Whether the loaded addon has the fused sparse instance norm kernels (SparK); stale addons lack them and
 * `ops/sparse-norm.ts` then keeps its composed form.
 */
export function fusedSparseNormAvailable(): boolean {
  return loaded && typeof addon?.sparseInstanceNorm === "function" && typeof addon.sparseInstanceNormGrad === "function";
}

/**
 * Sparse instance norm (SparK, `ops/sparse-norm.ts`): InstanceNorm3d(affine, biased variance) with per-sample,
 * per-channel statistics over the voxels where `mask` [B, ..., 1] is non-zero (count clamped to 1), optionally
 * followed by LeakyReLU (`leakyReluAlpha`), output 0 where masked; one fused native kernel each way (two passes over
 * memory), the gradient recomputing the activation's input. Masked input values are never read (dx = 0 there).
 * The mask is a constant (zero gradient). Requires `fusedSparseNormAvailable()`.
 */
export function sparseInstanceNormFused<T extends tf.Tensor>(x: T, mask: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5,
  opts: { leakyReluAlpha?: number } = {}): T {
  const alpha = opts.leakyReluAlpha ?? 1;
  if (!fusedSparseNormAvailable() || tf.getBackend() !== "cpu") {
    throw new Error("sparseInstanceNormFused needs the cpu backend with native kernels that include it (fusedSparseNormAvailable())");
  }
  if (x.dtype !== "float32" || x.rank < 3) throw new Error(`sparseInstanceNormFused: expected float32 [B, ..., C], got ${x.dtype} rank ${x.rank}`);
  const c = x.shape[x.rank - 1]!;
  if (mask.dtype !== "float32" || mask.size * c !== x.size || mask.shape[0] !== x.shape[0]) {
    throw new Error(`sparseInstanceNormFused: mask [${mask.shape.join(",")}] does not fit input [${x.shape.join(",")}]`);
  }
  return tf.tidy(() => {
    const [y] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dSparseInstanceNorm", { x, mask, gamma, beta }, { eps, alpha });
    return y as T;
  });
}

/**
 * Instance norm (InstanceNorm3d, affine, biased variance) over all axes between batch and channels of a
 * channels-last tensor, optionally followed by LeakyReLU (`leakyReluAlpha`; nnU-Net's norm → nonlin pair), as ONE
 * fused native kernel with a fused native gradient (which recomputes the activation's input instead of storing it). Autodiff keeps only x (kept anyway
 * as the previous op's output) and two [B, C] statistics, instead of the ~5 full-size intermediates of the composed
 * form, and runs 2 passes over memory each way instead of ~10. Requires `loadNativeKernels()` to have returned true
 * (check `nativeKernelsLoaded()`); on other backends use the composed ops.
 */
export function instanceNormFused<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5,
  opts: { leakyReluAlpha?: number } = {}): T {
  const alpha = opts.leakyReluAlpha ?? 1;
  if (!loaded || tf.getBackend() !== "cpu") {
    throw new Error("instanceNormFused needs the cpu backend with the native kernels (loadNativeKernels() returned true)");
  }
  if (x.dtype !== "float32" || x.rank < 3) throw new Error(`instanceNormFused: expected float32 [B, ..., C], got ${x.dtype} rank ${x.rank}`);
  return tf.tidy(() => {
    // Outputs [y, mean, rstd]; the engine keeps its own references to the saved statistics for the gradient.
    const [y] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dInstanceNorm", { x, gamma, beta }, { eps, alpha });
    return y as T;
  });
}

/**
 * LayerNorm over the last axis (biased variance, affine), as one fused native kernel with a fused native gradient;
 * autodiff keeps x and the per-row statistics only. Same preconditions as `instanceNormFused`.
 */
export function layerNormFused<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): T {
  if (!loaded || tf.getBackend() !== "cpu") {
    throw new Error("layerNormFused needs the cpu backend with the native kernels (loadNativeKernels() returned true)");
  }
  if (x.dtype !== "float32" || x.rank < 1) throw new Error(`layerNormFused: expected float32, got ${x.dtype}`);
  return tf.tidy(() => {
    const [y] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dLayerNorm", { x, gamma, beta }, { eps });
    return y as T;
  });
}

/**
 * softmax(scale·q·kᵀ)·v over the last two axes ([..., T, D] queries, [..., S, D] keys and values), as one fused
 * native kernel (exact, flash-attention style: blocks of 64 query rows, the [T, S] probabilities never stored) with a
 * fused gradient that recomputes them from the saved per-row log-sum-exp. Autodiff keeps q, k, v, the output and
 * [..., T] statistics instead of the [..., T, S] probabilities. Same preconditions as `instanceNormFused`.
 */
export function attentionFused<T extends tf.Tensor>(q: T, k: tf.Tensor, v: tf.Tensor, scale: number): T {
  if (!loaded || tf.getBackend() !== "cpu") {
    throw new Error("attentionFused needs the cpu backend with the native kernels (loadNativeKernels() returned true)");
  }
  const r = q.rank;
  if (q.dtype !== "float32" || k.dtype !== "float32" || v.dtype !== "float32" || r < 2 || k.rank !== r || v.rank !== r) throw new Error("attentionFused: expected float32 q, k, v of equal rank >= 2");
  if (!tf.util.arraysEqual(k.shape, v.shape) || !tf.util.arraysEqual(q.shape.slice(0, -2), k.shape.slice(0, -2)) || q.shape[r - 1] !== k.shape[r - 1]) {
    throw new Error(`attentionFused: shapes q [${q.shape.join(",")}], k [${k.shape.join(",")}], v [${v.shape.join(",")}] do not fit`);
  }
  return tf.tidy(() => {
    const [o] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dAttention", { q, k, v }, { scale });
    return o as T;
  });
}

let gradientRegistered = false;
function registerFusedGradients(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: "Ssl3dInstanceNorm",
    inputsToSave: ["x", "gamma", "beta"],
    outputsToSave: [false, true, true],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x, gamma, beta, mean, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const dyy = Array.isArray(dy) ? dy[0]! : dy;
      // One kernel computes all three; run it eagerly (each thunk runs in its own tidy, which would dispose the
      // other two outputs of a lazily shared call).
      const [dx, dgamma, dbeta] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dInstanceNormGrad",
        { x, dy: dyy, gamma, beta, mean, rstd }, { alpha: attrs.alpha as number });
      return { x: () => dx!, gamma: () => dgamma!, beta: () => dbeta! };
    },
  });
  tf.registerGradient({
    kernelName: "Ssl3dSparseInstanceNorm",
    inputsToSave: ["x", "mask", "gamma", "beta"],
    outputsToSave: [false, true, true],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x, mask, gamma, beta, mean, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const dyy = Array.isArray(dy) ? dy[0]! : dy;
      const [dx, dgamma, dbeta] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dSparseInstanceNormGrad",
        { x, dy: dyy, mask, gamma, beta, mean, rstd }, { alpha: attrs.alpha as number });
      // the mask is a constant: zero gradient (only built if something asks for it)
      return { x: () => dx!, mask: () => tf.zerosLike(mask), gamma: () => dgamma!, beta: () => dbeta! };
    },
  });
  tf.registerGradient({
    kernelName: "Ssl3dAttention",
    inputsToSave: ["q", "k", "v"],
    outputsToSave: [true, true],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [q, k, v, o, lse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const dyy = Array.isArray(dy) ? dy[0]! : dy;
      const [dq, dk, dv] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dAttentionGrad", { q, k, v, o, lse, dy: dyy }, { scale: attrs.scale as number });
      return { q: () => dq!, k: () => dk!, v: () => dv! };
    },
  });
  tf.registerGradient({
    kernelName: "Ssl3dLayerNorm",
    inputsToSave: ["x", "gamma"],
    outputsToSave: [false, true, true],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [x, gamma, mean, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const dyy = Array.isArray(dy) ? dy[0]! : dy;
      const [dx, dgamma, dbeta] = tf.engine().runKernel<tf.Tensor[]>("Ssl3dLayerNormGrad",
        { x, dy: dyy, gamma, mean, rstd });
      return { x: () => dx!, gamma: () => dgamma!, beta: () => dbeta! };
    },
  });
}
