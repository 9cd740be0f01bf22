// The collectives' float32 arithmetic: the native kernels (when the addon is built, as in CI) and the JavaScript
// loops give the same bits, so ranks with and without the addon agree exactly.
import assert from "node:assert/strict";
import { test } from "node:test";
import { nativeAddon } from "../models/backend/native/addon.js";
import { addInto, addIntoJs, scaleInto, scaleIntoJs } from "./float32.js";

const ramp = (n: number, f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

test("the native kernels are what these tests compare (the addon is built)", () => {
  assert.notEqual(nativeAddon(), null);
});

test("the native add and the JavaScript loop give the same float32 bits", () => {
  const n = 100_003;
  const x = ramp(n, (i) => Math.sin(i) * 10 ** ((i % 9) - 4)),
    y = ramp(n, (i) => Math.cos(i * 7) * 10 ** ((i % 7) - 3));
  const a = x.slice(),
    b = x.slice();
  addInto(a, y);
  addIntoJs(b, y);
  assert.deepEqual(bits(a), bits(b));
  const part = x.slice();
  addInto(part, y.subarray(0, 10)); // a shorter source adds into the front only
  assert.deepEqual(part.subarray(10), x.subarray(10));
  assert.deepEqual(part.subarray(0, 10), b.subarray(0, 10));
  addInto(part, new Float32Array(0)); // nothing to add
  assert.deepEqual(part.subarray(10), x.subarray(10));
});

test("scaling: native multiply and the loop agree bit for bit with a float32 multiply by fround(factor)", () => {
  const n = 70_001;
  const x = ramp(n, (i) => Math.sin(i * 3) * 10 ** ((i % 11) - 5));
  x[7] = Number.NaN;
  x[8] = Number.POSITIVE_INFINITY;
  x[9] = -0;
  for (const factor of [1 / 3, 0.75, 0.1, 1, 1e-30]) {
    const a = new Float32Array(n),
      b = new Float32Array(n);
    scaleInto(a, x, factor);
    scaleIntoJs(b, x, factor);
    assert.deepEqual(bits(a), bits(b), `factor ${factor}`);
    const f = Math.fround(factor);
    for (const i of [0, 1, 9, 12_345, n - 1]) assert.equal(a[i], Math.fround(x[i]! * f), `element ${i}`);
    assert.ok(Number.isNaN(a[7]!));
  }
  const into = new Float32Array(5).fill(9);
  scaleInto(into, Float32Array.of(2, 4), 0.5); // a shorter source writes the front only
  assert.deepEqual(Array.from(into), [1, 2, 9, 9, 9]);
  scaleInto(into, new Float32Array(0), 0.5);
  assert.deepEqual(Array.from(into), [1, 2, 9, 9, 9]);
});
