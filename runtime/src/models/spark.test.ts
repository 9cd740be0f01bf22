/**
 * SparK wrapper (spark.ts) on a tiny ResEnc (16³, 4 stages with cumulative strides 1/2/4/8, a stride-1 projection
 * skip, a pooling-only skip) and 4³ mask blocks, so the stride-8 bottleneck sees no mask as ResEnc-L's 5³ stage
 * does upstream. Default backend (cpu + native kernels when built).
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../data/rng.js";
import { blockMask } from "../methods/mae.js";
import { fusedSparseNormAvailable } from "./backend/native.js";
import { selectBackend } from "./backend/select.js";
import { exportedNetwork } from "./checkpoint-export.js";
import { torchShape } from "./params.js";
import { countParams, createNetwork } from "./registry.js";
import { RESENC_XS } from "./resenc-unet.js";
import { isSparkNetwork, SparkResEnc, stageMask, type SparkNetwork } from "./spark.js";

const P = 16;
const BS = 4;
const OPTS = {
  patchSize: [P, P, P] as const,
  seed: 5,
  features: [4, 8, 8, 16],
  blocks: [1, 2, 1, 1],
  strides: [1, 2, 2, 2],
  stemChannels: 2,
};

before(async () => {
  await selectBackend("auto");
});

function masks(seed: number, n = 2): { data: Float32Array; masked: number[][] } {
  const rng = new Rng(seed);
  const data = new Float32Array(n * P ** 3);
  const masked: number[][] = [];
  for (let b = 0; b < n; b++) {
    const m = blockMask(rng, [P, P, P], BS, 0.75);
    data.set(m.mask, b * P ** 3);
    masked.push(m.masked);
  }
  return { data, masked };
}

function net(): SparkNetwork {
  const n = createNetwork("spark-resenc-xs", OPTS);
  assert.ok(isSparkNetwork(n));
  return n;
}

test("stageMask: nearest repetition of the block grid per stage; all ones (null) below the grid", () => {
  const { data, masked } = masks(1);
  tf.tidy(() => {
    const m = tf.tensor5d(data, [2, P, P, P, 1]);
    assert.equal(stageMask(m, BS, 1), m);
    assert.equal(stageMask(m, BS, 8), null);
    for (const f of [2, 4]) {
      const r = stageMask(m, BS, f)!;
      const n = P / f;
      assert.deepEqual(r.shape, [2, n, n, n, 1]);
      const v = r.dataSync();
      const g = P / BS;
      for (let b = 0; b < 2; b++)
        for (let i = 0; i < n; i++)
          for (let j = 0; j < n; j++)
            for (let k = 0; k < n; k++) {
              // voxel (i,j,k) at stride f lies in block floor(i·f/BS) of the grid
              const blk = (Math.floor((i * f) / BS) * g + Math.floor((j * f) / BS)) * g + Math.floor((k * f) / BS);
              const want = masked[b]!.includes(blk) ? 0 : 1;
              assert.equal(v[((b * n + i) * n + j) * n + k], want, `sample ${b} stride ${f} voxel ${i},${j},${k}`);
            }
      // visible fraction is exactly the block grid's: 16 of 64 blocks
      assert.equal(
        Array.from(v).reduce((a, x) => a + x, 0),
        2 * 16 * (n / g) ** 3,
      );
    }
  });
});

test("sparse encoder: every op's output but the convs' is 0 at masked voxels; every encoder conv and norm is traced", () => {
  const n = net();
  const { data } = masks(2);
  const seen = new Set<string>();
  let unmaskedOps = 0;
  let convOutsideNonzero = 0;
  tf.tidy(() => {
    const x = tf.add<tf.Tensor5D>(tf.randomNormal([2, P, P, P, 1], 0, 1, "float32", 3), 2); // no zeros in the input
    const mask = tf.tensor5d(data, [2, P, P, P, 1]);
    n.forwardSparse(x, { mask, blockSize: BS }, { training: true }, (name, out, m) => {
      seen.add(name);
      if (m === null) {
        unmaskedOps++;
        assert.equal(out.shape[1], P / 8, `${name}: unmasked op above the bottleneck`);
        return;
      }
      const outside = tf.sum(tf.abs(tf.mul(out, tf.sub(1, m)))).dataSync()[0]!;
      const inside = tf.sum(tf.abs(tf.mul(out, m))).dataSync()[0]!;
      // conv outputs are not zeroed (each feeds a sparse norm, which ignores masked voxels); everything else is
      if (name.endsWith(".conv")) convOutsideNonzero += outside > 0 ? 1 : 0;
      else assert.equal(outside, 0, `${name}: |output| at masked voxels = ${outside}`);
      assert.ok(inside > 0, `${name}: output is 0 at visible voxels too`);
    });
  });
  const encoderModules = new Set(
    n.declarations
      .filter((d) => d.name.startsWith("encoder.") && d.name.endsWith(".weight"))
      .map((d) => d.name.slice(0, -".weight".length)),
  );
  for (const mod of encoderModules) assert.ok(seen.has(mod), `${mod} was not run as a sparse op`);
  // pooling of the strided projection skips (stages 1-3) and the residual sums are traced too
  for (const s of [1, 2, 3]) assert.ok(seen.has(`encoder.stages.${s}.blocks.0.skip.0`));
  assert.ok(seen.has("encoder.stages.1.blocks.1"));
  assert.ok(unmaskedOps > 0, "the stride-8 stage should see no mask");
  // the convs' outputs at masked voxels (bias, block borders) are left to the norm: the trace sees them unmasked
  assert.ok(convOutsideNonzero > 0, "conv outputs are passed unmasked");
  n.dispose();
});

test("cpu + native: the sparse encoder's norms run as fused sparse-norm kernels (LeakyReLU fused), no mask multiply after its convs", async (t) => {
  if (!fusedSparseNormAvailable() || tf.getBackend() !== "cpu") {
    t.skip("no native sparse-norm kernels (stock cpu / wasm: the composed form)");
    return;
  }
  const n = net();
  const { data } = masks(4);
  const x = tf.randomNormal<tf.Rank.R5>([2, P, P, P, 1], 0, 1, "float32", 6);
  const mask = tf.tensor5d(data, [2, P, P, P, 1]);
  const prof = await tf.profile(() => n.forwardSparse(x, { mask, blockSize: BS }, { training: true }));
  const count = (k: string): number => prof.kernels.filter((e) => e.name === k).length;
  const names = prof.kernels.map((e) => e.name);
  // the norms of the masked stages (strides 1, 2, 4): stem 1, stage 0 3 (projection skip), stage 1 2 + 2 + 1 skip,
  // stage 2 2 (pooling-only skip) = 11, plus the 4 densify norms; the stride-8 stage's norms are dense (no mask)
  assert.equal(count("Ssl3dSparseInstanceNorm"), 11 + 4, names.join(","));
  // the LeakyReLU after a sparse norm is fused into it (LeakyRelu calls are the residual sums' only)
  names.forEach((k, i) => {
    if (k === "Ssl3dSparseInstanceNorm") assert.notEqual(names[i + 1], "LeakyRelu", `kernel ${i + 1}`);
  });
  // Multiply: only the skip poolings' masks (stages 1, 2; stage 3 is unmasked) and the densify tokens (4 stages)
  assert.ok(count("Multiply") <= 2 + 4, `Multiply calls ${count("Multiply")}`);
  tf.dispose([prof.result, x, mask]);
  n.dispose();
});

test("with nothing masked the sparse encoder equals the dense (fused) encoder", () => {
  const n = new SparkResEnc("spark-resenc-xs", RESENC_XS, OPTS);
  tf.tidy(() => {
    const x = tf.randomNormal<tf.Rank.R5>([1, P, P, P, 1], 0, 1, "float32", 4);
    const dense = n.inner.encode(x, { training: false });
    const sparse: tf.Tensor5D[] = [];
    n.forwardSparse(x, { mask: tf.ones([1, P, P, P, 1]), blockSize: BS }, { training: false }, (name, out) => {
      // trace outputs live in the encoder's nested tidy scopes: keep a copy
      if (/^encoder\.stages\.\d+\.blocks\.\d+$/.test(name)) sparse.push(tf.keep(tf.clone(out)));
    });
    const lastPerStage = [0, 2, 3, 4].map((i) => sparse[i]!);
    dense.forEach((d, i) => {
      const diff = tf.max(tf.abs(tf.sub(d, lastPerStage[i]!))).dataSync()[0]!;
      assert.ok(diff < 1e-4, `stage ${i}: max |dense − sparse| = ${diff}`);
    });
  });
  n.dispose();
});

test("the input is not zeroed: masked input values reach visible outputs through the stem conv only", () => {
  const n = net();
  const { data } = masks(3, 1);
  tf.tidy(() => {
    const x = tf.randomNormal<tf.Rank.R5>([1, P, P, P, 1], 0, 1, "float32", 5);
    const mask = tf.tensor5d(data, [1, P, P, P, 1]);
    const changed = tf.add<tf.Tensor5D>(x, tf.mul(tf.sub(1, mask), 10));
    const stem = (inp: tf.Tensor5D): tf.Tensor => {
      let out: tf.Tensor | undefined;
      n.forwardSparse(inp, { mask, blockSize: BS }, { training: false }, (name, o) => {
        if (name === "encoder.stem.convs.0.conv") out = tf.keep(tf.clone(o));
      });
      return out!;
    };
    const [s1, s2] = [stem(x), stem(changed)];
    const d = tf.max(tf.abs(tf.sub(s1, s2))).dataSync()[0]!;
    tf.dispose([s1, s2]);
    assert.ok(d > 1e-3, `stem conv output did not change (${d}) although masked input voxels did`);
    const y1 = n.forwardSparse(x, { mask, blockSize: BS }, { training: false });
    const y2 = n.forwardSparse(changed, { mask, blockSize: BS }, { training: false });
    assert.ok(tf.max(tf.abs(tf.sub(y1, y2))).dataSync()[0]! > 1e-4);
  });
  n.dispose();
});

test("densify parameters: names and PyTorch shapes of SparK3D; token init within ±0.02; output shape", () => {
  const n = net();
  const extra = n.declarations.filter((d) => !d.name.startsWith("encoder.") && !d.name.startsWith("decoder."));
  const want: [string, number[]][] = [];
  const feats = [4, 8, 8, 16];
  feats.forEach((c, i) => want.push([`densify_norms.${i}.weight`, [c]], [`densify_norms.${i}.bias`, [c]]));
  feats.forEach((c, i) => {
    if (i > 0) want.push([`densify_projs.${i}.weight`, [c, c, 3, 3, 3]], [`densify_projs.${i}.bias`, [c]]);
  });
  feats.forEach((c, i) => want.push([`mask_tokens.${i}`, [1, c, 1, 1, 1]]));
  assert.deepEqual(
    extra.map((d) => [d.name, torchShape(d)]),
    want,
  );
  for (let i = 0; i < feats.length; i++) {
    const v = n.weights.get(`mask_tokens.${i}`)!.dataSync();
    assert.ok(v.every((t) => Math.abs(t) <= 0.02) && v.some((t) => t !== 0), `mask_tokens.${i}`);
  }
  tf.tidy(() => {
    const y = n.forwardSparse(
      tf.ones([2, P, P, P, 1]),
      { mask: tf.tensor5d(masks(4).data, [2, P, P, P, 1]), blockSize: BS },
      { training: true },
    );
    assert.deepEqual(y.shape, [2, P, P, P, 1]);
    assert.deepEqual(n.apply(tf.ones([1, P, P, P, 1]), { training: false }).shape, [1, P, P, P, 1]);
  });
  assert.equal(n.parameterCount(), countParams("spark-resenc-xs", OPTS));
  n.dispose();
});

test("exported(): the inner ResidualEncoderUNet, same names and values as the plain preset with the same seed", () => {
  const n = net();
  const plain = createNetwork("resenc-xs", OPTS);
  const inner = exportedNetwork(n);
  assert.equal(inner.config.name, "resenc-xs");
  assert.deepEqual(
    inner.declarations.map((d) => d.name),
    plain.declarations.map((d) => d.name),
  );
  for (const d of plain.declarations)
    assert.deepEqual(inner.weights.get(d.name)!.dataSync(), plain.weights.get(d.name)!.dataSync(), d.name);
  // shared variables: the wrapper's weight for an inner name is the inner's variable
  assert.equal(
    n.weights.get("encoder.stem.convs.0.conv.weight"),
    inner.weights.get("encoder.stem.convs.0.conv.weight"),
  );
  assert.deepEqual(inner.config.adaptation, plain.config.adaptation);
  plain.dispose();
  n.dispose();
});

test("spark-resenc-l: ResEnc-L (102,348,965) plus the SparK-only parameters; encoderOnly is rejected", () => {
  const feats = [32, 64, 128, 256, 320, 320];
  const extra = feats.reduce((a, c, i) => a + 2 * c + c + (i > 0 ? 27 * c * c + c : 0), 0);
  assert.equal(countParams("resenc-l"), 102_348_965);
  assert.equal(countParams("spark-resenc-l"), 102_348_965 + extra);
  assert.throws(() => createNetwork("spark-resenc-xs", { ...OPTS, encoderOnly: true }), /encoderOnly/);
});

test("one SparK step (forward + backward): every parameter used gets a gradient, no tensor leak", () => {
  const n = net();
  const { data } = masks(6);
  const x = tf.randomNormal<tf.Rank.R5>([2, P, P, P, 1], 0, 1, "float32", 7);
  const mask = tf.tensor5d(data, [2, P, P, P, 1]);
  const vars = [...n.weights.values()];
  const step = (): void => {
    const { value, grads } = tf.variableGrads(
      () =>
        tf.tidy(() => tf.mean(tf.square(tf.sub(n.forwardSparse(x, { mask, blockSize: BS }, { training: true }), x)))),
      vars,
    );
    // all but the unused deep-supervision seg layers (as in the plain U-Net)
    const unused = [...n.weights].filter(([k]) => /^decoder\.seg_layers\.[01]\./.test(k)).map(([, v]) => v.name);
    assert.deepEqual(
      vars.map((v) => v.name).filter((v) => !(v in grads)),
      unused,
    );
    const tok = grads[n.weights.get("mask_tokens.0")!.name]!;
    assert.ok(tf.tidy(() => tf.max(tf.abs(tok)).dataSync()[0]!) > 0, "mask token 0 got no gradient");
    tf.dispose([value, ...Object.values(grads)]);
  };
  step();
  const before = tf.memory().numTensors;
  step();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, mask]);
  n.dispose();
});
