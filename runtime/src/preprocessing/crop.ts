/**
 * Crop to the non-zero region (nnssl `crop_to_nonzero` in `src/nnssl/preprocessing/cropping/cropping.py`, from
 * nnU-Net): the non-zero mask is every voxel where any channel is != 0, with enclosed background holes filled
 * (`scipy.ndimage.binary_fill_holes`, 6-connected background); the bounding box is inclusive-min / exclusive-max.
 * Inside each cropped mask, voxels that are 0 and outside the non-zero mask become -1.
 */
import type { Shape3 } from "./resample.js";

export type Bbox = [[number, number], [number, number], [number, number]];

/** Any channel != 0, then 3D hole filling. Returns 1 = inside, 0 = outside. */
export function nonzeroMask(data: Float32Array, channels: number, shape: Shape3): Uint8Array {
  const n = shape[0] * shape[1] * shape[2];
  const m = new Uint8Array(n);
  for (let c = 0; c < channels; c++) {
    const off = c * n;
    for (let i = 0; i < n; i++) if (data[off + i] !== 0) m[i] = 1;
  }
  fillHoles(m, shape);
  return m;
}

/**
 * Binary hole filling in place: background voxels not 6-connected to the volume border become foreground.
 * Scan-line flood fill from the border: the stack holds row segments, not voxels, so memory stays small.
 */
export function fillHoles(mask: Uint8Array, shape: Shape3): void {
  const [s0, s1, s2] = shape;
  const REACHED = 2;
  let stack = new Int32Array(1024);
  let sp = 0;
  const push = (row: number, x: number): void => {
    if (sp + 2 > stack.length) {
      const bigger = new Int32Array(stack.length * 2);
      bigger.set(stack);
      stack = bigger;
    }
    stack[sp++] = row;
    stack[sp++] = x;
  };
  // seed: every background voxel on the border
  for (let i = 0; i < s0; i++) {
    for (let j = 0; j < s1; j++) {
      const row = i * s1 + j;
      const base = row * s2;
      if (i === 0 || i === s0 - 1 || j === 0 || j === s1 - 1) {
        for (let k = 0; k < s2; k++) if (mask[base + k] === 0 && (k === 0 || mask[base + k - 1] !== 0)) push(row, k);
      } else {
        if (mask[base] === 0) push(row, 0);
        if (s2 > 1 && mask[base + s2 - 1] === 0) push(row, s2 - 1);
      }
    }
  }
  const scanRow = (row: number, xl: number, xr: number): void => {
    const base = row * s2;
    let inRun = false;
    for (let k = xl; k <= xr; k++) {
      const free = mask[base + k] === 0;
      if (free && !inRun) push(row, k);
      inRun = free;
    }
  };
  while (sp > 0) {
    const x = stack[--sp]!;
    const row = stack[--sp]!;
    const base = row * s2;
    if (mask[base + x] !== 0) continue;
    let xl = x;
    while (xl > 0 && mask[base + xl - 1] === 0) xl--;
    let xr = x;
    while (xr < s2 - 1 && mask[base + xr + 1] === 0) xr++;
    for (let k = xl; k <= xr; k++) mask[base + k] = REACHED;
    const i = Math.floor(row / s1);
    const j = row - i * s1;
    if (i > 0) scanRow(row - s1, xl, xr);
    if (i < s0 - 1) scanRow(row + s1, xl, xr);
    if (j > 0) scanRow(row - 1, xl, xr);
    if (j < s1 - 1) scanRow(row + 1, xl, xr);
  }
  for (let p = 0; p < mask.length; p++) mask[p] = mask[p] === REACHED ? 0 : 1;
}

/** Bounding box [lo, hi) per axis of the voxels set in `mask`, or null when empty. */
export function bboxOf(mask: Uint8Array, shape: Shape3): Bbox | null {
  const [s0, s1, s2] = shape;
  const lo = [s0, s1, s2];
  const hi = [-1, -1, -1];
  let p = 0;
  for (let i = 0; i < s0; i++)
    for (let j = 0; j < s1; j++) {
      for (let k = 0; k < s2; k++, p++) {
        if (mask[p] === 0) continue;
        if (i < lo[0]!) lo[0] = i;
        if (i > hi[0]!) hi[0] = i;
        if (j < lo[1]!) lo[1] = j;
        if (j > hi[1]!) hi[1] = j;
        if (k < lo[2]!) lo[2] = k;
        if (k > hi[2]!) hi[2] = k;
      }
    }
  if (hi[0]! < 0) return null;
  return [
    [lo[0]!, hi[0]! + 1],
    [lo[1]!, hi[1]! + 1],
    [lo[2]!, hi[2]! + 1],
  ];
}

export function bboxShape(b: Bbox): [number, number, number] {
  return [b[0][1] - b[0][0], b[1][1] - b[1][0], b[2][1] - b[2][0]];
}

/** Copy the bbox region of every channel of a C-order (C, s0, s1, s2) array. */
export function cropArray<T extends Float32Array | Uint8Array>(data: T, channels: number, shape: Shape3, b: Bbox): T {
  const [c0, c1, c2] = bboxShape(b);
  const n = shape[0] * shape[1] * shape[2];
  const out = new (data.constructor as new (len: number) => T)(channels * c0 * c1 * c2);
  let q = 0;
  for (let c = 0; c < channels; c++)
    for (let i = b[0][0]; i < b[0][1]; i++)
      for (let j = b[1][0]; j < b[1][1]; j++) {
        const from = c * n + (i * shape[1] + j) * shape[2];
        out.set(data.subarray(from + b[2][0], from + b[2][1]), q);
        q += c2;
      }
  return out;
}

/** Set voxels that are 0 and outside the (cropped) non-zero mask to `label` (-1), in every channel. */
export function markOutside(mask: Float32Array, channels: number, nonzero: Uint8Array, label = -1): void {
  const n = nonzero.length;
  for (let c = 0; c < channels; c++) {
    const off = c * n;
    for (let i = 0; i < n; i++) if (nonzero[i] === 0 && mask[off + i] === 0) mask[off + i] = label;
  }
}
