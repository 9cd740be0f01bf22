import assert from "node:assert/strict";
import { test } from "node:test";
import {
  bezierCurve,
  drawFlips,
  flipAxis,
  inPaint,
  intensityCurve,
  interp,
  localPixelShuffle,
  MODELS_GENESIS_DEFAULTS,
  modelsGenesisPair,
  nonlinearTransform,
  outPaint,
  type Box,
  type SampleShape,
} from "./models-genesis.js";
import { Rng } from "./rng.js";

const at = (shape: SampleShape, x: number, y: number, z: number, c = 0): number =>
  ((x * shape[1] + y) * shape[2] + z) * shape[3] + c;
const ramp = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i);
const inBox = (b: Box, x: number, y: number, z: number): boolean =>
  x >= b.start[0] &&
  x < b.start[0] + b.size[0] &&
  y >= b.start[1] &&
  y < b.start[1] + b.size[1] &&
  z >= b.start[2] &&
  z < b.start[2] + b.size[2];

test("flipAxis reverses exactly one spatial axis (Z included), channels stay together; twice = identity", () => {
  const shape: SampleShape = [2, 3, 4, 2];
  const d = ramp(48);
  for (const axis of [0, 1, 2] as const) {
    const f = flipAxis(d, shape, axis);
    for (let x = 0; x < 2; x++)
      for (let y = 0; y < 3; y++)
        for (let z = 0; z < 4; z++)
          for (let c = 0; c < 2; c++) {
            const src =
              axis === 0
                ? at(shape, 1 - x, y, z, c)
                : axis === 1
                  ? at(shape, x, 2 - y, z, c)
                  : at(shape, x, y, 3 - z, c);
            assert.equal(f[at(shape, x, y, z, c)], d[src]);
          }
    assert.deepEqual(flipAxis(f, shape, axis), d);
  }
  assert.throws(() => flipAxis(ramp(47), shape, 0), RangeError);
});

test("flip draws: spatial axes only (X, Y and Z all occur), at most 3, P(no flip) = 1 − rate", () => {
  const seen = new Set<number>();
  let none = 0;
  const N = 4000;
  for (let s = 0; s < N; s++) {
    const f = drawFlips(new Rng(s), 0.4);
    assert.ok(f.length <= 3);
    f.forEach((a) => seen.add(a));
    if (f.length === 0) none++;
  }
  assert.deepEqual([...seen].sort(), [0, 1, 2]);
  assert.ok(Math.abs(none / N - 0.6) < 0.03, `P(no flip) ${none / N}`);
  assert.equal(drawFlips(new Rng(1), 1).length, 3);
  assert.equal(drawFlips(new Rng(1), 0).length, 0);
});

test("local pixel shuffling: one block keeps the multiset of its values, the rest is untouched; voxels move with all channels", () => {
  const shape: SampleShape = [40, 30, 20, 2];
  // channel 1 = −channel 0: a voxel's channels must stay paired
  const d = Float32Array.from({ length: 40 * 30 * 20 * 2 }, (_, i) => (i % 2 === 0 ? i / 2 : -(i - 1) / 2));
  for (let seed = 0; seed < 20; seed++) {
    const { out, blocks } = localPixelShuffle(d, shape, new Rng(seed), 1);
    const b = blocks[0]!;
    const inside: number[] = [];
    const orig: number[] = [];
    for (let x = 0; x < 40; x++)
      for (let y = 0; y < 30; y++)
        for (let z = 0; z < 20; z++) {
          const o = at(shape, x, y, z);
          assert.equal(out[o + 1], -out[o]!);
          if (inBox(b, x, y, z)) {
            inside.push(out[o]!);
            orig.push(d[o]!);
          } else assert.equal(out[o], d[o]);
        }
    assert.deepEqual(
      inside.sort((p, q) => p - q),
      orig.sort((p, q) => p - q),
    );
  }
  // a 3-voxel block is shuffled in some seed (not the identity every time)
  let moved = false;
  for (let seed = 0; seed < 50 && !moved; seed++)
    moved = localPixelShuffle(d, shape, new Rng(seed), 1).out.some((v, i) => v !== d[i]);
  assert.ok(moved);
});

test("local pixel shuffling: 10,000 blocks with sides in [1, dim//10] inside the patch (160 → ≤ 16); values come from the original", () => {
  const shape: SampleShape = [160, 30, 9, 1];
  const d = ramp(160 * 30 * 9);
  const { out, blocks } = localPixelShuffle(d, shape, new Rng(7), MODELS_GENESIS_DEFAULTS.shuffleBlocks);
  assert.equal(blocks.length, 10_000);
  const maxSide = [0, 0, 0];
  for (const b of blocks) {
    [160, 30, 9].forEach((dim, a) => {
      assert.ok(b.size[a]! >= 1 && b.size[a]! <= Math.max(1, Math.floor(dim / 10)), `side ${b.size[a]} of ${dim}`);
      assert.ok(b.start[a]! >= 0 && b.start[a]! + b.size[a]! <= dim);
      maxSide[a] = Math.max(maxSide[a]!, b.size[a]!);
    });
  }
  assert.deepEqual(maxSide, [16, 3, 1]);
  // every output value is one of the original values (read from the original, never from a shuffled copy)
  assert.ok(out.every((v) => Number.isInteger(v) && v >= 0 && v < d.length));
  assert.ok(out.some((v, i) => v !== d[i]));
});

test("Bézier curve: upstream parameter order (t = 0 → last point, t = 1 → first), midpoint = (P0 + 3P1 + 3P2 + P3)/8", () => {
  const pts: [number, number][] = [
    [0, 0],
    [0.2, 0.9],
    [0.7, 0.1],
    [1, 1],
  ];
  const { xs, ys } = bezierCurve(pts, 5);
  assert.deepEqual([xs[0], ys[0]], [1, 1]);
  assert.deepEqual([xs[4], ys[4]], [0, 0]);
  assert.ok(Math.abs(xs[2]! - (0 + 3 * 0.2 + 3 * 0.7 + 1) / 8) < 1e-12);
  assert.ok(Math.abs(ys[2]! - (0 + 3 * 0.9 + 3 * 0.1 + 1) / 8) < 1e-12);
});

test("intensity curve: from (0,0) to (1,1), monotone increasing, or (only x sorted) decreasing from 1 to 0; both occur", () => {
  const kinds = new Set<boolean>();
  for (let s = 0; s < 40; s++) {
    const c = intensityCurve(new Rng(s), 1000);
    kinds.add(c.decreasing);
    assert.equal(c.xs[0], 0);
    assert.equal(c.xs[999], 1);
    for (let i = 1; i < 1000; i++) assert.ok(c.xs[i]! >= c.xs[i - 1]!);
    if (c.decreasing) {
      assert.deepEqual([c.ys[0], c.ys[999]], [1, 0]);
      for (let i = 1; i < 1000; i++) assert.ok(c.ys[i]! <= c.ys[i - 1]! + 1e-12, `not decreasing at ${i}`);
    } else {
      assert.deepEqual([c.ys[0], c.ys[999]], [0, 1]);
      for (let i = 1; i < 1000; i++) assert.ok(c.ys[i]! >= c.ys[i - 1]!);
    }
  }
  assert.deepEqual([...kinds].sort(), [false, true]);
});

test("interp = np.interp: linear inside, clamped to the end values outside (z-scored data saturate)", () => {
  const xs = Float64Array.of(0, 0.5, 1);
  const ys = Float64Array.of(1, 0.8, 0);
  assert.equal(interp(0.25, xs, ys), 0.9);
  assert.equal(interp(0.75, xs, ys), 0.4);
  assert.equal(interp(-3, xs, ys), 1);
  assert.equal(interp(7, xs, ys), 0);
  assert.equal(interp(0.5, xs, ys), 0.8);
  assert.deepEqual(Array.from(nonlinearTransform(Float32Array.of(-1, 0.25, 2), { xs, ys })), [1, Math.fround(0.9), 0]);
  // the bucketed bulk version equals interp value by value on a real curve (incl. the ends and values between samples)
  const c = intensityCurve(new Rng(4), 100_000);
  const rng = new Rng(5);
  const v = Float32Array.from({ length: 20_000 }, (_, i) => (i < 4 ? [0, 1, -0.5, 1.5][i]! : rng.uniform(-0.2, 1.2)));
  const bulk = nonlinearTransform(v, c);
  v.forEach((x, i) => {
    assert.equal(bulk[i], Math.fround(interp(x, c.xs, c.ys)), `value ${x}`);
  });
});

test("in-painting: ≤ 5 boxes, sides in [dim//6, dim//3] (160 → 26..53), start in [3, dim−side−3], U(0,1) noise shared by channels, rest untouched", () => {
  const shape: SampleShape = [160, 48, 24, 2];
  const d = Float32Array.from({ length: 160 * 48 * 24 * 2 }, () => 5);
  let total = 0;
  for (let seed = 0; seed < 12; seed++) {
    const { out, boxes } = inPaint(d, shape, new Rng(seed));
    assert.ok(boxes.length <= 5);
    total += boxes.length;
    for (const b of boxes) {
      [160, 48, 24].forEach((dim, a) => {
        assert.ok(
          b.size[a]! >= Math.floor(dim / 6) && b.size[a]! <= Math.floor(dim / 3),
          `side ${b.size[a]} for ${dim}`,
        );
        assert.ok(b.start[a]! >= 3 && b.start[a]! <= dim - b.size[a]! - 3);
      });
    }
    for (let x = 0; x < 160; x += 3)
      for (let y = 0; y < 48; y++)
        for (let z = 0; z < 24; z++) {
          const o = at(shape, x, y, z);
          if (boxes.some((b) => inBox(b, x, y, z))) {
            assert.ok(out[o]! >= 0 && out[o]! < 1);
            assert.equal(out[o + 1], out[o]);
          } else assert.equal(out[o], 5);
        }
  }
  assert.ok(total > 12, "in-painting almost always paints several boxes (p 0.95 each)");
});

test("out-painting: noise outside 1..5 restored boxes with sides dim − [3·dim//7, 4·dim//7] (160 → 69..92)", () => {
  const shape: SampleShape = [160, 40, 30, 1];
  const d = Float32Array.from({ length: 160 * 40 * 30 }, () => 5);
  for (let seed = 0; seed < 12; seed++) {
    const { out, boxes } = outPaint(d, shape, new Rng(seed));
    assert.ok(boxes.length >= 1 && boxes.length <= 5);
    for (const b of boxes) {
      [160, 40, 30].forEach((dim, a) => {
        assert.ok(
          b.size[a]! >= dim - Math.floor((4 * dim) / 7) && b.size[a]! <= dim - Math.floor((3 * dim) / 7),
          `side ${b.size[a]} for ${dim}`,
        );
        assert.ok(b.start[a]! >= 3 && b.start[a]! <= dim - b.size[a]! - 3);
      });
    }
    for (let x = 0; x < 160; x += 2)
      for (let y = 0; y < 40; y++)
        for (let z = 0; z < 30; z++) {
          const v = out[at(shape, x, y, z)]!;
          if (boxes.some((b) => inBox(b, x, y, z))) assert.equal(v, 5);
          else assert.ok(v >= 0 && v < 1);
        }
  }
  // 160: sides 69..92
  const b = outPaint(new Float32Array(160 * 8 * 8), [160, 8, 8, 1], new Rng(3)).boxes[0]!;
  assert.ok(b.size[0] >= 69 && b.size[0] <= 92);
});

test("pair: target = the flipped sample, anon flipped alike, input corrupted; no corruption with all rates 0; deterministic per seed", () => {
  const shape: SampleShape = [24, 20, 20, 1];
  const n = 24 * 20 * 20;
  const d = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 2);
  const anon = Float32Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 1 : i % 5 === 0 ? -1 : 0));
  const snapshot = d.slice();
  let flipped = 0;
  for (let seed = 0; seed < 30; seed++) {
    const p = modelsGenesisPair(d, shape, new Rng(seed), { ...MODELS_GENESIS_DEFAULTS, shuffleBlocks: 200 }, anon);
    let t: Float32Array = d;
    let a: Float32Array = anon;
    for (const ax of p.applied.flips) {
      t = flipAxis(t, shape, ax);
      a = flipAxis(a, shape, ax);
    }
    if (p.applied.flips.length > 0) flipped++;
    assert.deepEqual(p.target, t);
    assert.deepEqual(p.anon, a);
    // (in-painting may draw no box: its first draw fails with p 0.05)
    if (p.applied.boxes.length > 0 || p.applied.curve !== null || p.applied.shuffled)
      assert.notDeepEqual(p.input, p.target);
    const again = modelsGenesisPair(d, shape, new Rng(seed), { ...MODELS_GENESIS_DEFAULTS, shuffleBlocks: 200 }, anon);
    assert.deepEqual(again.input, p.input);
  }
  assert.ok(flipped > 5 && flipped < 25);
  assert.deepEqual(d, snapshot, "the sample is not modified in place");
  const none = modelsGenesisPair(d, shape, new Rng(1), {
    ...MODELS_GENESIS_DEFAULTS,
    flipRate: 0,
    localRate: 0,
    nonlinearRate: 0,
    paintRate: 0,
  });
  assert.deepEqual([none.input, none.target], [d, d]);
  assert.notEqual(none.input, none.target);
  // only the intensity curve: input = curve(target) voxel by voxel
  const onlyCurve = modelsGenesisPair(d, shape, new Rng(2), {
    ...MODELS_GENESIS_DEFAULTS,
    flipRate: 0,
    localRate: 0,
    nonlinearRate: 1,
    paintRate: 0,
    bezierPoints: 2000,
  });
  assert.deepEqual(onlyCurve.input, nonlinearTransform(d, onlyCurve.applied.curve!));
});

test("painting on a patch too small for the 3-voxel margin: boxes start in [0, dim − side] and stay inside", () => {
  const shape: SampleShape = [6, 6, 6, 1];
  const d = new Float32Array(216).fill(5);
  for (let seed = 0; seed < 30; seed++) {
    for (const paint of [inPaint, outPaint]) {
      for (const b of paint(d, shape, new Rng(seed)).boxes) {
        for (let a = 0; a < 3; a++)
          assert.ok(b.size[a]! >= 1 && b.start[a]! >= 0 && b.start[a]! + b.size[a]! <= 6, JSON.stringify(b));
      }
    }
  }
});
