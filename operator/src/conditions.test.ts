import assert from "node:assert/strict";
import { test } from "node:test";
import { setCondition, transitionsToTrue } from "./conditions.js";

test("lastTransitionTime moves only when the status flips", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const t1 = new Date("2026-01-01T00:01:00Z");
  const t2 = new Date("2026-01-01T00:02:00Z");
  let c = setCondition(undefined, { type: "Ready", status: "False", reason: "Waiting", message: "a" }, 1, t0);
  c = setCondition(c, { type: "Ready", status: "False", reason: "StillWaiting", message: "b" }, 2, t1);
  assert.equal(c[0]?.lastTransitionTime, "2026-01-01T00:00:00Z");
  assert.equal(c[0].reason, "StillWaiting");
  assert.equal(c[0].observedGeneration, 2);
  c = setCondition(c, { type: "Ready", status: "True", reason: "Done", message: "c" }, 2, t2);
  assert.equal(c[0]?.lastTransitionTime, "2026-01-01T00:02:00Z");
  assert.equal(c.length, 1);
});

test("transitionsToTrue reports new True conditions and reason changes only", () => {
  const t = new Date("2026-01-01T00:00:00Z");
  const before = setCondition(undefined, { type: "A", status: "True", reason: "X", message: "" }, 1, t);
  let after = setCondition(before, { type: "B", status: "True", reason: "Y", message: "m" }, 1, t);
  assert.deepEqual(
    transitionsToTrue(before, after).map((x) => x.type),
    ["B"],
  );
  after = setCondition(after, { type: "A", status: "True", reason: "Z", message: "" }, 1, t);
  assert.deepEqual(
    transitionsToTrue(before, after)
      .map((x) => x.type)
      .sort(),
    ["A", "B"],
  );
  assert.deepEqual(transitionsToTrue(after, after), []);
});
