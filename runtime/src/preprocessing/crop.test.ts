import assert from "node:assert/strict";
import { test } from "node:test";
import { bboxOf, cropArray, fillHoles, markOutside, nonzeroMask } from "./crop.js";

test("fillHoles fills an enclosed cavity but not a tunnel to the border", () => {
  const s = 7;
  const m = new Uint8Array(s * s * s);
  const idx = (i: number, j: number, k: number): number => (i * s + j) * s + k;
  for (let i = 1; i < 6; i++) for (let j = 1; j < 6; j++) for (let k = 1; k < 6; k++) m[idx(i, j, k)] = 1;
  m[idx(3, 3, 3)] = 0; // enclosed hole
  m[idx(2, 2, 2)] = 0; // enclosed (diagonal neighbour of nothing open)
  for (let k = 0; k < 4; k++) m[idx(4, 4, k)] = 0; // tunnel from the k=0 face into the cube
  fillHoles(m, [s, s, s]);
  assert.equal(m[idx(3, 3, 3)], 1);
  assert.equal(m[idx(2, 2, 2)], 1);
  assert.equal(m[idx(4, 4, 3)], 0, "tunnel voxel is connected to the border");
  assert.equal(m[idx(0, 0, 0)], 0);
});

test("a hole reachable only diagonally stays a hole filled (6-connectivity of the background)", () => {
  const s = 5;
  const m = new Uint8Array(s * s * s).fill(1);
  const idx = (i: number, j: number, k: number): number => (i * s + j) * s + k;
  m[idx(0, 0, 0)] = 0; // border voxel, background
  m[idx(1, 1, 1)] = 0; // only diagonally adjacent to (0,0,0)
  fillHoles(m, [s, s, s]);
  assert.equal(m[idx(1, 1, 1)], 1);
  assert.equal(m[idx(0, 0, 0)], 0);
});

test("bbox is inclusive-min, exclusive-max; any channel counts; crop and -1 outside", () => {
  const shape = [4, 5, 6] as const;
  const n = 4 * 5 * 6;
  const data = new Float32Array(2 * n);
  const at = (i: number, j: number, k: number): number => (i * 5 + j) * 6 + k;
  data[at(1, 2, 3)] = 5; // channel 0
  data[n + at(2, 3, 1)] = -1; // channel 1
  const nz = nonzeroMask(data, 2, shape);
  const b = bboxOf(nz, shape);
  assert.deepEqual(b, [
    [1, 3],
    [2, 4],
    [1, 4],
  ]);
  const cropped = cropArray(data, 2, shape, b);
  assert.equal(cropped.length, 2 * 2 * 2 * 3);
  assert.equal(cropped[(0 * 2 + 0) * 3 + 2], 5);
  const mask = new Float32Array(n);
  mask[at(1, 2, 3)] = 0;
  mask[at(1, 3, 1)] = 1;
  const cm = cropArray(mask, 1, shape, b);
  markOutside(cm, 1, cropArray(nz, 1, shape, b));
  assert.equal(cm[(0 * 2 + 0) * 3 + 2], 0, "inside the non-zero region stays 0");
  assert.equal(cm[(0 * 2 + 1) * 3 + 0], 1, "mask value kept even outside");
  assert.equal(cm[(1 * 2 + 1) * 3 + 0], 0, "channel-1 voxel is inside");
  assert.equal(cm[0 * 3 + 0], -1, "zero outside the non-zero region becomes -1");
  assert.equal(bboxOf(new Uint8Array(8), [2, 2, 2]), null);
});
