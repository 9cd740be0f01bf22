/** Spatial transpose of a C-order (C, s0, s1, s2) array: output axis i is input axis `perm[i]`. */
import type { Shape3 } from "./resample.js";

export function isIdentity(perm: readonly number[]): boolean {
  return perm[0] === 0 && perm[1] === 1 && perm[2] === 2;
}

export function permuteShape<T>(v: readonly [T, T, T], perm: readonly number[]): [T, T, T] {
  return [v[perm[0]!]!, v[perm[1]!]!, v[perm[2]!]!];
}

export function transposeSpatial(
  data: Float32Array,
  channels: number,
  shape: Shape3,
  perm: readonly number[],
): { data: Float32Array; shape: [number, number, number] } {
  const outShape = permuteShape(shape, perm);
  if (isIdentity(perm)) return { data, shape: outShape };
  const inStrides = [shape[1] * shape[2], shape[2], 1];
  const st = permuteShape(inStrides as [number, number, number], perm);
  const n = shape[0] * shape[1] * shape[2];
  const out = new Float32Array(data.length);
  let q = 0;
  for (let c = 0; c < channels; c++) {
    const off = c * n;
    for (let i = 0; i < outShape[0]; i++)
      for (let j = 0; j < outShape[1]; j++) {
        const base = off + i * st[0] + j * st[1];
        for (let k = 0; k < outShape[2]; k++) out[q++] = data[base + k * st[2]]!;
      }
  }
  return { data: out, shape: outShape };
}
