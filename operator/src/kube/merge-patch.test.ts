import assert from "node:assert/strict";
import { test } from "node:test";
import { createMergePatch } from "./merge-patch.js";

function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    typeof target === "object" && target !== null && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) Reflect.deleteProperty(out, k);
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

const cases: [string, unknown, unknown][] = [
  ["unchanged", { a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 2] } }],
  ["removed keys", { a: 1, b: { c: 1, d: 2 }, e: "x" }, { b: { c: 1 } }],
  ["nested change", { p: { step: 1, loss: "0.5" } }, { p: { step: 2, loss: "0.5" } }],
  ["array replaced", { c: [{ type: "A" }] }, { c: [{ type: "A" }, { type: "B" }] }],
  ["undefined means absent", { a: 1, b: 2 }, { a: 1, b: undefined }],
];
for (const [name, before, after] of cases) {
  test(`merge patch round trip: ${name}`, () => {
    const patched = applyMergePatch(before, createMergePatch(before, after));
    assert.deepEqual(patched, JSON.parse(JSON.stringify(after)));
  });
}

test("an unchanged object gives an empty patch", () => {
  assert.deepEqual(createMergePatch({ a: { b: 1 } }, { a: { b: 1 } }), {});
});
