import assert from "node:assert/strict";
import { test } from "node:test";
import { DataError } from "../errors.js";
import { planExperiment } from "../planning/plan-experiment.js";
import { preprocessCase } from "./preprocess-case.js";

const plan = planExperiment("Dataset001_T", [[2, 1, 1]]); // transpose [0, 1, 2], coarse first axis

function blob(shape: [number, number, number]): Float32Array {
  const [a, b, c] = shape;
  const d = new Float32Array(a * b * c);
  for (let i = 1; i < a - 1; i++)
    for (let j = 2; j < b - 1; j++) for (let k = 1; k < c - 2; k++) d[(i * b + j) * c + k] = 10 + i + 2 * j + 3 * k;
  return d;
}

test("noresample: crop + z-score only; properties record the crop", () => {
  const shape: [number, number, number] = [6, 8, 7];
  const r = preprocessCase(
    { data: blob(shape), channels: 1, shape, spacing: [2, 1, 1] },
    {},
    plan,
    plan.configurations.noresample!,
  );
  assert.deepEqual(r.shape, [4, 5, 4]);
  assert.deepEqual(r.properties.bbox_used_for_cropping, [
    [1, 5],
    [2, 7],
    [1, 5],
  ]);
  let s = 0;
  for (const v of r.data) s += v;
  assert.ok(Math.abs(s / r.data.length) < 1e-5, "zero mean");
  assert.deepEqual(r.properties.target_spacing, [2, 1, 1]);
});

test("onemmiso resamples to the 1 mm grid; masks get -1 outside the non-zero region", () => {
  const shape: [number, number, number] = [6, 8, 7];
  const img = blob(shape);
  const mask = new Float32Array(img.length);
  mask[(2 * 8 + 3) * 7 + 2] = 1;
  const r = preprocessCase(
    { data: img, channels: 1, shape, spacing: [2, 1, 1] },
    { anon: { data: mask, channels: 1, shape } },
    plan,
    plan.configurations.onemmiso!,
  );
  assert.deepEqual(r.shape, [8, 5, 4]);
  assert.equal(r.anon!.length, 8 * 5 * 4);
  assert.deepEqual([...new Set(r.anon)].sort(), [0, 1]);
  const img2 = blob(shape);
  img2[(1 * 8 + 2) * 7 + 1] = 0; // a zero voxel at the crop border, connected to the outside: -1 in the mask
  const r2 = preprocessCase(
    { data: img2, channels: 1, shape, spacing: [1, 1, 1] },
    { anat: { data: new Float32Array(img.length), channels: 1, shape } },
    plan,
    plan.configurations.noresample!,
  );
  assert.equal(r2.anat![0], -1);
  assert.equal(r2.anat![1], 0);
});

test("bad inputs are DataErrors: NaN, all zero, mask grid mismatch", () => {
  const shape: [number, number, number] = [4, 4, 4];
  const nan = blob(shape);
  nan[5] = Number.NaN;
  assert.throws(
    () =>
      preprocessCase({ data: nan, channels: 1, shape, spacing: [1, 1, 1] }, {}, plan, plan.configurations.onemmiso!),
    (e) => e instanceof DataError && /NaN/.test(e.message),
  );
  assert.throws(
    () =>
      preprocessCase(
        { data: new Float32Array(64), channels: 1, shape, spacing: [1, 1, 1] },
        {},
        plan,
        plan.configurations.onemmiso!,
      ),
    /zero everywhere/,
  );
  assert.throws(
    () =>
      preprocessCase(
        { data: blob([6, 8, 7]), channels: 1, shape: [6, 8, 7], spacing: [1, 1, 1] },
        { anat: { data: new Float32Array(64), channels: 1, shape } },
        plan,
        plan.configurations.onemmiso!,
      ),
    /anat mask shape/,
  );
});
