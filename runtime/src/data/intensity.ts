/**
 * Intensity (and cheap axis-aligned spatial) augmentations of nnssl's non-MAE pipelines, on CPU in plain typed arrays:
 * the batchgenerators transforms that VolumeFusion (`VolumeFusionTrainer.get_training_transforms`) and VoCo / SimCLR
 * (`voco_transform.py`, `simclr_transform.py`) apply per sample.
 *
 * One sample is stored channels-last `[X, Y, Z, C]` (the layout of one sample of a batch tensor): element
 * `((x·Y + y)·Z + z)·C + c`. `augmentIntensity` returns a new array; the input is never modified. All randomness
 * comes from the given `Rng` (the draw order is ours, not NumPy's: same seed → same output).
 *
 * Order and semantics (batchgenerators 0.25, as nnU-Net / nnssl chain them):
 * 1. Gaussian noise (`GaussianNoiseTransform`): with p, one std ~ U(std) per sample, every channel `x + N(0, std²)`.
 * 2. Gaussian blur (`GaussianBlurTransform`, different sigma per channel): with p, each channel with pPerChannel, an
 *    isotropic σ ~ U(sigma) per channel; scipy `gaussian_filter` semantics: separable, truncate 4 (radius
 *    `int(4σ + 0.5)`), boundary mode "reflect" (half-sample symmetric: `d c b a | a b c d | d c b a`).
 * 3. Multiplicative brightness (`BrightnessMultiplicativeTransform`, per channel): with p, each channel × U(range).
 * 4. Contrast (`ContrastAugmentationTransform`, per channel, preserve range): with p, per channel a factor
 *    (½: U(lo, 1), ½: U(1, hi)), `x ← (x − mean)·f + mean`, clipped to the channel's original [min, max].
 * 5. Simulate low resolution (`SimulateLowResolutionTransform`, per channel): with p, each channel with pPerChannel,
 *    zoom ~ U(zoom), target shape `round_half_even(shape · zoom)`, downsample nearest (skimage `resize` order 0,
 *    mode "edge", no anti-aliasing), upsample back with the cubic spline (order 3) and clip to the range of the
 *    downsampled image, as skimage does. Both resamples are separable: per axis, output `o` samples the input at
 *    `(o + 0.5)·in/out − 0.5` (skimage/scipy grid mode), edge extension.
 * 6. Inverted gamma (`GammaTransform(invert_image=True)`, per channel, retain stats) with p, then
 * 7. gamma (`GammaTransform`, per channel, retain stats) with p: per channel γ (½: U(lo, 1), ½: U(1, hi)),
 *    `x ← ((x − min)/(range + 1e-7))^γ · (range + 1e-7) + min`, then (retain stats) re-standardised to the channel's
 *    mean and (population) std before the transform: `(y − mean_y)/(std_y + 1e-8)·std + mean`. The inverted
 *    variant negates the channel before and after.
 * 8. Mirror (`MirrorTransform`): each listed axis flipped independently with pPerAxis.
 * 9. Rot90 (`Rot90Transform`): with p, k drawn uniformly from `ks`, `np.rot90(x, k, axes)` on the two spatial axes
 *    (which must have equal size, e.g. VoCo's 64³ crops, so the sample keeps its shape).
 *
 * A probability of 0 draws nothing, so a recipe whose probabilities are all 0 is the identity.
 */
import type { Rng } from "./rng.js";

export type Range = readonly [number, number];
export type Dims3 = readonly [number, number, number];

export interface IntensityRecipe {
  /** Additive Gaussian noise; `std` is the range of the per-sample noise standard deviation. */
  readonly noise: { readonly p: number; readonly std: Range };
  /** Gaussian blur; σ per channel. */
  readonly blur: { readonly p: number; readonly pPerChannel: number; readonly sigma: Range };
  /** Multiplicative brightness, one factor per channel. */
  readonly brightness: { readonly p: number; readonly multiplier: Range };
  /** Contrast around the channel mean, clipped to the original range; factor ½ U(lo,1), ½ U(1,hi). */
  readonly contrast: { readonly p: number; readonly factor: Range };
  /** Nearest downsample by zoom ~ U(zoom), cubic-spline upsample back (clipped to the range). */
  readonly lowRes: { readonly p: number; readonly pPerChannel: number; readonly zoom: Range };
  /** Gamma on the negated image (retain stats). */
  readonly invertedGamma: { readonly p: number; readonly gamma: Range };
  /** Gamma (retain stats). */
  readonly gamma: { readonly p: number; readonly gamma: Range };
  /** Each listed spatial axis (0 = X, 1 = Y, 2 = Z) flipped independently with `pPerAxis`. */
  readonly mirror: { readonly pPerAxis: number; readonly axes: readonly (0 | 1 | 2)[] };
  /** Rotation by k·90° in the plane of `axes` (k from `ks`), with p. */
  readonly rot90: {
    readonly p: number;
    readonly ks: readonly number[];
    readonly axes: readonly [0 | 1 | 2, 0 | 1 | 2];
  };
}

const GAMMA: Range = [0.7, 1.5];

/** VolumeFusion's training transforms (nnssl `VolumeFusionTrainer.get_training_transforms`). */
export const VOLUME_FUSION_RECIPE: IntensityRecipe = {
  noise: { p: 0.1, std: [0, 0.1] },
  blur: { p: 0.2, pPerChannel: 0.5, sigma: [0.5, 1] },
  brightness: { p: 0.15, multiplier: [0.75, 1.25] },
  contrast: { p: 0.15, factor: [0.75, 1.25] },
  lowRes: { p: 0.25, pPerChannel: 0.5, zoom: [0.5, 1] },
  invertedGamma: { p: 0.1, gamma: GAMMA },
  gamma: { p: 0.3, gamma: GAMMA },
  mirror: { pPerAxis: 0.5, axes: [0, 1, 2] },
  rot90: { p: 0, ks: [1, 2, 3], axes: [0, 1] },
};

/** VoCo's per-crop transforms (`VocoTransform`; SimCLR reuses them): low-res p 0.1, three mirrors, Rot90 in (0,1) p 0.3. */
export const VOCO_RECIPE: IntensityRecipe = {
  ...VOLUME_FUSION_RECIPE,
  lowRes: { p: 0.1, pPerChannel: 0.5, zoom: [0.5, 1] },
  // three independent MirrorTransforms (one axis each, p 0.5) = one per-axis mirror with 0.5
  mirror: { pPerAxis: 0.5, axes: [0, 1, 2] },
  rot90: { p: 0.3, ks: [1, 2, 3], axes: [0, 1] },
};

/** Every transform off: `augmentIntensity` with it returns a copy of its input. */
export const NO_INTENSITY: IntensityRecipe = {
  noise: { p: 0, std: [0, 0] },
  blur: { p: 0, pPerChannel: 0, sigma: [1, 1] },
  brightness: { p: 0, multiplier: [1, 1] },
  contrast: { p: 0, factor: [1, 1] },
  lowRes: { p: 0, pPerChannel: 0, zoom: [1, 1] },
  invertedGamma: { p: 0, gamma: [1, 1] },
  gamma: { p: 0, gamma: [1, 1] },
  mirror: { pPerAxis: 0, axes: [] },
  rot90: { p: 0, ks: [1], axes: [0, 1] },
};

const fires = (rng: Rng, p: number): boolean => p > 0 && rng.float() < p;

/** Standard normal draw (Box-Muller; 1 − u avoids log 0). */
export function normal(rng: Rng): number {
  const u = 1 - rng.float();
  const v = rng.float();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** batchgenerators' two-sided factor draw: ½ U(lo, 1) (if lo < 1), else U(max(lo, 1), hi). */
function twoSided(rng: Rng, r: Range): number {
  if (rng.float() < 0.5 && r[0] < 1) return rng.uniform(r[0], 1);
  return rng.uniform(Math.max(r[0], 1), r[1]);
}

/** Channel `c` of a channels-last sample as a contiguous Float64Array [X, Y, Z]. */
function getChannel(data: Float32Array, n: number, C: number, c: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = data[i * C + c]!;
  return out;
}

function setChannel(data: Float32Array, C: number, c: number, v: Float64Array): void {
  for (let i = 0; i < v.length; i++) data[i * C + c] = v[i]!;
}

function meanStd(v: Float64Array): { mean: number; std: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    s += x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const mean = s / v.length;
  let q = 0;
  for (const x of v) q += (x - mean) * (x - mean);
  return { mean, std: Math.sqrt(q / v.length), min, max };
}

/** Apply a 1-D operation along `axis` of a [X, Y, Z] array, changing that axis' length from dims[axis] to `outLen`. */
function alongAxis(
  src: Float64Array,
  dims: Dims3,
  axis: 0 | 1 | 2,
  outLen: number,
  line: (inp: Float64Array, out: Float64Array) => void,
): { data: Float64Array; dims: Dims3 } {
  const od = [dims[0], dims[1], dims[2]] as [number, number, number];
  od[axis] = outLen;
  const dst = new Float64Array(od[0] * od[1] * od[2]);
  const inStride = axis === 0 ? dims[1] * dims[2] : axis === 1 ? dims[2] : 1;
  const outStride = axis === 0 ? od[1] * od[2] : axis === 1 ? od[2] : 1;
  const inLine = new Float64Array(dims[axis]);
  const outLine = new Float64Array(outLen);
  // the two other axes
  const others = ([0, 1, 2] as const).filter((a) => a !== axis) as [0 | 1 | 2, 0 | 1 | 2];
  const stridesIn = [dims[1] * dims[2], dims[2], 1];
  const stridesOut = [od[1] * od[2], od[2], 1];
  for (let i = 0; i < dims[others[0]]; i++)
    for (let j = 0; j < dims[others[1]]; j++) {
      const bi = i * stridesIn[others[0]]! + j * stridesIn[others[1]]!;
      const bo = i * stridesOut[others[0]]! + j * stridesOut[others[1]]!;
      for (let k = 0; k < dims[axis]; k++) inLine[k] = src[bi + k * inStride]!;
      line(inLine, outLine);
      for (let k = 0; k < outLen; k++) dst[bo + k * outStride] = outLine[k]!;
    }
  return { data: dst, dims: od };
}

/** scipy `gaussian_filter(x, sigma)` (order 0, mode "reflect", truncate 4) of one [X, Y, Z] channel. */
export function gaussianBlur3d(v: Float64Array, dims: Dims3, sigma: number): Float64Array {
  const r = Math.trunc(4 * sigma + 0.5);
  const w = new Float64Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) {
    w[i + r] = Math.exp((-0.5 * i * i) / (sigma * sigma));
    s += w[i + r]!;
  }
  for (let i = 0; i < w.length; i++) w[i] = w[i]! / s;
  const reflect = (i: number, n: number): number => {
    // half-sample symmetric, period 2n
    const m = ((i % (2 * n)) + 2 * n) % (2 * n);
    return m < n ? m : 2 * n - 1 - m;
  };
  let cur = { data: v, dims };
  for (const axis of [0, 1, 2] as const) {
    const n = cur.dims[axis];
    cur = alongAxis(cur.data, cur.dims, axis, n, (inp, out) => {
      for (let o = 0; o < n; o++) {
        let acc = 0;
        for (let k = -r; k <= r; k++) acc += w[k + r]! * inp[reflect(o + k, n)]!;
        out[o] = acc;
      }
    });
  }
  return cur.data;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** 1-D resample of `inp` to `out.length` samples: nearest (order 0) or linear (order 1), grid mode, edge clamping. */
function resampleLine(inp: Float64Array, out: Float64Array, order: 0 | 1): void {
  const n = inp.length;
  const m = out.length;
  const f = n / m;
  for (let o = 0; o < m; o++) {
    const c = (o + 0.5) * f - 0.5;
    if (order === 0) {
      const i = Math.min(n - 1, Math.max(0, Math.floor(c + 0.5)));
      out[o] = inp[i]!;
    } else {
      const i0 = Math.floor(c);
      const t = c - i0;
      const a = inp[Math.min(n - 1, Math.max(0, i0))]!;
      const b = inp[Math.min(n - 1, Math.max(0, i0 + 1))]!;
      out[o] = a + (b - a) * t;
    }
  }
}

const SPLINE_PAD = 12;
const POLE = Math.sqrt(3) - 2;

/**
 * 1-D cubic B-spline resample with scipy's `zoom(order=3, mode="nearest", grid_mode=True)` semantics: the line is
 * padded by 12 edge values, prefiltered (gain 6, causal/anti-causal recursion with mirror initialisation, as scipy's
 * `spline_filter1d`), and the spline evaluated at `(o + 0.5)·in/out − 0.5` (4 taps, indices clamped to the padded line).
 */
function cubicLine(inp: Float64Array, out: Float64Array): void {
  const n = inp.length;
  const np = n + 2 * SPLINE_PAD;
  const c = new Float64Array(np);
  for (let i = 0; i < np; i++) c[i] = 6 * inp[Math.min(n - 1, Math.max(0, i - SPLINE_PAD))]!;
  const z = POLE;
  // causal initialisation, mirror boundary (scipy _init_causal_mirror)
  const zn1 = z ** (np - 1);
  let c0 = c[0]! + zn1 * c[np - 1]!;
  let zi = z;
  for (let i = 1; i < np - 1; i++) {
    c0 += zi * (c[i]! + zn1 * c[np - 1 - i]!);
    zi *= z;
  }
  c[0] = c0 / (1 - zn1 * zn1);
  for (let i = 1; i < np; i++) c[i] = c[i]! + z * c[i - 1]!;
  c[np - 1] = ((z * c[np - 2]! + c[np - 1]!) * z) / (z * z - 1);
  for (let i = np - 2; i >= 0; i--) c[i] = z * (c[i + 1]! - c[i]!);
  const m = out.length;
  const f = n / m;
  for (let o = 0; o < m; o++) {
    const x = (o + 0.5) * f - 0.5 + SPLINE_PAD;
    const i0 = Math.floor(x);
    const t = x - i0;
    const t2 = t * t;
    const t3 = t2 * t;
    const w = [(1 - t) ** 3 / 6, (4 - 6 * t2 + 3 * t3) / 6, (1 + 3 * t + 3 * t2 - 3 * t3) / 6, t3 / 6];
    let acc = 0;
    for (let k = 0; k < 4; k++) acc += w[k]! * c[Math.min(np - 1, Math.max(0, i0 - 1 + k))]!;
    out[o] = acc;
  }
}

/**
 * Resize one [X, Y, Z] channel to `to` (skimage `resize(order, mode="edge", anti_aliasing=False)` semantics: order 0
 * nearest, 1 linear, 3 cubic spline clipped to the input's range).
 */
export function resize3d(v: Float64Array, dims: Dims3, to: Dims3, order: 0 | 1 | 3): Float64Array {
  let cur = { data: v, dims };
  for (const axis of [0, 1, 2] as const) {
    if (cur.dims[axis] === to[axis]) continue;
    cur = alongAxis(cur.data, cur.dims, axis, to[axis], (inp, out) => {
      if (order === 3) cubicLine(inp, out);
      else resampleLine(inp, out, order);
    });
  }
  if (order === 3) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const a of v) {
      if (a < lo) lo = a;
      if (a > hi) hi = a;
    }
    for (let i = 0; i < cur.data.length; i++) cur.data[i] = Math.min(hi, Math.max(lo, cur.data[i]!));
  }
  return cur.data;
}

/** Simulated low resolution of one channel at a given zoom: nearest down to round(dims·zoom), cubic spline back up. */
export function simulateLowRes(v: Float64Array, dims: Dims3, zoom: number): Float64Array {
  const target = dims.map((d) => Math.max(1, roundHalfEven(d * zoom))) as unknown as Dims3;
  return resize3d(resize3d(v, dims, target, 0), target, dims, 3);
}

/** batchgenerators' `GammaTransform` of one channel with retain_stats; `invert` negates before and after. */
export function gammaChannel(v: Float64Array, gamma: number, invert: boolean): Float64Array {
  const x = invert ? v.map((a) => -a) : Float64Array.from(v);
  const { mean, std, min, max } = meanStd(x);
  const range = max - min + 1e-7;
  for (let i = 0; i < x.length; i++) x[i] = ((x[i]! - min) / range) ** gamma * range + min;
  const after = meanStd(x);
  for (let i = 0; i < x.length; i++) x[i] = ((x[i]! - after.mean) / (after.std + 1e-8)) * std + mean;
  if (invert) for (let i = 0; i < x.length; i++) x[i] = -x[i]!;
  return x;
}

/** batchgenerators' contrast of one channel with preserve_range. */
export function contrastChannel(v: Float64Array, factor: number): Float64Array {
  const { mean, min, max } = meanStd(v);
  return v.map((a) => Math.min(max, Math.max(min, (a - mean) * factor + mean)));
}

/** Flip the listed spatial axes of a channels-last sample. */
export function mirrorSample(
  data: Float32Array,
  dims: Dims3,
  C: number,
  flips: readonly [boolean, boolean, boolean],
): Float32Array {
  const [X, Y, Z] = dims;
  const out = new Float32Array(data.length);
  for (let x = 0; x < X; x++) {
    const xs = flips[0] ? X - 1 - x : x;
    for (let y = 0; y < Y; y++) {
      const ys = flips[1] ? Y - 1 - y : y;
      for (let z = 0; z < Z; z++) {
        const zs = flips[2] ? Z - 1 - z : z;
        const d = ((x * Y + y) * Z + z) * C;
        const s = ((xs * Y + ys) * Z + zs) * C;
        for (let c = 0; c < C; c++) out[d + c] = data[s + c]!;
      }
    }
  }
  return out;
}

/**
 * `np.rot90(x, k, axes=(a, b))` on the spatial axes of a channels-last sample (a < b; both axes of equal size). For
 * k = 1: `out[.., i, .., j, ..] = x[.., j, .., n−1−i, ..]` (i on axis a, j on axis b).
 */
export function rot90Sample(
  data: Float32Array,
  dims: Dims3,
  C: number,
  k: number,
  axes: readonly [0 | 1 | 2, 0 | 1 | 2],
): Float32Array {
  const [a, b] = axes[0] < axes[1] ? [axes[0], axes[1]] : [axes[1], axes[0]];
  if (a === b) throw new RangeError("rot90 needs two different axes");
  if (dims[a] !== dims[b])
    throw new RangeError(`rot90 in the plane of axes ${a},${b} needs equal sizes (got ${dims[a]}, ${dims[b]})`);
  const n = dims[a];
  const kk = ((k % 4) + 4) % 4;
  const out = new Float32Array(data.length);
  const [X, Y, Z] = dims;
  const src: [number, number, number] = [0, 0, 0];
  for (let x = 0; x < X; x++)
    for (let y = 0; y < Y; y++)
      for (let z = 0; z < Z; z++) {
        src[0] = x;
        src[1] = y;
        src[2] = z;
        const i = src[a];
        const j = src[b];
        if (kk === 1) {
          src[a] = j;
          src[b] = n - 1 - i;
        } else if (kk === 2) {
          src[a] = n - 1 - i;
          src[b] = n - 1 - j;
        } else if (kk === 3) {
          src[a] = n - 1 - j;
          src[b] = i;
        }
        const d = ((x * Y + y) * Z + z) * C;
        const s = ((src[0] * Y + src[1]) * Z + src[2]) * C;
        for (let c = 0; c < C; c++) out[d + c] = data[s + c]!;
      }
  return out;
}

/** What one call decided (for tests and logs). */
export interface IntensityDecision {
  noiseStd: number | null;
  blurSigma: (number | null)[] | null;
  brightness: number[] | null;
  contrast: number[] | null;
  lowResZoom: (number | null)[] | null;
  invertedGamma: number[] | null;
  gamma: number[] | null;
  flips: [boolean, boolean, boolean];
  rot90: number | null;
}

/** Augment one channels-last sample with `recipe`; see the module comment for order and semantics. */
export function augmentIntensityWithDecision(
  rng: Rng,
  data: Float32Array,
  dims: Dims3,
  channels: number,
  recipe: IntensityRecipe,
): { data: Float32Array; decision: IntensityDecision } {
  const n = dims[0] * dims[1] * dims[2];
  const C = channels;
  if (data.length !== n * C)
    throw new RangeError(`sample has ${data.length} values, dims ${dims.join("×")} × ${C} channels need ${n * C}`);
  let out: Float32Array = Float32Array.from(data);
  const d: IntensityDecision = {
    noiseStd: null,
    blurSigma: null,
    brightness: null,
    contrast: null,
    lowResZoom: null,
    invertedGamma: null,
    gamma: null,
    flips: [false, false, false],
    rot90: null,
  };
  const perChannel = (f: (v: Float64Array, c: number) => Float64Array | null): void => {
    for (let c = 0; c < C; c++) {
      const r = f(getChannel(out, n, C, c), c);
      if (r !== null) setChannel(out, C, c, r);
    }
  };

  if (fires(rng, recipe.noise.p)) {
    const std = rng.uniform(recipe.noise.std[0], recipe.noise.std[1]);
    d.noiseStd = std;
    for (let i = 0; i < out.length; i++) out[i] = out[i]! + std * normal(rng);
  }
  if (fires(rng, recipe.blur.p)) {
    const sig: (number | null)[] = [];
    perChannel((v) => {
      if (rng.float() >= recipe.blur.pPerChannel) {
        sig.push(null);
        return null;
      }
      const s = rng.uniform(recipe.blur.sigma[0], recipe.blur.sigma[1]);
      sig.push(s);
      return gaussianBlur3d(v, dims, s);
    });
    d.blurSigma = sig;
  }
  if (fires(rng, recipe.brightness.p)) {
    const f: number[] = [];
    perChannel((v) => {
      const m = rng.uniform(recipe.brightness.multiplier[0], recipe.brightness.multiplier[1]);
      f.push(m);
      return v.map((a) => a * m);
    });
    d.brightness = f;
  }
  if (fires(rng, recipe.contrast.p)) {
    const f: number[] = [];
    perChannel((v) => {
      const m = twoSided(rng, recipe.contrast.factor);
      f.push(m);
      return contrastChannel(v, m);
    });
    d.contrast = f;
  }
  if (fires(rng, recipe.lowRes.p)) {
    const z: (number | null)[] = [];
    perChannel((v) => {
      if (rng.float() >= recipe.lowRes.pPerChannel) {
        z.push(null);
        return null;
      }
      const zoom = rng.uniform(recipe.lowRes.zoom[0], recipe.lowRes.zoom[1]);
      z.push(zoom);
      return simulateLowRes(v, dims, zoom);
    });
    d.lowResZoom = z;
  }
  for (const [t, invert] of [
    [recipe.invertedGamma, true],
    [recipe.gamma, false],
  ] as const) {
    if (!fires(rng, t.p)) continue;
    const g: number[] = [];
    perChannel((v) => {
      const gamma = twoSided(rng, t.gamma);
      g.push(gamma);
      return gammaChannel(v, gamma, invert);
    });
    if (invert) d.invertedGamma = g;
    else d.gamma = g;
  }
  if (recipe.mirror.pPerAxis > 0) {
    for (const a of recipe.mirror.axes) d.flips[a] = rng.float() < recipe.mirror.pPerAxis;
    if (d.flips.some((f) => f)) out = mirrorSample(out, dims, C, d.flips);
  }
  if (fires(rng, recipe.rot90.p)) {
    const k = recipe.rot90.ks[rng.int(0, recipe.rot90.ks.length - 1)]!;
    d.rot90 = k;
    out = rot90Sample(out, dims, C, k, recipe.rot90.axes);
  }
  return { data: out, decision: d };
}

/** Augment one channels-last sample `[X, Y, Z, C]` with `recipe`; returns a new array (the input is untouched). */
export function augmentIntensity(
  rng: Rng,
  data: Float32Array,
  dims: readonly [number, number, number],
  channels: number,
  recipe: IntensityRecipe,
): Float32Array {
  return augmentIntensityWithDecision(rng, data, dims, channels, recipe).data;
}
