import assert from "node:assert/strict";
import { test } from "node:test";
import { formatPreprocessingSummary } from "./plan-and-preprocess.js";

test("the preprocessing summary as a sentence for a terminal", () => {
  const s = {
    images: 5,
    valid: 4,
    failed: 1,
    configurations: ["onemmiso", "median"],
    plansFile: "/p/nnsslPlans.json",
    preprocessedDir: "/p/Dataset001_X",
  };
  assert.equal(
    formatPreprocessingSummary(s),
    "Preprocessed 4 of 5 image(s) for onemmiso, median, 1 failed (see the log) into /p/Dataset001_X; plans: /p/nnsslPlans.json",
  );
  assert.equal(
    formatPreprocessingSummary({ ...s, failed: 0, valid: 5, configurations: ["onemmiso"] }),
    "Preprocessed 5 of 5 image(s) for onemmiso into /p/Dataset001_X; plans: /p/nnsslPlans.json",
  );
  assert.equal(
    formatPreprocessingSummary({ ...s, configurations: [] }),
    "Planned: /p/nnsslPlans.json (preprocessing skipped)",
  );
});
