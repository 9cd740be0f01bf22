/**
 * The Models Genesis corruptions (nnssl `src/nnssl/ssl_data/dataloading/model_genesis_transform.py`; Zhou et al.,
 * "Models Genesis"), as pure functions over ONE sample in channels-last layout `[X, Y, Z, C]` (a Float32Array of
 * X·Y·Z·C values) with a seeded `Rng`. Every function returns new arrays; inputs are never modified.
 *
 * `modelsGenesisPair` chains them like nnssl's `generate_pair`: the target is the (possibly flipped) crop, the input
 * a corrupted copy:
 *   1. flip (target, input and anonymisation mask together): while `random() < flipRate` (at most 3 times) flip a
 *      random SPATIAL axis X, Y or Z. Upstream draws the axis from {0,1,2} of a `(C,X,Y,Z)` array, so it flips the
 *      channel axis (a no-op for one channel) and never Z; we flip what was meant (docs/decisions/0045).
 *   2. local pixel shuffling (p `localRate`): `shuffleBlocks` times a block with sides `U{1..max(1, dim//10)}` at a
 *      random position receives a random permutation of the block's ORIGINAL voxels (later blocks overwrite earlier
 *      ones). Upstream shuffles channel 0 only; we move whole voxels (all channels with the same permutation).
 *   3. non-linear intensity transform (p `nonlinearRate`): a cubic Bézier curve through (0,0), (r1,r2), (r3,r4),
 *      (1,1), r ~ U(0,1), sampled at `bezierPoints` parameter values; with p 0.5 only the x values are sorted (a
 *      decreasing curve: intensity inversion), else both; values are mapped with `np.interp` semantics, i.e. values
 *      outside [0, 1] take the curve's end values. (The data are z-scored, so large parts saturate: upstream
 *      behaviour, kept.)
 *   4. painting (p `paintRate`): in-painting with p `inpaintRate`, else out-painting.
 *      - in-painting: up to 5 times while `random() < 0.95`: a box with sides `U{dim//6..dim//3}` starting at
 *        `U{3..dim−side−3}` is filled with U(0,1) noise (the same noise in every channel).
 *      - out-painting: everything becomes U(0,1) noise, then a box with sides `dim − U{3·dim//7..4·dim//7}` at
 *        `U{3..dim−side−3}` is restored from the input; up to 4 more while `random() < 0.95`.
 *      When a patch is too small for the 3-voxel margin (dim − side − 3 < 3) the start is `U{0..dim−side}`.
 *
 * `modelsGenesisBatch` applies it to every sample of a batch; it runs in the loader workers as the batch transform
 * `models-genesis` (`data/batch-transforms.ts`, ADR 0040), like upstream's data-loader workers, so the method's
 * `loss` receives the corrupted input and the clean target and does tensor work only.
 */
import { deriveSeed, Rng } from "./rng.js";

/** [X, Y, Z, C] */
export type SampleShape = readonly [number, number, number, number];

export interface ModelsGenesisConfig {
  readonly flipRate: number;
  readonly localRate: number;
  readonly nonlinearRate: number;
  readonly paintRate: number;
  readonly inpaintRate: number;
  readonly shuffleBlocks: number;
  readonly bezierPoints: number;
}

/** nnssl's `ModelGenesisConfig` (flip 0.4, local 0.5, non-linear 0.9, paint 0.9, in-paint 0.2) and constants. */
export const MODELS_GENESIS_DEFAULTS: ModelsGenesisConfig = {
  flipRate: 0.4,
  localRate: 0.5,
  nonlinearRate: 0.9,
  paintRate: 0.9,
  inpaintRate: 0.2,
  shuffleBlocks: 10_000,
  bezierPoints: 100_000,
};

export interface Box {
  readonly start: readonly [number, number, number];
  readonly size: readonly [number, number, number];
}

function spatial(shape: SampleShape): [number, number, number] {
  return [shape[0], shape[1], shape[2]];
}

/** Reverse one spatial axis (0 = X, 1 = Y, 2 = Z) of a channels-last sample. */
export function flipAxis(data: Float32Array, shape: SampleShape, axis: 0 | 1 | 2): Float32Array {
  const [X, Y, Z, C] = shape;
  if (data.length !== X * Y * Z * C)
    throw new RangeError(`sample has ${data.length} values, shape ${shape.join("x")} needs ${X * Y * Z * C}`);
  const out = new Float32Array(data.length);
  for (let x = 0; x < X; x++) {
    const sx = axis === 0 ? X - 1 - x : x;
    for (let y = 0; y < Y; y++) {
      const sy = axis === 1 ? Y - 1 - y : y;
      for (let z = 0; z < Z; z++) {
        const sz = axis === 2 ? Z - 1 - z : z;
        const o = ((x * Y + y) * Z + z) * C;
        const s = ((sx * Y + sy) * Z + sz) * C;
        for (let c = 0; c < C; c++) out[o + c] = data[s + c]!;
      }
    }
  }
  return out;
}

/** The flip draws: while `random() < rate` and fewer than `max` flips, a spatial axis uniform in {0,1,2}. */
export function drawFlips(rng: Rng, rate: number, max = 3): (0 | 1 | 2)[] {
  const axes: (0 | 1 | 2)[] = [];
  while (axes.length < max && rng.float() < rate) axes.push(rng.int(0, 2) as 0 | 1 | 2);
  return axes;
}

/**
 * Local pixel shuffling: `numBlocks` random blocks (sides `U{1..max(1, dim//10)}`), each written with a random
 * permutation of the ORIGINAL voxels of that block. Returns the result and the blocks (for tests).
 */
export function localPixelShuffle(
  data: Float32Array,
  shape: SampleShape,
  rng: Rng,
  numBlocks: number,
): { out: Float32Array; blocks: Box[] } {
  const [, Y, Z, C] = shape;
  const dims = spatial(shape);
  const out = data.slice();
  const blocks: Box[] = [];
  const maxSide = dims.map((d) => Math.max(1, Math.floor(d / 10)));
  const cap = maxSide[0]! * maxSide[1]! * maxSide[2]!;
  const idx = new Int32Array(cap);
  const perm = new Int32Array(cap);
  for (let n = 0; n < numBlocks; n++) {
    const size = maxSide.map((m) => rng.int(1, m)) as [number, number, number];
    const start = dims.map((d, a) => rng.int(0, d - size[a]!)) as [number, number, number];
    blocks.push({ start, size });
    let k = 0;
    for (let x = start[0]; x < start[0] + size[0]; x++)
      for (let y = start[1]; y < start[1] + size[1]; y++)
        for (let z = start[2]; z < start[2] + size[2]; z++) idx[k++] = (x * Y + y) * Z + z;
    // Fisher-Yates permutation of the block's voxels, read from the original
    for (let i = 0; i < k; i++) perm[i] = i;
    for (let i = k - 1; i > 0; i--) {
      const j = rng.int(0, i);
      const t = perm[i]!;
      perm[i] = perm[j]!;
      perm[j] = t;
    }
    for (let i = 0; i < k; i++) {
      const dst = idx[i]! * C;
      const src = idx[perm[i]!]! * C;
      for (let c = 0; c < C; c++) out[dst + c] = data[src + c]!;
    }
  }
  return { out, blocks };
}

/**
 * A Bézier curve through `points`, evaluated like upstream's `bezier_curve` at `nTimes` values of t = linspace(0,1):
 * point i is weighted by `C(n,i) · t^(n−i) · (1−t)^i`, so t = 0 is the LAST control point and t = 1 the first.
 */
export function bezierCurve(
  points: readonly (readonly [number, number])[],
  nTimes: number,
): { xs: Float64Array; ys: Float64Array } {
  const n = points.length - 1;
  const comb = (k: number): number => {
    let r = 1;
    for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
    return r;
  };
  const c = points.map((_, i) => comb(i));
  const xs = new Float64Array(nTimes);
  const ys = new Float64Array(nTimes);
  for (let k = 0; k < nTimes; k++) {
    const t = nTimes === 1 ? 0 : k / (nTimes - 1);
    let x = 0;
    let y = 0;
    for (let i = 0; i <= n; i++) {
      const w = c[i]! * t ** (n - i) * (1 - t) ** i;
      x += w * points[i]![0];
      y += w * points[i]![1];
    }
    xs[k] = x;
    ys[k] = y;
  }
  return { xs, ys };
}

export interface IntensityCurve {
  /** ascending */
  readonly xs: Float64Array;
  readonly ys: Float64Array;
  /** true: only the x values were sorted (intensity inversion) */
  readonly decreasing: boolean;
  readonly points: readonly (readonly [number, number])[];
}

/** Draw the non-linear intensity curve: control points (0,0), (r1,r2), (r3,r4), (1,1). */
export function intensityCurve(rng: Rng, nTimes: number): IntensityCurve {
  const points: [number, number][] = [
    [0, 0],
    [rng.float(), rng.float()],
    [rng.float(), rng.float()],
    [1, 1],
  ];
  const { xs, ys } = bezierCurve(points, nTimes);
  const decreasing = rng.float() < 0.5;
  xs.sort();
  if (!decreasing) ys.sort();
  return { xs, ys, decreasing, points };
}

/** `np.interp(v, xs, ys)` for ascending xs: clamped to the end values outside [xs[0], xs[n−1]]. */
export function interp(v: number, xs: Float64Array, ys: Float64Array): number {
  const n = xs.length;
  if (Number.isNaN(v)) return v;
  if (v <= xs[0]!) return ys[0]!;
  if (v >= xs[n - 1]!) return ys[n - 1]!;
  // largest j with xs[j] <= v
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= v) lo = mid;
    else hi = mid;
  }
  const x0 = xs[lo]!;
  const x1 = xs[hi]!;
  if (x1 === x0) return ys[hi]!;
  return ys[lo]! + ((v - x0) / (x1 - x0)) * (ys[hi]! - ys[lo]!);
}

/**
 * `interp` for many values: a table of uniform buckets over [xs[0], xs[n−1]] gives the search start, so each value
 * costs a step or two instead of a binary search (the result is the same: the largest j with xs[j] <= v).
 */
export function nonlinearTransform(data: Float32Array, curve: Pick<IntensityCurve, "xs" | "ys">): Float32Array {
  const { xs, ys } = curve;
  const n = xs.length;
  const lo = xs[0]!;
  const hi = xs[n - 1]!;
  const out = new Float32Array(data.length);
  if (!(hi > lo)) {
    for (let i = 0; i < data.length; i++) out[i] = interp(data[i]!, xs, ys);
    return out;
  }
  const K = 1 << 16;
  const scale = K / (hi - lo);
  // first[b] = largest j with xs[j] <= lower edge of bucket b
  const first = new Int32Array(K);
  let j = 0;
  for (let b = 0; b < K; b++) {
    const edge = lo + b / scale;
    while (j + 1 < n && xs[j + 1]! <= edge) j++;
    first[b] = j;
  }
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!(v > lo && v < hi)) {
      out[i] = interp(v, xs, ys);
      continue;
    }
    let k = first[Math.min(K - 1, Math.floor((v - lo) * scale))]!;
    while (k > 0 && xs[k]! > v) k--; // rounding of the bucket index
    while (k + 1 < n && xs[k + 1]! <= v) k++;
    const x0 = xs[k]!;
    const x1 = xs[k + 1]!;
    out[i] = x1 === x0 ? ys[k + 1]! : ys[k]! + ((v - x0) / (x1 - x0)) * (ys[k + 1]! - ys[k]!);
  }
  return out;
}

function boxStart(rng: Rng, dim: number, size: number): number {
  const hi = dim - size - 3;
  return hi >= 3 ? rng.int(3, hi) : rng.int(0, Math.max(0, dim - size));
}

function forBox(shape: SampleShape, b: Box, f: (o: number) => void): void {
  const [, Y, Z, C] = shape;
  for (let x = b.start[0]; x < b.start[0] + b.size[0]; x++)
    for (let y = b.start[1]; y < b.start[1] + b.size[1]; y++)
      for (let z = b.start[2]; z < b.start[2] + b.size[2]; z++) f(((x * Y + y) * Z + z) * C);
}

/** In-painting: up to 5 boxes (sides `U{dim//6..dim//3}`) filled with U(0,1) noise, shared by all channels. */
export function inPaint(data: Float32Array, shape: SampleShape, rng: Rng): { out: Float32Array; boxes: Box[] } {
  const C = shape[3];
  const dims = spatial(shape);
  const out = data.slice();
  const boxes: Box[] = [];
  while (boxes.length < 5 && rng.float() < 0.95) {
    const size = dims.map((d) => rng.int(Math.max(1, Math.floor(d / 6)), Math.max(1, Math.floor(d / 3)))) as [
      number,
      number,
      number,
    ];
    const start = dims.map((d, a) => boxStart(rng, d, size[a]!)) as [number, number, number];
    const b = { start, size };
    boxes.push(b);
    forBox(shape, b, (o) => {
      const v = rng.float();
      for (let c = 0; c < C; c++) out[o + c] = v;
    });
  }
  return { out, boxes };
}

/** Out-painting: U(0,1) noise everywhere, then 1 + up to 4 boxes (sides `dim − U{3·dim//7..4·dim//7}`) restored. */
export function outPaint(data: Float32Array, shape: SampleShape, rng: Rng): { out: Float32Array; boxes: Box[] } {
  const C = shape[3];
  const dims = spatial(shape);
  const out = new Float32Array(data.length);
  for (let i = 0; i < out.length; i++) out[i] = rng.float();
  const boxes: Box[] = [];
  const one = (): void => {
    const size = dims.map((d) => Math.max(1, d - rng.int(Math.floor((3 * d) / 7), Math.floor((4 * d) / 7)))) as [
      number,
      number,
      number,
    ];
    const start = dims.map((d, a) => boxStart(rng, d, size[a]!)) as [number, number, number];
    const b = { start, size };
    boxes.push(b);
    forBox(shape, b, (o) => {
      for (let c = 0; c < C; c++) out[o + c] = data[o + c]!;
    });
  };
  one();
  while (boxes.length < 5 && rng.float() < 0.95) one();
  return { out, boxes };
}

export interface ModelsGenesisPair {
  /** corrupted input */
  readonly input: Float32Array;
  /** the (flipped) uncorrupted sample */
  readonly target: Float32Array;
  /** the anonymisation mask flipped like the target (when given) */
  readonly anon?: Float32Array;
  /** what was applied, for tests and diagnostics */
  readonly applied: {
    readonly flips: readonly (0 | 1 | 2)[];
    readonly shuffled: boolean;
    readonly curve: IntensityCurve | null;
    readonly paint: "in" | "out" | null;
    readonly boxes: readonly Box[];
  };
}

/** One training pair (upstream `generate_pair` for one sample). `anon` is [X, Y, Z, 1]. */
export function modelsGenesisPair(
  sample: Float32Array,
  shape: SampleShape,
  rng: Rng,
  cfg: ModelsGenesisConfig = MODELS_GENESIS_DEFAULTS,
  anon?: Float32Array,
): ModelsGenesisPair {
  const maskShape: SampleShape = [shape[0], shape[1], shape[2], 1];
  const flips = drawFlips(rng, cfg.flipRate);
  let target = sample;
  let mask = anon;
  for (const a of flips) {
    target = flipAxis(target, shape, a);
    if (mask !== undefined) mask = flipAxis(mask, maskShape, a);
  }
  if (target === sample) target = sample.slice();
  let input = target;
  let shuffled = false;
  if (rng.float() < cfg.localRate) {
    input = localPixelShuffle(input, shape, rng, cfg.shuffleBlocks).out;
    shuffled = true;
  }
  let curve: IntensityCurve | null = null;
  if (rng.float() < cfg.nonlinearRate) {
    curve = intensityCurve(rng, cfg.bezierPoints);
    input = nonlinearTransform(input, curve);
  }
  let paint: "in" | "out" | null = null;
  let boxes: Box[] = [];
  if (rng.float() < cfg.paintRate) {
    paint = rng.float() < cfg.inpaintRate ? "in" : "out";
    const r = paint === "in" ? inPaint(input, shape, rng) : outPaint(input, shape, rng);
    input = r.out;
    boxes = r.boxes;
  }
  if (input === target) input = target.slice();
  return {
    input,
    target,
    ...(mask === undefined ? {} : { anon: mask }),
    applied: { flips, shuffled, curve, paint, boxes },
  };
}

/**
 * Corrupt every sample of a channels-last batch `[B, X, Y, Z, C]`: inputs, targets and (flipped) anon masks as flat
 * arrays. Sample `b` draws from its own generator `deriveSeed(seed, "models-genesis", b)`, so a sample's corruption
 * does not depend on the others.
 */
export function modelsGenesisBatch(
  x: Float32Array,
  shape: readonly [number, number, number, number, number],
  seed: number,
  cfg: ModelsGenesisConfig,
  anon?: Float32Array,
): { input: Float32Array; target: Float32Array; anon?: Float32Array } {
  const [B, X, Y, Z, C] = shape;
  const n = X * Y * Z * C;
  const nv = X * Y * Z;
  const input = new Float32Array(B * n);
  const target = new Float32Array(B * n);
  const anonOut = anon === undefined ? undefined : new Float32Array(B * nv);
  for (let b = 0; b < B; b++) {
    const rng = new Rng(deriveSeed(seed, "models-genesis", b));
    const p = modelsGenesisPair(
      x.subarray(b * n, (b + 1) * n),
      [X, Y, Z, C],
      rng,
      cfg,
      anon?.subarray(b * nv, (b + 1) * nv),
    );
    input.set(p.input, b * n);
    target.set(p.target, b * n);
    if (anonOut !== undefined && p.anon !== undefined) anonOut.set(p.anon, b * nv);
  }
  return { input, target, ...(anonOut === undefined ? {} : { anon: anonOut }) };
}
