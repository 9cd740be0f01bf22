import assert from "node:assert/strict";
import { test } from "node:test";
import { formatInspection, inspectVolume, intensityStats } from "./inspect.js";

test("intensity statistics skip non-finite voxels", () => {
  assert.deepEqual(intensityStats(Float32Array.from([1, 2, Number.NaN, 6, Infinity])), { min: 1, max: 6, mean: 3 });
  assert.ok(Number.isNaN(intensityStats(Float32Array.from([Number.NaN])).mean));
});

test("inspection of a volume: 4x4 affine rows, orientation, channels appended to the shape", () => {
  const i = inspectVolume({
    data: Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]),
    shape: [2, 2, 1],
    channels: 2,
    spacing: [1, 1, 2],
    datatype: "int16",
    affine: [-1, 0, 0, 10, 0, -1, 0, 20, 0, 0, 2, 30, 0, 0, 0, 1],
  });
  assert.deepEqual(i, {
    shape: [2, 2, 1, 2],
    spacing: [1, 1, 2],
    datatype: "int16",
    affine: [
      [-1, 0, 0, 10],
      [0, -1, 0, 20],
      [0, 0, 2, 30],
      [0, 0, 0, 1],
    ],
    orientation: "LPS",
    min: 0,
    max: 7,
    mean: 3.5,
  });
  const text = formatInspection("x.nii", i);
  assert.match(text, /shape: +2 x 2 x 1 x 2/);
  assert.match(text, /orientation: LPS/);
});
