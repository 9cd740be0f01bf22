import assert from "node:assert/strict";
import { test } from "node:test";
import { computeNewShape, resampleToShape, resizeAxis, roundHalfEven, separateZAxis } from "./resample.js";

test("roundHalfEven and computeNewShape follow Python's round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, 2, 3]);
  assert.deepEqual(computeNewShape([115, 155, 123], [0.5, 0.5, 0.5], [1, 1, 1]), [58, 78, 62]);
});

test("separate-z rule: anisotropy > 3, single low-res axis, ties disable it", () => {
  assert.equal(separateZAxis([4, 1, 1], [1, 1, 1]), 0);
  assert.equal(separateZAxis([1, 1, 1], [1, 5, 1]), 1);
  assert.equal(separateZAxis([3, 1, 1], [1, 1, 1]), null);
  assert.equal(separateZAxis([4, 4, 1], [1, 1, 1]), null);
});

test("cubic resize keeps constants and linear ramps away from the clip range, and clips to the input range", () => {
  const n = 10;
  const ramp = new Float32Array(n).map((_, i) => i);
  const up = resizeAxis(ramp, 1, n, 1, 20, 3);
  // a spline reproduces a ramp exactly; the edge padding's kink decays by |pole| = 0.268 per input voxel
  for (let k = 6; k < 14; k++) assert.ok(Math.abs(up[k]! - ((k + 0.5) / 2 - 0.5)) < 6e-3, `k=${k}: ${up[k]}`);
  const c = resampleToShape(new Float32Array(27).fill(3), 1, [3, 3, 3], [5, 4, 2], [1, 1, 1], [1, 1, 1], {
    isSeg: false,
    order: 3,
  });
  for (const v of c) assert.ok(Math.abs(v - 3) < 1e-6);
  const spike = new Float32Array(64);
  spike[21] = 1;
  const s = resampleToShape(spike, 1, [4, 4, 4], [9, 9, 9], [1, 1, 1], [1, 1, 1], { isSeg: false, order: 3 });
  assert.ok(Math.min(...s) >= 0 && Math.max(...s) <= 1, "clipped to [0, 1]");
});

test("segmentation resampling keeps the label set and never invents intermediate labels", () => {
  const lab = new Float32Array(6 * 6 * 6);
  for (let i = 0; i < lab.length; i++) lab[i] = i % 6 < 2 ? -1 : i % 6 < 4 ? 0 : 1;
  const r = resampleToShape(lab, 1, [6, 6, 6], [11, 7, 13], [1, 1, 1], [1, 1, 1], { isSeg: true, order: 1 });
  assert.deepEqual([...new Set(r)].sort(), [-1, 0, 1]);
  const sep = resampleToShape(lab, 1, [6, 6, 6], [11, 7, 13], [4, 1, 1], [1, 1, 1], { isSeg: true, order: 1 });
  assert.deepEqual([...new Set(sep)].sort(), [-1, 0, 1]);
});

test("unchanged shape returns the input untouched", () => {
  const a = new Float32Array(8).fill(2);
  assert.equal(resampleToShape(a, 1, [2, 2, 2], [2, 2, 2], [1, 1, 1], [2, 2, 2], { isSeg: false, order: 3 }), a);
});
