import assert from "node:assert/strict";
import { test } from "node:test";
import { runPython } from "../../../test/helpers/python.js";
import {
  augmentIntensity,
  augmentIntensityWithDecision,
  contrastChannel,
  gammaChannel,
  gaussianBlur3d,
  mirrorSample,
  NO_INTENSITY,
  resize3d,
  rot90Sample,
  simulateLowRes,
  VOCO_RECIPE,
  VOLUME_FUSION_RECIPE,
  type Dims3,
  type IntensityRecipe,
} from "./intensity.js";
import { Rng } from "./rng.js";

function randomSample(seed: number, n: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.uniform(-2, 3));
}

const only = (patch: Partial<IntensityRecipe>): IntensityRecipe => ({ ...NO_INTENSITY, ...patch });
const meanStd = (v: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]!;
  const m = s / v.length;
  let q = 0;
  for (let i = 0; i < v.length; i++) q += (v[i]! - m) ** 2;
  return { m, sd: Math.sqrt(q / v.length) };
};

test("a recipe with every probability 0 is the identity and returns a new array", () => {
  const x = randomSample(1, 6 * 5 * 4 * 2);
  const y = augmentIntensity(new Rng(3), x, [6, 5, 4], 2, NO_INTENSITY);
  assert.notEqual(y, x);
  assert.deepEqual(y, x);
});

test("the same seed gives the same output; the input is untouched; another seed differs", () => {
  const dims: Dims3 = [8, 8, 8];
  const x = randomSample(2, 512 * 2);
  const copy = Float32Array.from(x);
  const always: IntensityRecipe = {
    ...VOCO_RECIPE,
    noise: { ...VOCO_RECIPE.noise, p: 1 },
    blur: { ...VOCO_RECIPE.blur, p: 1 },
    brightness: { ...VOCO_RECIPE.brightness, p: 1 },
    contrast: { ...VOCO_RECIPE.contrast, p: 1 },
    lowRes: { ...VOCO_RECIPE.lowRes, p: 1 },
    gamma: { ...VOCO_RECIPE.gamma, p: 1 },
    rot90: { ...VOCO_RECIPE.rot90, p: 1 },
  };
  const a = augmentIntensity(new Rng(9), x, dims, 2, always);
  const b = augmentIntensity(new Rng(9), x, dims, 2, always);
  const c = augmentIntensity(new Rng(10), x, dims, 2, always);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(x, copy);
  assert.ok(a.every(Number.isFinite));
});

test("brightness multiplies each channel by one factor within the range", () => {
  const x = randomSample(3, 4 * 4 * 4 * 2);
  const rec = only({ brightness: { p: 1, multiplier: [0.75, 1.25] } });
  for (let seed = 0; seed < 20; seed++) {
    const { data: y, decision } = augmentIntensityWithDecision(new Rng(seed), x, [4, 4, 4], 2, rec);
    for (let c = 0; c < 2; c++) {
      const f = decision.brightness![c]!;
      assert.ok(f >= 0.75 && f < 1.25, `factor ${f}`);
      for (let i = c; i < x.length; i += 2) assert.ok(Math.abs(y[i]! - x[i]! * f) < 1e-5);
    }
  }
});

test("gamma and inverted gamma with retain stats keep each channel's mean and std", () => {
  const x = Float32Array.from(randomSample(4, 6 * 6 * 6 * 2), (v) => v * v);
  for (const rec of [
    only({ gamma: { p: 1, gamma: [0.7, 1.5] } }),
    only({ invertedGamma: { p: 1, gamma: [0.7, 1.5] } }),
  ]) {
    for (let seed = 0; seed < 5; seed++) {
      const { data: y, decision } = augmentIntensityWithDecision(new Rng(seed), x, [6, 6, 6], 2, rec);
      const g = decision.gamma ?? decision.invertedGamma!;
      assert.ok(g.every((v) => v >= 0.7 && v < 1.5));
      for (let c = 0; c < 2; c++) {
        const xc = x.filter((_, i) => i % 2 === c);
        const yc = y.filter((_, i) => i % 2 === c);
        const [a, b] = [meanStd(xc), meanStd(yc)];
        assert.ok(
          Math.abs(a.m - b.m) < 1e-5 && Math.abs(a.sd - b.sd) < 1e-5,
          `${JSON.stringify(a)} vs ${JSON.stringify(b)}`,
        );
        assert.notDeepEqual(yc, xc);
      }
    }
  }
});

test("mirror and rot90 are exact permutations (np.flip / np.rot90 index maps)", () => {
  const dims: Dims3 = [4, 4, 3];
  const C = 2;
  const x = Float32Array.from({ length: 4 * 4 * 3 * C }, (_, i) => i);
  const at = (v: Float32Array, i: number, j: number, k: number, c: number) => v[((i * 4 + j) * 3 + k) * C + c]!;
  const m = mirrorSample(x, dims, C, [true, false, true]);
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < 4; j++)
      for (let k = 0; k < 3; k++)
        for (let c = 0; c < C; c++) assert.equal(at(m, i, j, k, c), at(x, 3 - i, j, 2 - k, c));
  const r1 = rot90Sample(x, dims, C, 1, [0, 1]);
  const r2 = rot90Sample(x, dims, C, 2, [0, 1]);
  const r3 = rot90Sample(x, dims, C, 3, [0, 1]);
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < 4; j++)
      for (let k = 0; k < 3; k++)
        for (let c = 0; c < C; c++) {
          assert.equal(at(r1, i, j, k, c), at(x, j, 3 - i, k, c));
          assert.equal(at(r2, i, j, k, c), at(x, 3 - i, 3 - j, k, c));
          assert.equal(at(r3, i, j, k, c), at(x, 3 - j, i, k, c));
        }
  assert.deepEqual(
    [...r1].sort((a, b) => a - b),
    [...x],
  );
  assert.deepEqual(rot90Sample(r1, dims, C, 3, [0, 1]), x);
  assert.throws(() => rot90Sample(new Float32Array(4 * 3 * 2), [4, 3, 2], 1, 1, [0, 1]), /equal sizes/);
});

test("blur keeps a constant image constant (and its mean); contrast keeps the range; noise has the drawn std", () => {
  const v = new Float64Array(7 * 6 * 5).fill(2.5);
  const b = gaussianBlur3d(v, [7, 6, 5], 0.9);
  assert.ok(b.every((a) => Math.abs(a - 2.5) < 1e-12));
  const r = Float64Array.from(randomSample(5, 200));
  for (const f of [0.8, 1.2]) {
    const y = contrastChannel(r, f);
    assert.ok(Math.min(...y) >= Math.min(...r) && Math.max(...y) <= Math.max(...r));
  }
  const x = new Float32Array(16 * 16 * 16);
  const { data, decision } = augmentIntensityWithDecision(
    new Rng(11),
    x,
    [16, 16, 16],
    1,
    only({ noise: { p: 1, std: [0.05, 0.1] } }),
  );
  const s = meanStd(data);
  assert.ok(Math.abs(s.sd - decision.noiseStd!) < 0.05 * decision.noiseStd!, `${s.sd} vs ${decision.noiseStd}`);
  assert.ok(Math.abs(s.m) < 0.01);
});

test("probabilities: each transform fires at its rate (VolumeFusion recipe, 2000 draws)", () => {
  const x = randomSample(6, 4 * 4 * 4);
  let noise = 0;
  let gamma = 0;
  let flip0 = 0;
  const N = 2000;
  for (let s = 0; s < N; s++) {
    const { decision } = augmentIntensityWithDecision(new Rng(s), x, [4, 4, 4], 1, VOLUME_FUSION_RECIPE);
    if (decision.noiseStd !== null) noise++;
    if (decision.gamma !== null) gamma++;
    if (decision.flips[0]) flip0++;
    assert.equal(decision.rot90, null);
  }
  // 4.5 binomial standard deviations
  const near = (k: number, p: number) => Math.abs(k - N * p) < 4.5 * Math.sqrt(N * p * (1 - p));
  assert.ok(near(noise, 0.1), `noise ${noise}`);
  assert.ok(near(gamma, 0.3), `gamma ${gamma}`);
  assert.ok(near(flip0, 0.5), `flip ${flip0}`);
});

test("blur, nearest/linear/cubic resize, low-res, gamma and contrast equal scipy / skimage / batchgenerators", () => {
  const dims: Dims3 = [9, 7, 6];
  const v = Float64Array.from(randomSample(7, 9 * 7 * 6));
  const out = JSON.parse(
    runPython(
      `
import json, sys, numpy as np
from scipy.ndimage import gaussian_filter
from skimage.transform import resize
from batchgenerators.augmentations.color_augmentations import augment_gamma, augment_contrast
v = np.array(json.loads(sys.argv[1]), dtype=np.float64).reshape(9, 7, 6)
low = resize(resize(v, (5, 4, 3), order=0, mode='edge', anti_aliasing=False), (9, 7, 6), order=3, mode='edge', anti_aliasing=False)
g = augment_gamma(v[None].copy(), (1.3, 1.3), invert_image=False, per_channel=True, retain_stats=True)[0]
gi = augment_gamma(v[None].copy(), (1.3, 1.3), invert_image=True, per_channel=True, retain_stats=True)[0]
c = augment_contrast(v[None].copy(), (1.2, 1.2), preserve_range=True, per_channel=True)[0]
print(json.dumps({"blur": gaussian_filter(v, 0.8).ravel().tolist(), "blur2": gaussian_filter(v, 2.2).ravel().tolist(),
  "near": resize(v, (5, 4, 3), order=0, mode='edge', anti_aliasing=False).ravel().tolist(),
  "lin": resize(v, (13, 4, 11), order=1, mode='edge', anti_aliasing=False).ravel().tolist(),
  "cubic": resize(v, (13, 4, 11), order=3, mode='edge', anti_aliasing=False).ravel().tolist(),
  "cubicDown": resize(v, (5, 9, 2), order=3, mode='edge', anti_aliasing=False).ravel().tolist(),
  "low": low.ravel().tolist(), "gamma": g.ravel().tolist(), "igamma": gi.ravel().tolist(), "contrast": c.ravel().tolist()}))
`,
      [JSON.stringify([...v])],
    ),
  ) as Record<string, number[]>;
  const close = (a: ArrayLike<number>, b: number[], name: string) => {
    assert.equal(a.length, b.length, name);
    for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-9, `${name}[${i}]: ${a[i]} vs ${b[i]}`);
  };
  close(gaussianBlur3d(v, dims, 0.8), out.blur!, "blur σ 0.8");
  close(gaussianBlur3d(v, dims, 2.2), out.blur2!, "blur σ 2.2 (radius 9 > size: repeated reflection)");
  close(resize3d(v, dims, [5, 4, 3], 0), out.near!, "nearest");
  close(resize3d(v, dims, [13, 4, 11], 1), out.lin!, "linear");
  close(resize3d(v, dims, [13, 4, 11], 3), out.cubic!, "cubic spline (up/down, clipped)");
  close(resize3d(v, dims, [5, 9, 2], 3), out.cubicDown!, "cubic spline (mixed)");
  // zoom 0.55: round(9·.55)=5, round(7·.55)=4 (3.85), round(6·.55)=3 (3.3)
  close(simulateLowRes(v, dims, 0.55), out.low!, "low-res");
  close(gammaChannel(v, 1.3, false), out.gamma!, "gamma");
  close(gammaChannel(v, 1.3, true), out.igamma!, "inverted gamma");
  close(contrastChannel(v, 1.2), out.contrast!, "contrast");
});

test("nearest resize breaks ties upwards like scipy (skimage resize of arange(8) → 4 and arange(20) → 13)", () => {
  const a = Float64Array.from({ length: 8 }, (_, i) => i);
  assert.deepEqual([...resize3d(a, [8, 1, 1], [4, 1, 1], 0)], [1, 3, 5, 7]);
  const b = Float64Array.from({ length: 20 }, (_, i) => i);
  assert.deepEqual([...resize3d(b, [1, 20, 1], [1, 13, 1], 0)], [0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16, 17, 19]);
});
