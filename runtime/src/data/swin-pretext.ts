/**
 * The SwinUNETR pre-text transform of nnssl (upstream `SwinUNETRTransform`,
 * `src/nnssl/ssl_data/dataloading/swin_unetr_transform.py`), on CPU in plain typed arrays, seeded. A batch is
 * channels-last C-order [B, X, Y, Z, C] (our tensor layout). Two views are made from the same batch, one after the
 * other; for each view:
 *
 * 1. Rotation (`rot_rand`): per sample k ~ Uint[0, 3], rotation by k·90° in the plane of the last two spatial axes
 *    (array axes Y, Z; `np.rot90(x, k, axes=(2, 3))` on (C, X, Y, Z)): for k = 1, out[x, i, j] = in[x, j, N−1−i].
 *    Label = k. Needs Y = Z (upstream writes the rotated sample back into the batch, which fails otherwise).
 * 2. Cut-out (`inner_cutout_rand`) on the rotated batch, per sample i in order:
 *    (a) target t = U(0, 0.3)·X·Y·Z voxels; while the accumulated box volume (overlaps counted twice) is < t: a box
 *        with start Uint[0, d − tol] and extent Uint[tol, max] per axis (tol = int(0.05·d), max = int(0.25·d): 8 and
 *        40 for 160), clipped to the volume, filled with Gaussian noise min-max normalised to [0, 1] (over the
 *        whole box, all channels);
 *    (b) j ~ Uint[0, B−1]; if j ≠ i, (a) again but copying the same region of sample j as it is at that moment (already
 *        cut for j < i, only rotated for j > i).
 *
 * Departures from upstream, only where it cannot run: tol and max are at least 1 voxel (patches under 20 voxels would
 * otherwise allow empty boxes and never reach the target), and a noise box holding a single value (one voxel, one
 * channel; min = max) is set to 0 instead of upstream's 0/0 = NaN.
 */
import { ConfigError } from "../errors.js";
import type { Rng } from "./rng.js";

/** Per-sample layout [X, Y, Z, C], channels-last. */
export type SampleShape = readonly [number, number, number, number];

export const MAX_DROP = 0.3;
export const MAX_BLOCK = 0.25;
export const TOLERANCE = 0.05;

export interface Box {
  /** Inclusive lower corner (X, Y, Z). */
  readonly start: readonly [number, number, number];
  /** Exclusive upper corner (X, Y, Z). */
  readonly end: readonly [number, number, number];
}

export interface CutoutDecision {
  /** Target voxel count of the noise stage, U(0, MAX_DROP)·X·Y·Z. */
  readonly noiseTarget: number;
  readonly noiseBoxes: Box[];
  /** Sample the regions were copied from; equal to this sample's index when no copy stage ran. */
  readonly copyFrom: number;
  readonly copyTarget: number;
  readonly copyBoxes: Box[];
}

export interface SwinView {
  /** Rotated batch (the reconstruction target), [B, X, Y, Z, C]. */
  readonly rotated: Float32Array;
  /** Rotated and cut-out batch (the network input), [B, X, Y, Z, C]. */
  readonly cutout: Float32Array;
  /** Rotation label k (0..3) per sample. */
  readonly rotations: Int32Array;
  readonly cutouts: CutoutDecision[];
}

/** Standard normal draw (Box–Muller). */
function normal(rng: Rng): number {
  let u = rng.float();
  while (u === 0) u = rng.float();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.float());
}

/** `np.rot90(x, k, axes=(Y, Z))` of one sample [X, Y, Z, C] (Y = Z) into `out`. */
export function rot90YZ(
  src: Float32Array,
  shape: SampleShape,
  k: number,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const [X, Y, Z, C] = shape;
  if (Y !== Z && k % 2 !== 0)
    throw new ConfigError(`rotation in the (Y, Z) plane needs Y = Z, got ${X}x${Y}x${Z}`, { field: "patchSize" });
  const n = Z;
  const kk = ((k % 4) + 4) % 4;
  for (let x = 0; x < X; x++) {
    for (let i = 0; i < Y; i++) {
      for (let j = 0; j < Z; j++) {
        let si: number, sj: number;
        if (kk === 0) [si, sj] = [i, j];
        else if (kk === 1) [si, sj] = [j, n - 1 - i];
        else if (kk === 2) [si, sj] = [n - 1 - i, n - 1 - j];
        else [si, sj] = [n - 1 - j, i];
        const o = ((x * Y + i) * Z + j) * C;
        const s = ((x * Y + si) * Z + sj) * C;
        for (let c = 0; c < C; c++) out[o + c] = src[s + c]!;
      }
    }
  }
  return out;
}

/** Box start/extent limits per axis: [tol, max] with tol = int(0.05·d), max = int(0.25·d), both at least 1. */
export function boxLimits(d: number): [number, number] {
  const tol = Math.max(1, Math.trunc(TOLERANCE * d));
  return [tol, Math.max(tol, Math.trunc(MAX_BLOCK * d))];
}

/**
 * One stage of upstream `patch_rand_drop` on sample `img` (a [X, Y, Z, C] view) in place: noise boxes, or boxes
 * copied from `source` (same layout) when given. Returns the target and the boxes drawn.
 */
export function patchRandDrop(
  rng: Rng,
  img: Float32Array,
  shape: SampleShape,
  source?: Float32Array,
): { target: number; boxes: Box[] } {
  const [X, Y, Z, C] = shape;
  const dims = [X, Y, Z] as const;
  const lim = dims.map(boxLimits);
  const target = rng.uniform(0, MAX_DROP) * X * Y * Z;
  const boxes: Box[] = [];
  let total = 0;
  while (total < target) {
    const start = dims.map((d, a) => rng.int(0, d - lim[a]![0])) as [number, number, number];
    const end = dims.map((d, a) => Math.min(start[a]! + rng.int(lim[a]![0], lim[a]![1]), d)) as [
      number,
      number,
      number,
    ];
    const [ex, ey, ez] = [end[0] - start[0], end[1] - start[1], end[2] - start[2]];
    if (source === undefined) {
      const noise = new Float64Array(ex * ey * ez * C);
      let lo = Infinity,
        hi = -Infinity;
      for (let q = 0; q < noise.length; q++) {
        const v = normal(rng);
        noise[q] = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const range = hi > lo ? hi - lo : Infinity; // a single value → 0
      let q = 0;
      for (let x = start[0]; x < end[0]; x++)
        for (let y = start[1]; y < end[1]; y++)
          for (let z = start[2]; z < end[2]; z++) {
            const o = ((x * Y + y) * Z + z) * C;
            for (let c = 0; c < C; c++) img[o + c] = (noise[q++]! - lo) / range;
          }
    } else {
      for (let x = start[0]; x < end[0]; x++)
        for (let y = start[1]; y < end[1]; y++) {
          const o = ((x * Y + y) * Z + start[2]) * C;
          img.set(source.subarray(o, o + ez * C), o);
        }
    }
    boxes.push({ start, end });
    total += ex * ey * ez;
  }
  return { target, boxes };
}

/** Upstream `inner_cutout_rand` over a batch [B, X, Y, Z, C] in place. */
export function innerCutoutRand(rng: Rng, batch: Float32Array, B: number, shape: SampleShape): CutoutDecision[] {
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  if (batch.length !== B * n) throw new Error(`innerCutoutRand: batch has ${batch.length} values, expected ${B}x${n}`);
  const sample = (i: number) => batch.subarray(i * n, (i + 1) * n);
  const out: CutoutDecision[] = [];
  for (let i = 0; i < B; i++) {
    const noise = patchRandDrop(rng, sample(i), shape);
    const j = rng.int(0, B - 1);
    const copy = j !== i ? patchRandDrop(rng, sample(i), shape, sample(j)) : { target: 0, boxes: [] };
    out.push({
      noiseTarget: noise.target,
      noiseBoxes: noise.boxes,
      copyFrom: j === i ? i : j,
      copyTarget: copy.target,
      copyBoxes: copy.boxes,
    });
  }
  return out;
}

/** One view: per-sample rotation (rot_rand), then the cut-out of the rotated batch (inner_cutout_rand). */
export function swinView(rng: Rng, batch: Float32Array, B: number, shape: SampleShape): SwinView {
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  const rotated = new Float32Array(B * n);
  const rotations = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    rotations[i] = rng.int(0, 3);
    rot90YZ(batch.subarray(i * n, (i + 1) * n), shape, rotations[i]!, rotated.subarray(i * n, (i + 1) * n));
  }
  const cutout = rotated.slice();
  const cutouts = innerCutoutRand(rng, cutout, B, shape);
  return { rotated, cutout, rotations, cutouts };
}

/** The two views of upstream `SwinUNETRTransform`, drawn one after the other from `rng`. */
export function swinPretextViews(rng: Rng, batch: Float32Array, B: number, shape: SampleShape): [SwinView, SwinView] {
  if (shape[1] !== shape[2])
    throw new ConfigError(
      `the SwinUNETR rotation (Y, Z plane) needs a patch with Y = Z, got ${shape.slice(0, 3).join("x")}`,
      { field: "patchSize" },
    );
  return [swinView(rng, batch, B, shape), swinView(rng, batch, B, shape)];
}
