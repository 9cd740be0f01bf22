/**
 * The native kernel addon (`native/`, built by `npm install`): its N-API surface and loading. Env: SSL3D_NATIVE=0
 * disables; SSL3D_NATIVE_THREADS=n sets the kernel thread count (default: all cores); SSL3D_NATIVE_BLAS=1 uses the
 * linked OpenBLAS (single-threaded) instead of the addon's own GEMM; SSL3D_NATIVE_ADDON=/path/to/ssl3d_native.node
 * loads a specific build. OMP_WAIT_POLICY defaults to `passive` (set it, or GOMP_SPINCOUNT, to override) because
 * spinning OpenMP threads stall on shared or throttled cores.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { log } from "../../../observability/log.js";
import type { BinaryOp, CompareOp, UnaryOp } from "./kernels.generated.js";
import { envString, processEnv, setProcessDefault } from "../../../config/settings.js";

/** The N-API surface of native/src/addon.cc. */
export interface NativeAddon {
  conv3d(x: Float32Array, w: Float32Array, y: Float32Array, geometry: Int32Array): void;
  conv3dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, geometry: Int32Array): void;
  conv3dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, geometry: Int32Array): void;
  matmul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    batchIndexA: Int32Array,
    batchIndexB: Int32Array,
  ): void;
  /** numpy broadcasting. */
  binary(
    op: BinaryOp,
    a: Float32Array,
    aShape: Int32Array,
    b: Float32Array,
    bShape: Int32Array,
    out: Float32Array,
  ): void;
  /** out is tfjs's bool storage. */
  compare(
    op: CompareOp,
    a: Float32Array,
    aShape: Int32Array,
    b: Float32Array,
    bShape: Int32Array,
    out: Uint8Array,
  ): void;
  select(condition: Uint8Array, t: Float32Array, e: Float32Array, out: Float32Array): void;
  reduceSum(x: Float32Array, outer: number, reduced: number, inner: number, scale: number, y: Float32Array): void;
  concat(inputs: Float32Array[], widths: Int32Array, outer: number, out: Float32Array): void;
  split(x: Float32Array, outputs: Float32Array[], widths: Int32Array, outer: number): void;
  softmax(x: Float32Array, rows: number, n: number, y: Float32Array): void;
  /** alpha: LeakyRelu's negative slope (ignored by the other ops). */
  unary(op: UnaryOp, x: Float32Array, alpha: number, y: Float32Array): void;
  transpose(x: Float32Array, shape: Int32Array, perm: Int32Array, y: Float32Array): void;
  /** alpha: slope of a fused LeakyReLU after the affine; 1 = none. */
  instanceNorm(
    x: Float32Array,
    b: number,
    s: number,
    c: number,
    gamma: Float32Array,
    beta: Float32Array,
    eps: number,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    alpha: number,
  ): void;
  instanceNormGrad(
    x: Float32Array,
    dy: Float32Array,
    b: number,
    s: number,
    c: number,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    beta: Float32Array,
    alpha: number,
  ): void;
  /** Sparse instance norm (SparK): statistics over voxels with mask != 0 only; 0 output where masked. Absent in addons built before it. */
  sparseInstanceNorm?(
    x: Float32Array,
    mask: Float32Array,
    b: number,
    s: number,
    c: number,
    gamma: Float32Array,
    beta: Float32Array,
    eps: number,
    alpha: number,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
  ): void;
  sparseInstanceNormGrad?(
    x: Float32Array,
    dy: Float32Array,
    mask: Float32Array,
    b: number,
    s: number,
    c: number,
    gamma: Float32Array,
    beta: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    alpha: number,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
  ): void;
  layerNorm(
    x: Float32Array,
    rows: number,
    c: number,
    gamma: Float32Array,
    beta: Float32Array,
    eps: number,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
  ): void;
  layerNormGrad(
    x: Float32Array,
    dy: Float32Array,
    rows: number,
    c: number,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
  ): void;
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    bh: number,
    t: number,
    s: number,
    d: number,
    scale: number,
    o: Float32Array,
    lse: Float32Array,
  ): void;
  attentionGrad(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    o: Float32Array,
    lse: Float32Array,
    dout: Float32Array,
    bh: number,
    t: number,
    s: number,
    d: number,
    scale: number,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
  ): void;
  copyBlock(
    src: Float32Array,
    srcShape: Int32Array,
    srcOffset: Int32Array,
    dst: Float32Array,
    dstShape: Int32Array,
    dstOffset: Int32Array,
    size: Int32Array,
  ): void;
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

let addon: NativeAddon | null | undefined;
let disabledLogged = false;

function findAddonPath(): string | null {
  const override = envString("SSL3D_NATIVE_ADDON");
  if (override !== undefined) return existsSync(override) ? override : null;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    const candidate = join(dir, "native", "build", "ssl3d_native.node");
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

function loadAddon(path: string): NativeAddon | null {
  // OpenMP threads that spin-wait between parallel regions (libgomp's default) are catastrophic when the cores are
  // shared or CFS-throttled (k8s CPU limits): a 6-head attention matMul measured 200 ms instead of 6 ms on a
  // 2-core machine at load 9. Sleep-waiting costs ~10-50 us per region on an idle machine. Users can override.
  if (processEnv().GOMP_SPINCOUNT === undefined) setProcessDefault("OMP_WAIT_POLICY", "passive");
  try {
    const a = createRequire(import.meta.url)(path) as NativeAddon;
    const threads = Number(envString("SSL3D_NATIVE_THREADS") ?? "0");
    a.setOptions(true, envString("SSL3D_NATIVE_BLAS") === "1", Number.isInteger(threads) && threads > 0 ? threads : 0);
    return a;
  } catch (e) {
    log().warn(
      { err: e instanceof Error ? e.message : String(e), path },
      "native kernel addon failed to load; the cpu backend uses stock tfjs kernels",
    );
    return null;
  }
}

/** The addon, or null when it is disabled, not built, or fails to load (logged once). */
export function nativeAddon(): NativeAddon | null {
  // checked on every call (not cached), so SSL3D_NATIVE=0 set later in the process still disables loading
  if (envString("SSL3D_NATIVE") === "0") {
    if (!disabledLogged)
      log().info("native kernels disabled (SSL3D_NATIVE=0); the cpu backend uses stock tfjs kernels");
    disabledLogged = true;
    return null;
  }
  if (addon !== undefined) return addon;
  const path = findAddonPath();
  if (path === null) {
    log().warn(
      "native kernel addon not built (run `npm rebuild` or `node native/build.mjs`); " +
        "the cpu backend uses stock tfjs kernels, which are ~100x slower for 3D convolutions",
    );
    addon = null;
    return addon;
  }
  addon = loadAddon(path);
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
