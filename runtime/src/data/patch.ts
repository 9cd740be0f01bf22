/**
 * Patch geometry of nnssl's default loader (nnssl `src/nnssl/ssl_data/dataloading/data_loader_3d.py`,
 * `compute_initial_patch_size.py`): the initial (pre-augmentation) patch size that leaves room for rotation and
 * scaling, and the bounds of the patch's lower corner with zero padding.
 */
import type { Rng } from "./rng.js";

export type Shape3 = readonly [number, number, number];

/** nnU-Net `get_patch_size`: rotate F about each axis separately by the max angle, per-axis max |coord|, / min scale. */
export function initialPatchSize(
  final: Shape3,
  maxAngleRad: Shape3 = [Math.PI / 6, Math.PI / 6, Math.PI / 6],
  minScale = 0.85,
): [number, number, number] {
  const [ax, ay, az] = maxAngleRad;
  const out = [...final] as [number, number, number];
  const apply = (m: number[][]) => {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += final[k]! * m[k]![j]!;
      out[j] = Math.max(out[j]!, Math.abs(s));
    }
  };
  apply(rotX(ax));
  apply(rotY(ay));
  apply(rotZ(az));
  return out.map((v) => Math.trunc(v / minScale + 1e-9)) as [number, number, number];
}

export function rotX(a: number): number[][] {
  const c = Math.cos(a);
  const s = Math.sin(a);
  return [
    [1, 0, 0],
    [0, c, -s],
    [0, s, c],
  ];
}
export function rotY(a: number): number[][] {
  const c = Math.cos(a);
  const s = Math.sin(a);
  return [
    [c, 0, s],
    [0, 1, 0],
    [-s, 0, c],
  ];
}
export function rotZ(a: number): number[][] {
  const c = Math.cos(a);
  const s = Math.sin(a);
  return [
    [c, -s, 0],
    [s, c, 0],
    [0, 0, 1],
  ];
}
export function matMul3(a: number[][], b: number[][]): number[][] {
  return [0, 1, 2].map((i) =>
    [0, 1, 2].map((j) => a[i]![0]! * b[0]![j]! + a[i]![1]! * b[1]![j]! + a[i]![2]! * b[2]![j]!),
  );
}

/** Per-axis inclusive bounds [lb, ub] of the lower corner of a loader patch P over an image of `shape` (network patch F). */
export function cornerBounds(shape: Shape3, loaderPatch: Shape3, finalPatch: Shape3): { lb: number[]; ub: number[] } {
  const lb: number[] = [];
  const ub: number[] = [];
  for (let d = 0; d < 3; d++) {
    const P = loaderPatch[d]!;
    let need = P - finalPatch[d]!;
    if (need + shape[d]! < P) need = P - shape[d]!;
    lb.push(Math.floor(-need / 2) | 0);
    ub.push(shape[d]! + Math.floor(need / 2) + (need % 2) - P);
  }
  return { lb, ub };
}

export function sampleCorner(rng: Rng, shape: Shape3, loaderPatch: Shape3, finalPatch: Shape3): number[] {
  const { lb, ub } = cornerBounds(shape, loaderPatch, finalPatch);
  return lb.map((l, d) => rng.int(l, Math.max(l, ub[d]!)));
}

/** The lower corner of nnssl's centre-crop loader: `int((lb + ub) / 2)` per axis (Python int() truncates toward 0). */
export function centreCorner(shape: Shape3, loaderPatch: Shape3, finalPatch: Shape3): number[] {
  const { lb, ub } = cornerBounds(shape, loaderPatch, finalPatch);
  return lb.map((l, d) => Math.trunc((l + ub[d]!) / 2));
}
