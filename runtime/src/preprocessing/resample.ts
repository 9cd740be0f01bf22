/**
 * Resampling with nnU-Net semantics (nnssl `src/nnssl/preprocessing/resampling/default_resampling.py`), separable and
 * memory-bounded.
 *
 * Data (`order` 3) reproduces `skimage.transform.resize(x, shape, order=3, mode="edge", anti_aliasing=False)` on
 * float64, which is `scipy.ndimage.zoom(x, grid_mode=True, mode="nearest")`: the input is edge-padded by 12 voxels,
 * cubic-B-spline prefiltered, sampled at `(k + 0.5) * n / m - 0.5`, and the result is clipped to the input's
 * [min, max]. Prefilter, padding and tensor-product evaluation all factor per axis, so resizing axis by axis gives
 * the same numbers (up to float32 rounding between the axis passes), while each pass needs only the input, its
 * output and a small float64 tile of lines: a volume is never expanded to float64 as a whole.
 *
 * Masks use nnU-Net's `resize_segmentation` (each label's indicator resized with `order`, label assigned where
 * the indicator >= 0.5, labels in ascending order). With the separate-z rule (anisotropy > 3) the in-plane axes
 * are resized with `order` and the low-resolution axis with nearest neighbour (`order_z` 0).
 */

import { DataError } from "../errors.js";

export type Shape3 = readonly [number, number, number];
export type Order = 0 | 1 | 3;

export const ANISO_THRESHOLD = 3;
const PAD = 12; // scipy's pre-padding for mode "nearest" before spline filtering
const POLE3 = Math.sqrt(3) - 2;
const TILE_DOUBLES = 1 << 19; // 4 MiB float64 scratch per axis pass

/** Python's `round` (half to even), as in `compute_new_shape`. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** `round(old_spacing / new_spacing * old_shape)` per axis. */
export function computeNewShape(oldShape: Shape3, oldSpacing: Shape3, newSpacing: Shape3): [number, number, number] {
  return [0, 1, 2].map((i) => roundHalfEven((oldSpacing[i]! / newSpacing[i]!) * oldShape[i]!)) as [
    number,
    number,
    number,
  ];
}

/** Which axis, if any, is resampled separately (nearest) — nnU-Net's `force_separate_z = None` rule. */
export function separateZAxis(currentSpacing: Shape3, newSpacing: Shape3, threshold = ANISO_THRESHOLD): number | null {
  const aniso = (s: Shape3): boolean => Math.max(...s) / Math.min(...s) > threshold;
  const lowres = (s: Shape3): number[] => {
    const mx = Math.max(...s);
    return [0, 1, 2].filter((i) => mx / s[i]! === 1);
  };
  let axes: number[] | null = null;
  if (aniso(currentSpacing)) axes = lowres(currentSpacing);
  else if (aniso(newSpacing)) axes = lowres(newSpacing);
  if (axes?.length !== 1) return null;
  return axes[0]!;
}

interface AxisWeights {
  start: Int32Array;
  w: Float64Array; // taps per output index
  taps: number;
}

function axisWeights(n: number, m: number, order: Order): AxisWeights {
  const zoom = n / m;
  const taps = order === 3 ? 4 : order === 1 ? 2 : 1;
  const start = new Int32Array(m);
  const w = new Float64Array(m * taps);
  for (let k = 0; k < m; k++) {
    const x = (k + 0.5) * zoom - 0.5;
    if (order === 0) {
      start[k] = Math.min(n - 1, Math.max(0, Math.floor(x + 0.5)));
      w[k] = 1;
    } else if (order === 1) {
      const f = Math.floor(x);
      const t = x - f;
      start[k] = f; // clamped at evaluation (mode "nearest")
      const w0 = 1 - t;
      w[2 * k] = w0;
      w[2 * k + 1] = 1 - w0;
    } else {
      const xp = x + PAD;
      const f = Math.floor(xp);
      const t = xp - f;
      const z = 1 - t;
      start[k] = f - 1;
      const w0 = (z * z * z) / 6;
      const w1 = (t * t * (t - 2) * 3 + 4) / 6;
      const w2 = (z * z * (z - 2) * 3 + 4) / 6;
      w[4 * k] = w0;
      w[4 * k + 1] = w1;
      w[4 * k + 2] = w2;
      w[4 * k + 3] = 1 - w0 - w1 - w2;
    }
  }
  return { start, w, taps };
}

/**
 * Cubic B-spline prefilter (gain, causal and anti-causal recursions, mirror initialisation as scipy's
 * `_init_causal_mirror`) of `T` interleaved columns of length `len`: element (r, t) at `s[r * T + t]`.
 */
function prefilterColumns(s: Float64Array, len: number, T: number, cols: number, acc: Float64Array): void {
  const z = POLE3;
  const gain = (1 - z) * (1 - 1 / z);
  const total = len * T;
  for (let i = 0; i < total; i++) s[i]! *= gain;
  const zn1 = Math.pow(z, len - 1);
  // causal init: c0 = (c[0] + zn1 c[n-1] + sum_{i=1}^{n-2} z^i (c[i] + zn1 c[n-1-i])) / (1 - zn1^2)
  const last = (len - 1) * T;
  for (let t = 0; t < cols; t++) acc[t] = s[t]! + zn1 * s[last + t]!;
  let zi = z;
  for (let i = 1; i < len - 1; i++) {
    if (Math.abs(zi) < 1e-300) break;
    const a = i * T;
    const b = (len - 1 - i) * T;
    for (let t = 0; t < cols; t++) acc[t]! += zi * (s[a + t]! + zn1 * s[b + t]!);
    zi *= z;
  }
  const div = 1 - zn1 * zn1;
  for (let t = 0; t < cols; t++) s[t] = acc[t]! / div;
  for (let r = 1; r < len; r++) {
    const a = r * T;
    const p = a - T;
    for (let t = 0; t < cols; t++) s[a + t]! += z * s[p + t]!;
  }
  // anti-causal init: c[n-1] = z / (z^2 - 1) * (z c[n-2] + c[n-1])
  const f = z / (z * z - 1);
  const pen = (len - 2) * T;
  for (let t = 0; t < cols; t++) s[last + t] = f * (z * s[pen + t]! + s[last + t]!);
  for (let r = len - 2; r >= 0; r--) {
    const a = r * T;
    const nx = a + T;
    for (let t = 0; t < cols; t++) s[a + t] = z * (s[nx + t]! - s[a + t]!);
  }
}

/**
 * Resize one axis of a C-order array viewed as `[outer, n, inner]` to `[outer, m, inner]`. `order` 3 = scipy
 * cubic spline (mode nearest, 12-voxel pre-padding), 1 = linear, 0 = nearest (`map_coordinates` rounding).
 */
export function resizeAxis(
  src: Float32Array,
  outer: number,
  n: number,
  inner: number,
  m: number,
  order: Order,
  dst?: Float32Array,
): Float32Array {
  const out = dst ?? new Float32Array(outer * m * inner);
  if (out.length < outer * m * inner) throw new RangeError("resizeAxis: destination too small");
  const { start, w } = axisWeights(n, m, order);
  const len = order === 3 ? n + 2 * PAD : n;
  const Q = outer * inner;
  const T = Math.max(1, Math.min(Q, 4096, Math.floor(TILE_DOUBLES / Math.max(len, m))));
  const s = new Float64Array(len * T);
  const acc = new Float64Array(T);
  const srcBase = new Float64Array(T);
  const dstBase = new Float64Array(T);
  for (let q0 = 0; q0 < Q; q0 += T) {
    const cols = Math.min(T, Q - q0);
    for (let t = 0; t < cols; t++) {
      const q = q0 + t;
      const o = Math.floor(q / inner);
      const j = q - o * inner;
      srcBase[t] = o * n * inner + j;
      dstBase[t] = o * m * inner + j;
    }
    const off = order === 3 ? PAD : 0;
    for (let r = 0; r < n; r++) {
      const a = (r + off) * T;
      const ri = r * inner;
      for (let t = 0; t < cols; t++) s[a + t] = src[srcBase[t]! + ri]!;
    }
    if (order === 3) {
      const first = PAD * T;
      const lastRow = (PAD + n - 1) * T;
      for (let r = 0; r < PAD; r++) {
        const a = r * T;
        const b = (PAD + n + r) * T;
        for (let t = 0; t < cols; t++) {
          s[a + t] = s[first + t]!;
          s[b + t] = s[lastRow + t]!;
        }
      }
      prefilterColumns(s, len, T, cols, acc);
    }
    for (let k = 0; k < m; k++) {
      const ki = k * inner;
      const st = start[k]!;
      if (order === 0) {
        const a = st * T;
        for (let t = 0; t < cols; t++) out[dstBase[t]! + ki] = s[a + t]!;
      } else if (order === 1) {
        const a = Math.min(n - 1, Math.max(0, st)) * T;
        const b = Math.min(n - 1, Math.max(0, st + 1)) * T;
        const w0 = w[2 * k]!;
        const w1 = w[2 * k + 1]!;
        for (let t = 0; t < cols; t++) out[dstBase[t]! + ki] = w0 * s[a + t]! + w1 * s[b + t]!;
      } else {
        const a0 = st * T;
        const a1 = a0 + T;
        const a2 = a1 + T;
        const a3 = a2 + T;
        const w0 = w[4 * k]!;
        const w1 = w[4 * k + 1]!;
        const w2 = w[4 * k + 2]!;
        const w3 = w[4 * k + 3]!;
        for (let t = 0; t < cols; t++) {
          out[dstBase[t]! + ki] = w0 * s[a0 + t]! + w1 * s[a1 + t]! + w2 * s[a2 + t]! + w3 * s[a3 + t]!;
        }
      }
    }
  }
  return out;
}

function minMax(a: Float32Array): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** Per-slice [min, max] along `axis` of a (s0, s1, s2) volume. */
function sliceMinMax(a: Float32Array, shape: Shape3, axis: number): Float64Array {
  const n = shape[axis]!;
  const r = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    r[2 * i] = Infinity;
    r[2 * i + 1] = -Infinity;
  }
  const [s0, s1, s2] = shape;
  let p = 0;
  for (let i = 0; i < s0; i++)
    for (let j = 0; j < s1; j++)
      for (let k = 0; k < s2; k++) {
        const v = a[p++]!;
        const sl = axis === 0 ? i : axis === 1 ? j : k;
        if (v < r[2 * sl]!) r[2 * sl] = v;
        if (v > r[2 * sl + 1]!) r[2 * sl + 1] = v;
      }
  return r;
}

function clipPerSlice(a: Float32Array, shape: Shape3, axis: number, mm: Float64Array): void {
  const [s0, s1, s2] = shape;
  let p = 0;
  for (let i = 0; i < s0; i++)
    for (let j = 0; j < s1; j++)
      for (let k = 0; k < s2; k++, p++) {
        const sl = axis === 0 ? i : axis === 1 ? j : k;
        const v = a[p]!;
        const lo = mm[2 * sl]!;
        const hi = mm[2 * sl + 1]!;
        if (v < lo) a[p] = lo;
        else if (v > hi) a[p] = hi;
      }
}

/** Resize the listed axes of one (s0, s1, s2) volume, most-shrinking axis first (smallest intermediates). */
function resizeAxes(
  vol: Float32Array,
  shape: Shape3,
  newShape: Shape3,
  axes: number[],
  order: Order,
): { data: Float32Array; shape: Shape3 } {
  const todo = axes
    .filter((a) => shape[a] !== newShape[a])
    .sort((a, b) => newShape[a]! / shape[a]! - newShape[b]! / shape[b]! || a - b);
  let cur = vol;
  const cs: [number, number, number] = [shape[0], shape[1], shape[2]];
  for (const ax of todo) {
    const outer = ax === 0 ? 1 : ax === 1 ? cs[0] : cs[0] * cs[1];
    const inner = ax === 0 ? cs[1] * cs[2] : ax === 1 ? cs[2] : 1;
    cur = resizeAxis(cur, outer, cs[ax]!, inner, newShape[ax]!, order);
    cs[ax] = newShape[ax]!;
  }
  return { data: cur === vol ? vol.slice() : cur, shape: cs };
}

/** skimage `resize(vol, newShape, order, mode="edge", anti_aliasing=False)` (clip to input range) of one volume. */
export function resizeVolume(vol: Float32Array, shape: Shape3, newShape: Shape3, order: Order): Float32Array {
  const [lo, hi] = minMax(vol);
  const r = resizeAxes(vol, shape, newShape, [0, 1, 2], order);
  if (order > 0) for (let i = 0; i < r.data.length; i++) r.data[i] = Math.min(hi, Math.max(lo, r.data[i]!));
  return r.data;
}

/** Separate-z resize: in-plane with `order` (clip per slice), then nearest along `axis`. */
function resizeSeparateZ(
  vol: Float32Array,
  shape: Shape3,
  newShape: Shape3,
  axis: number,
  order: Order,
  clip: boolean,
): Float32Array {
  const inPlane = [0, 1, 2].filter((a) => a !== axis);
  const mm = clip && order > 0 ? sliceMinMax(vol, shape, axis) : undefined;
  const r = resizeAxes(vol, shape, newShape, inPlane, order);
  if (mm !== undefined) clipPerSlice(r.data, r.shape, axis, mm);
  if (shape[axis] === newShape[axis]) return r.data;
  const outer = axis === 0 ? 1 : axis === 1 ? r.shape[0] : r.shape[0] * r.shape[1];
  const inner = axis === 0 ? r.shape[1] * r.shape[2] : axis === 1 ? r.shape[2] : 1;
  return resizeAxis(r.data, outer, r.shape[axis]!, inner, newShape[axis]!, 0);
}

function uniqueSorted(a: Float32Array): number[] {
  const seen = new Set<number>();
  for (let i = 0; i < a.length; i++) {
    seen.add(a[i]!);
    if (seen.size > 4096) throw new DataError("mask has more than 4096 distinct values: masks must be label images");
  }
  return [...seen].sort((x, y) => x - y);
}

/** batchgenerators `resize_segmentation` of one volume (in-plane only when `inPlaneAxis` given). */
function resizeSegmentation(
  vol: Float32Array,
  shape: Shape3,
  newShape: Shape3,
  order: Order,
  keepAxis: number | null,
): Float32Array {
  const target: Shape3 =
    keepAxis === null ? newShape : (shape.map((s, i) => (i === keepAxis ? s : newShape[i]!)) as unknown as Shape3);
  const out = new Float32Array(target[0] * target[1] * target[2]);
  const labels = uniqueSorted(vol);
  const ind = new Float32Array(vol.length);
  const axes = [0, 1, 2].filter((a) => a !== keepAxis);
  for (const label of labels) {
    for (let i = 0; i < vol.length; i++) ind[i] = vol[i] === label ? 1 : 0;
    const r = resizeAxes(ind, shape, target, axes, order).data;
    // clipping an indicator to its own [0, 1] range cannot change the >= 0.5 decision
    for (let i = 0; i < out.length; i++) if (r[i]! >= 0.5) out[i] = label;
  }
  return out;
}

export interface ResampleOptions {
  readonly isSeg: boolean;
  readonly order: Order;
  readonly orderZ?: 0;
  /** null = nnU-Net's automatic rule (`force_separate_z = None`). */
  readonly forceSeparateZ?: boolean | null;
}

/**
 * nnU-Net `resample_data_or_seg_to_shape` on a C-order (C, s0, s1, s2) float32 array. Returns the input itself
 * when the shape does not change.
 */
export function resampleToShape(
  data: Float32Array,
  channels: number,
  shape: Shape3,
  newShape: Shape3,
  currentSpacing: Shape3,
  newSpacing: Shape3,
  opts: ResampleOptions,
): Float32Array {
  if (shape[0] === newShape[0] && shape[1] === newShape[1] && shape[2] === newShape[2]) return data;
  let axis: number | null;
  if (opts.forceSeparateZ === true) {
    const mx = Math.max(...currentSpacing);
    const ax = [0, 1, 2].filter((i) => mx / currentSpacing[i]! === 1);
    axis = ax.length === 1 ? ax[0]! : null;
  } else if (opts.forceSeparateZ === false) axis = null;
  else axis = separateZAxis(currentSpacing, newSpacing);
  const n = shape[0] * shape[1] * shape[2];
  const mCount = newShape[0] * newShape[1] * newShape[2];
  const out = new Float32Array(channels * mCount);
  for (let c = 0; c < channels; c++) {
    const vol = data.subarray(c * n, (c + 1) * n);
    let r: Float32Array;
    if (opts.isSeg) {
      const labels = resizeSegmentation(vol, shape, newShape, opts.order, axis);
      if (axis === null || shape[axis] === newShape[axis]) r = labels;
      else {
        const ts = shape.map((s, i) => (i === axis ? s : newShape[i]!)) as unknown as Shape3;
        const outer = axis === 0 ? 1 : axis === 1 ? ts[0] : ts[0] * ts[1];
        const inner = axis === 0 ? ts[1] * ts[2] : axis === 1 ? ts[2] : 1;
        r = resizeAxis(labels, outer, ts[axis]!, inner, newShape[axis]!, 0);
      }
    } else if (axis === null) r = resizeVolume(vol, shape, newShape, opts.order);
    else r = resizeSeparateZ(vol, shape, newShape, axis, opts.order, true);
    out.set(r, c * mCount);
  }
  return out;
}
