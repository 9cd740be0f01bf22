/**
 * Training augmentations of nnssl's MAE pipeline (nnssl `BaseMAETrainer.get_training_transforms`), on CPU in plain
 * typed arrays (run in loader workers):
 *
 * 1. Spatial transform from the loader patch P to the network patch F: with probability `pRotation` three angles
 *    U(−30°, 30°); with probability `pScale` one isotropic factor (½: U(0.7, 1), ½: U(1, 1.4)); output voxel `i`
 *    samples the input at `((i − (F−1)/2) · Rx·Ry·Rz) · s + (P/2 − 0.5)`; zero outside. If neither fires, a plain
 *    centre crop at offset (P − F) // 2. Images use trilinear (order-1) interpolation instead of upstream's cubic
 *    spline (ADR 0020: order 3 costs ~8× more on CPU and matters little for a reconstruction target); masks use
 *    nearest neighbour with −1 outside.
 * 2. Mirror: each spatial axis flipped independently with probability 0.5.
 *
 * Arrays are C-order (C, X, Y, Z).
 */
import { matMul3, rotX, rotY, rotZ, type Shape3 } from "./patch.js";
import type { Rng } from "./rng.js";

export interface AugmentOptions {
  readonly pRotation: number;
  readonly maxAngleRad: number;
  readonly pScale: number;
  readonly mirror: boolean;
}

export const MAE_AUGMENT: AugmentOptions = { pRotation: 0.2, maxAngleRad: Math.PI / 6, pScale: 0.2, mirror: true };
export const NO_AUGMENT: AugmentOptions = { pRotation: 0, maxAngleRad: 0, pScale: 0, mirror: false };

export interface Sample {
  data: Float32Array;
  /** Anonymisation mask (1 anonymised, 0 kept, −1 outside the image) or undefined. */
  mask: Float32Array | undefined;
}

/** What the random draws of one sample decided (for tests and logs). */
export interface AugmentDecision {
  rotation: [number, number, number] | null;
  scale: number | null;
  flips: [boolean, boolean, boolean];
}

export function augmentSample(
  rng: Rng,
  s: Sample,
  channels: number,
  P: Shape3,
  F: Shape3,
  o: AugmentOptions,
): { sample: Sample; decision: AugmentDecision } {
  const rotate = o.pRotation > 0 && rng.float() < o.pRotation;
  const angles: [number, number, number] | null = rotate
    ? [
        rng.uniform(-o.maxAngleRad, o.maxAngleRad),
        rng.uniform(-o.maxAngleRad, o.maxAngleRad),
        rng.uniform(-o.maxAngleRad, o.maxAngleRad),
      ]
    : null;
  const doScale = o.pScale > 0 && rng.float() < o.pScale;
  const scale = doScale ? (rng.float() < 0.5 ? rng.uniform(0.7, 1) : rng.uniform(1, 1.4)) : null;
  let out: Sample;
  if (angles === null && scale === null) {
    out = centreCrop(s, channels, P, F);
  } else {
    let R = [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    if (angles !== null) R = matMul3(matMul3(rotX(angles[0]), rotY(angles[1])), rotZ(angles[2]));
    out = resample(s, channels, P, F, R, scale ?? 1);
  }
  const flips: [boolean, boolean, boolean] = o.mirror
    ? [rng.float() < 0.5, rng.float() < 0.5, rng.float() < 0.5]
    : [false, false, false];
  if (flips.some((f) => f)) {
    out = {
      data: flip(out.data, channels, F, flips),
      mask: out.mask === undefined ? undefined : flip(out.mask, 1, F, flips),
    };
  }
  return { sample: out, decision: { rotation: angles, scale, flips } };
}

export function centreCrop(s: Sample, channels: number, P: Shape3, F: Shape3): Sample {
  const off = [0, 1, 2].map((d) => Math.floor((P[d]! - F[d]!) / 2));
  const crop = (src: Float32Array, C: number) => {
    const dst = new Float32Array(C * F[0] * F[1] * F[2]);
    let k = 0;
    for (let c = 0; c < C; c++)
      for (let x = 0; x < F[0]; x++)
        for (let y = 0; y < F[1]; y++) {
          const base = ((c * P[0] + x + off[0]!) * P[1] + y + off[1]!) * P[2] + off[2]!;
          dst.set(src.subarray(base, base + F[2]), k);
          k += F[2];
        }
    return dst;
  };
  return { data: crop(s.data, channels), mask: s.mask === undefined ? undefined : crop(s.mask, 1) };
}

function resample(s: Sample, channels: number, P: Shape3, F: Shape3, R: number[][], scale: number): Sample {
  const n = F[0] * F[1] * F[2];
  const data = new Float32Array(channels * n);
  const mask = s.mask === undefined ? undefined : new Float32Array(n);
  const cP = P.map((p) => p / 2 - 0.5);
  const cF = F.map((f) => (f - 1) / 2);
  const [P0, P1, P2] = P;
  const vol = P0 * P1 * P2;
  let o = 0;
  for (let x = 0; x < F[0]; x++) {
    const vx = x - cF[0]!;
    for (let y = 0; y < F[1]; y++) {
      const vy = y - cF[1]!;
      for (let z = 0; z < F[2]; z++, o++) {
        const vz = z - cF[2]!;
        const px = (vx * R[0]![0]! + vy * R[1]![0]! + vz * R[2]![0]!) * scale + cP[0]!;
        const py = (vx * R[0]![1]! + vy * R[1]![1]! + vz * R[2]![1]!) * scale + cP[1]!;
        const pz = (vx * R[0]![2]! + vy * R[1]![2]! + vz * R[2]![2]!) * scale + cP[2]!;
        const x0 = Math.floor(px);
        const y0 = Math.floor(py);
        const z0 = Math.floor(pz);
        const fx = px - x0;
        const fy = py - y0;
        const fz = pz - z0;
        for (let c = 0; c < channels; c++) {
          let acc = 0;
          for (let dx = 0; dx < 2; dx++) {
            const xi = x0 + dx;
            if (xi < 0 || xi >= P0) continue;
            const wx = dx === 0 ? 1 - fx : fx;
            for (let dy = 0; dy < 2; dy++) {
              const yi = y0 + dy;
              if (yi < 0 || yi >= P1) continue;
              const wy = dy === 0 ? 1 - fy : fy;
              for (let dz = 0; dz < 2; dz++) {
                const zi = z0 + dz;
                if (zi < 0 || zi >= P2) continue;
                const wz = dz === 0 ? 1 - fz : fz;
                acc += wx * wy * wz * s.data[c * vol + (xi * P1 + yi) * P2 + zi]!;
              }
            }
          }
          data[c * n + o] = acc;
        }
        if (mask !== undefined) {
          const xi = Math.round(px);
          const yi = Math.round(py);
          const zi = Math.round(pz);
          mask[o] =
            xi < 0 || yi < 0 || zi < 0 || xi >= P0 || yi >= P1 || zi >= P2 ? -1 : s.mask![(xi * P1 + yi) * P2 + zi]!;
        }
      }
    }
  }
  return { data, mask };
}

export function flip(
  src: Float32Array,
  channels: number,
  F: Shape3,
  flips: readonly [boolean, boolean, boolean],
): Float32Array {
  const dst = new Float32Array(src.length);
  const [A, B, Cz] = F;
  for (let c = 0; c < channels; c++)
    for (let x = 0; x < A; x++) {
      const xs = flips[0] ? A - 1 - x : x;
      for (let y = 0; y < B; y++) {
        const ys = flips[1] ? B - 1 - y : y;
        const dBase = ((c * A + x) * B + y) * Cz;
        const sBase = ((c * A + xs) * B + ys) * Cz;
        for (let z = 0; z < Cz; z++) dst[dBase + z] = src[sBase + (flips[2] ? Cz - 1 - z : z)]!;
      }
    }
  return dst;
}
