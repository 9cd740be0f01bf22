import assert from "node:assert/strict";
import { test } from "node:test";
import { median, planExperiment, transposeFor } from "./plan-experiment.js";
import { planSchema } from "../config/plans.js";

test("median as numpy percentile 50", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
});

test("transpose puts the coarsest axis first; first maximum wins", () => {
  assert.deepEqual(transposeFor([1, 1, 4]), { forward: [2, 0, 1], backward: [1, 2, 0] });
  assert.deepEqual(transposeFor([1, 1, 1]).forward, [0, 1, 2]);
  assert.deepEqual(transposeFor([1, 3, 3]).forward, [1, 0, 2]);
});

test("plan has the three configurations with upstream field names and values", () => {
  const p = planExperiment("Dataset001_X", [
    [1, 0.5, 3],
    [1, 0.5, 5],
    [1, 0.7, 4],
  ]);
  planSchema.parse(p);
  assert.deepEqual(p.transpose_forward, [2, 0, 1]);
  assert.deepEqual(p.original_median_spacing_after_transp, [4, 1, 0.5]);
  assert.deepEqual(Object.keys(p.configurations), ["onemmiso", "median", "noresample"]);
  assert.deepEqual(p.configurations.median!.spacing, [4, 1, 0.5]);
  assert.deepEqual(p.configurations.onemmiso!.spacing, [1, 1, 1]);
  assert.equal(p.configurations.noresample!.spacing, null);
  assert.equal(p.configurations.onemmiso!.data_identifier, "nnsslPlans_onemmiso");
  assert.deepEqual(p.configurations.onemmiso!.resampling_fn_data_kwargs, {
    is_seg: false,
    order: 3,
    order_z: 0,
    force_separate_z: null,
  });
  assert.deepEqual(p.configurations.onemmiso!.resampling_fn_mask_kwargs, {
    is_seg: true,
    order: 1,
    order_z: 0,
    force_separate_z: null,
  });
});
