/**
 * Known answers for the trilinear ×2 upsampling: forward and gradient equal PyTorch's
 * `F.interpolate(scale_factor=2, mode="trilinear", align_corners=False)` (Debian torch in the reference venv) on an
 * odd, non-cubic shape with a size-1 axis; plus the 1-D formula by hand. Run time ~1-2 s (one Python start).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { runPython } from "../../../../test/helpers/python.js";
import { upsampleLinear2x, upsampleTrilinear2x } from "./upsample.js";

await tf.setBackend("cpu");

test("1-D: 0.75/0.25 blend with edge clamping", () => {
  const y = tf.tidy(() => upsampleLinear2x(tf.tensor1d([1, 2, 4]), 0).arraySync());
  assert.deepEqual(y, [1, 1.25, 1.75, 2.5, 3.5, 4]);
});

const TORCH = `
import json, sys, torch
import torch.nn.functional as F
a = json.load(open(sys.argv[1]))
x = torch.tensor(a["x"], dtype=torch.float64).reshape(a["shape"]).requires_grad_(True)
g = torch.tensor(a["g"], dtype=torch.float64)
y = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
(y * g.reshape(y.shape)).sum().backward()
print(json.dumps({"y": y.detach().flatten().tolist(), "yshape": list(y.shape), "dx": x.grad.flatten().tolist()}))
`;

test("forward and gradient equal torch F.interpolate(trilinear, align_corners=False)", () => {
  const shape: [number, number, number, number, number] = [2, 3, 1, 5, 2]; // NDHWC, a size-1 axis, odd sizes
  const x = tf.randomNormal<tf.Rank.R5>(shape, 0, 1, "float32", 11);
  const yShape: [number, number, number, number, number] = [2, 6, 2, 10, 2];
  const g = tf.randomNormal<tf.Rank.R5>(yShape, 0, 1, "float32", 12);
  const y = upsampleTrilinear2x(x);
  assert.deepEqual(y.shape, yShape);
  const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(upsampleTrilinear2x(xi as tf.Tensor5D), g)))(x);
  const toTorch = (t: tf.Tensor) => tf.tidy(() => Array.from(tf.transpose(t, [0, 4, 1, 2, 3]).dataSync()));
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-upsample-"));
  try {
    const file = join(dir, "in.json");
    writeFileSync(file, JSON.stringify({ x: toTorch(x), shape: [2, 2, 3, 1, 5], g: toTorch(g) }));
    const r = JSON.parse(runPython(TORCH, [file])) as { y: number[]; yshape: number[]; dx: number[] };
    assert.deepEqual(r.yshape, [2, 2, 6, 2, 10]);
    const close = (ours: number[], ref: number[], what: string) => {
      assert.equal(ours.length, ref.length);
      const d = Math.max(...ours.map((v, i) => Math.abs(v - ref[i]!)));
      assert.ok(d < 1e-5, `${what}: max abs diff ${d}`);
    };
    close(toTorch(y), r.y, "forward");
    close(toTorch(dx), r.dx, "gradient");
  } finally {
    rmSync(dir, { recursive: true, force: true });
    tf.dispose([x, g, y, dx]);
  }
});
