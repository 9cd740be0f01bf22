/**
 * Parity with upstream PyTorch (dynamic-network-architectures from PyPI, Debian torch): our export loads with
 * strict=True into ResidualEncoderUNet / Primus, the key sets are identical, and the same input gives the same
 * output (max abs diff < 1e-3 of the output scale). Small presets; full-size runs are in docs/parity.md.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { isMaskedNetwork, isTokenMaskNetwork } from "../../runtime/src/models/architecture.js";
import { exportedNetwork, exportNetwork, torchStateDict } from "../../runtime/src/models/checkpoint-export.js";
import { encodeSafetensors } from "../../runtime/src/models/safetensors.js";
import { loadNetwork, saveNetwork } from "../../runtime/src/models/network-io.js";
import { isSparkNetwork } from "../../runtime/src/models/spark.js";
import { Rng } from "../../runtime/src/data/rng.js";
import { blockMask } from "../../runtime/src/methods/mae.js";
import { createNetwork } from "../../runtime/src/models/registry.js";
import { selectBackend } from "../../runtime/src/models/backend/select.js";
import { maxAbs, maxAbsDiff } from "../helpers/tf-check.js";
import { runTorch, tmp } from "../helpers/torch-parity.js";

test("resenc-xs: export loads strictly into upstream ResidualEncoderUNet and matches its output (pth and safetensors)", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  const net = createNetwork("resenc-xs", {
    features: [4, 8, 16],
    blocks: [1, 2, 1],
    strides: [1, 2, 2],
    patchSize: [16, 16, 16],
    outChannels: 2,
    seed: 3,
  });
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 5);
  const y = net.apply(x, { training: false });
  const ours = y.dataSync() as Float32Array;
  const dir = tmp("ssl3d-parity-");
  const kw = {
    input_channels: 1,
    n_stages: 3,
    features_per_stage: [4, 8, 16],
    strides: [1, 2, 2],
    n_blocks_per_stage: [1, 2, 1],
    num_classes: 2,
    n_conv_per_stage_decoder: [1, 1],
  };
  for (const format of ["pth-compatible", "safetensors"] as const) {
    const out = join(dir, format === "safetensors" ? "w.safetensors" : "w.pth");
    await exportNetwork(net, out, { format });
    const r = await runTorch("resenc", kw, out, x, dir);
    assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
    assert.equal(r.params, net.parameterCount());
    assert.deepEqual(r.yShape, y.shape);
    const d = maxAbsDiff(ours, r.y);
    assert.ok(d < 1e-3 * maxAbs(r.y), `${format}: max abs diff ${d}, scale ${maxAbs(r.y)}`);
  }
  tf.dispose([x, y]);
  net.dispose();
});

test("spark-resenc-xs: its training weights hold the SparK-only tensors; the export is the inner U-Net, loads strictly into upstream ResidualEncoderUNet and matches it", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  const opts = {
    features: [4, 8, 16],
    blocks: [1, 2, 1],
    strides: [1, 2, 2],
    patchSize: [16, 16, 16] as const,
    outChannels: 2,
    seed: 3,
  };
  const net = createNetwork("spark-resenc-xs", opts);
  assert.ok(isSparkNetwork(net));
  // two SparK steps (plain SGD) so the exported weights are trained ones, not the seed's
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 5);
  const rng = new Rng(6);
  const mask = tf.tensor5d(
    Float32Array.from([0, 1].flatMap(() => Array.from(blockMask(rng, [16, 16, 16], 4, 0.75).mask))),
    [2, 16, 16, 16, 1],
  );
  for (let s = 0; s < 2; s++) {
    const vars = [...net.weights.values()];
    const { value, grads } = tf.variableGrads(
      () =>
        tf.tidy(() =>
          tf.mean(
            tf.square(
              tf.sub(net.forwardSparse(x, { mask, blockSize: 4 }, { training: true }), tf.tile(x, [1, 1, 1, 1, 2])),
            ),
          ),
        ),
      vars,
    );
    for (const v of vars)
      if (grads[v.name] !== undefined) v.assign(tf.tidy(() => tf.sub(v, tf.mul(grads[v.name]!, 0.1))));
    tf.dispose([value, ...Object.values(grads)]);
  }
  const dir = tmp("ssl3d-parity-");
  // the training checkpoint's weights (same writer as checkpoints: primary names + ssl3d.architecture) round-trip
  const ckpt = join(dir, "spark.safetensors");
  await saveNetwork(net, ckpt);
  const { net: loaded } = await loadNetwork(ckpt);
  assert.equal(loaded.config.name, "spark-resenc-xs");
  for (const [k, v] of net.weights) assert.deepEqual(loaded.weights.get(k)?.dataSync(), v.dataSync(), k);
  assert.ok(loaded.weights.has("mask_tokens.0") && loaded.weights.has("densify_projs.2.weight"));
  const inner = exportedNetwork(loaded);
  const y = inner.apply(x, { training: false });
  const kw = {
    input_channels: 1,
    n_stages: 3,
    features_per_stage: [4, 8, 16],
    strides: [1, 2, 2],
    n_blocks_per_stage: [1, 2, 1],
    num_classes: 2,
    n_conv_per_stage_decoder: [1, 1],
  };
  for (const format of ["pth-compatible", "safetensors"] as const) {
    const out = join(dir, format === "safetensors" ? "w.safetensors" : "w.pth");
    await exportNetwork(loaded, out, { format });
    const r = await runTorch("resenc", kw, out, x, dir);
    // strict load, identical key sets: no SparK-only tensors in network_weights
    assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
    assert.equal(r.params, inner.parameterCount());
    const d = maxAbsDiff(y.dataSync(), r.y);
    assert.ok(d < 1e-3 * maxAbs(r.y), `${format}: max abs diff ${d}, scale ${maxAbs(r.y)}`);
  }
  const plan = JSON.parse(await readFile(join(dir, "adaptation_plan.json"), "utf8")) as Record<string, unknown>;
  assert.equal(plan.key_to_encoder, "encoder.stages");
  assert.equal(plan.key_to_stem, "encoder.stem");
  assert.equal((plan.architecture_plans as { arch_class_name: string }).arch_class_name, "ResidualEncoderUNet");
  tf.dispose([x, y, mask]);
  loaded.dispose();
  net.dispose();
});

test("spark-resenc-xs: the sparse forward (masked encoder ops, sparse norms, densify, decoder) matches a PyTorch SparK on upstream ResidualEncoderUNet", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  // 16³, strides 1/2/2/2 (cumulative 1..8), 4³ blocks: the stride-8 stage is unmasked, the others masked
  const opts = {
    features: [4, 8, 8, 16],
    blocks: [1, 2, 1, 1],
    strides: [1, 2, 2, 2],
    patchSize: [16, 16, 16] as const,
    outChannels: 1,
    seed: 9,
  };
  const net = createNetwork("spark-resenc-xs", opts);
  assert.ok(isSparkNetwork(net));
  // non-trivial SparK-only weights (init: norms 1/0, tokens within ±0.02)
  for (const [k, v] of net.weights)
    if (/^(densify_norms|mask_tokens)\./.test(k))
      v.assign(tf.tidy(() => tf.add(v, tf.randomUniform(v.shape, -0.5, 0.5, "float32", k.length))));
  const rng = new Rng(12);
  const md = Float32Array.from([0, 1].flatMap(() => Array.from(blockMask(rng, [16, 16, 16], 4, 0.75).mask)));
  const mask = tf.tensor5d(md, [2, 16, 16, 16, 1]);
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 13);
  const y = net.forwardSparse(x, { mask, blockSize: 4 }, { training: false });
  const dir = tmp("ssl3d-parity-");
  const weights = join(dir, "spark.safetensors");
  await writeFile(weights, encodeSafetensors(torchStateDict(net, { aliases: true })));
  const maskPath = join(dir, "mask.safetensors");
  await writeFile(maskPath, encodeSafetensors(new Map([["m", { shape: [2, 1, 16, 16, 16], data: md }]])));
  const kw = {
    input_channels: 1,
    n_stages: 4,
    features_per_stage: [4, 8, 8, 16],
    strides: [1, 2, 2, 2],
    n_blocks_per_stage: [1, 2, 1, 1],
    num_classes: 1,
    n_conv_per_stage_decoder: [1, 1, 1],
    mask: maskPath,
    block: 4,
  };
  const r = await runTorch("spark", kw, weights, x, dir);
  assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
  assert.equal(r.params, net.parameterCount());
  const d = maxAbsDiff(y.dataSync(), r.y);
  assert.ok(d < 1e-3 * maxAbs(r.y), `max abs diff ${d}, scale ${maxAbs(r.y)}`);
  tf.dispose([x, y, mask]);
  net.dispose();
});

test("primus-xs: export loads strictly into upstream Primus (weights_only) and matches its output", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  // non-cubic grid (2x2x4 tokens) pins the (w h d) token order and the RoPE axes
  const net = createNetwork("primus-xs", { patchSize: [16, 16, 32], outChannels: 2, seed: 4 });
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 32, 1], 0, 1, "float32", 6);
  const y = net.apply(x, { training: false });
  const dir = tmp("ssl3d-parity-");
  const out = join(dir, "w.pth");
  await exportNetwork(net, out, { format: "pth-compatible" });
  const kw = {
    input_channels: 1,
    embed_dim: 48,
    patch_embed_size: [8, 8, 8],
    num_classes: 2,
    eva_depth: 2,
    eva_numheads: 2,
    input_shape: [16, 16, 32],
    init_values: 0.1,
    scale_attn_inner: true,
    drop_path_rate: 0.2,
  };
  const r = await runTorch("primus", kw, out, x, dir);
  assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
  assert.equal(r.params, net.parameterCount());
  assert.deepEqual(r.yShape, y.shape);
  const d = maxAbsDiff(y.dataSync(), r.y);
  assert.ok(d < 1e-3 * maxAbs(r.y), `max abs diff ${d}, scale ${maxAbs(r.y)}`);
  tf.dispose([x, y]);
  net.dispose();
});

for (const tokenOrder of ["whd", "hwd"] as const) {
  test(`eva-mae-xs (${tokenOrder}): keys equal nnssl EvaMAE's module tree; masked forward matches upstream blocks`, async () => {
    await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
    const net = createNetwork("eva-mae-xs", { patchSize: [16, 24, 8], outChannels: 1, seed: 8, tokenOrder });
    assert.ok(isMaskedNetwork(net));
    const x = tf.randomNormal<tf.Rank.R5>([2, 16, 24, 8, 1], 0, 1, "float32", 9);
    const r = net.forwardMasked(x, { keepRatio: 0.5, rngSeed: 4 }, { training: false });
    const dir = tmp("ssl3d-parity-");
    const out = join(dir, "w.safetensors");
    await exportNetwork(net, out, { format: "safetensors" });
    const kw = {
      input_channels: 1,
      embed_dim: 48,
      patch_embed_size: [8, 8, 8],
      output_channels: 1,
      encoder_eva_depth: 2,
      encoder_eva_numheads: 2,
      decoder_eva_depth: 2,
      decoder_eva_numheads: 2,
      input_shape: [16, 24, 8],
      init_values: 0.1,
      scale_attn_inner: true,
      drop_path_rate: 0.2,
      token_order: tokenOrder,
    };
    const t = await runTorch("evamae", kw, out, x, dir, r.keepIndices);
    assert.deepEqual([t.missing, t.unexpected, t.upstream_only, t.ours_only], [[], [], [], []]);
    assert.equal(t.params, net.parameterCount());
    const d = maxAbsDiff(r.reconstruction.dataSync(), t.y);
    assert.ok(d < 1e-3 * maxAbs(t.y), `max abs diff ${d}, scale ${maxAbs(t.y)}`);
    tf.dispose([x, r.reconstruction]);
    net.dispose();
  });
}

test("eva-simmim-xs: keys equal nnssl EvaSimMIM's module tree (strict load); mask-token forward matches upstream with the same token mask", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  const net = createNetwork("eva-simmim-xs", { patchSize: [16, 24, 8], outChannels: 1, seed: 12 });
  assert.ok(isTokenMaskNetwork(net));
  const [g0, g1, g2] = net.tokenGrid;
  const T = g0 * g1 * g2;
  // upstream flattens the sparse (W,H,D) mask row-major: hand it over in grid order, ours in tokenIndex order
  const grid = [
    [1, 0, 1, 1, 0, 1],
    [0, 1, 1, 0, 1, 1],
  ];
  const ours = new Float32Array(2 * T);
  grid.forEach((row, b) => {
    for (let a = 0; a < g0; a++)
      for (let c = 0; c < g1; c++)
        for (let d = 0; d < g2; d++) ours[b * T + net.tokenIndex(a, c, d)] = row[(a * g1 + c) * g2 + d]!;
  });
  // a mask token with a visible effect (the initial one is ~1e-6)
  net.weights.get("mask_token")!.assign(tf.randomNormal([1, 1, 48], 0, 1, "float32", 13));
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 24, 8, 1], 0, 1, "float32", 14);
  const m = tf.tensor2d(ours, [2, T]);
  const y = net.forwardTokenMask(x, m, { training: false });
  const dir = tmp("ssl3d-parity-");
  const out = join(dir, "w.pth");
  await exportNetwork(net, out, { format: "pth-compatible" });
  const kw = {
    input_channels: 1,
    embed_dim: 48,
    patch_embed_size: [8, 8, 8],
    output_channels: 1,
    encoder_eva_depth: 2,
    encoder_eva_numheads: 2,
    input_shape: [16, 24, 8],
    init_values: 0.1,
    scale_attn_inner: true,
    drop_path_rate: 0.2,
  };
  const t = await runTorch("evasimmim", kw, out, x, dir, undefined, grid);
  assert.deepEqual([t.missing, t.unexpected, t.upstream_only, t.ours_only], [[], [], [], []]);
  assert.equal(t.params, net.parameterCount());
  const d = maxAbsDiff(y.dataSync(), t.y);
  assert.ok(d < 1e-3 * maxAbs(t.y), `max abs diff ${d}, scale ${maxAbs(t.y)}`);
  tf.dispose([x, m, y]);
  net.dispose();
});

for (const tokenOrder of ["whd", "hwd"] as const) {
  test(`eva-mae-xs without decoder (Models Genesis on Primus, ${tokenOrder}): strict load into nnssl EvaMAE(decoder_eva_depth=0); output matches`, async () => {
    await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
    const net = createNetwork("eva-mae-xs", {
      patchSize: [16, 24, 8],
      outChannels: 1,
      seed: 15,
      decoderDepth: 0,
      tokenOrder,
    });
    const x = tf.randomNormal<tf.Rank.R5>([2, 16, 24, 8, 1], 0, 1, "float32", 16);
    const y = net.apply(x, { training: false });
    const dir = tmp("ssl3d-parity-");
    const out = join(dir, "w.safetensors");
    await exportNetwork(net, out, { format: "safetensors" });
    const kw = {
      input_channels: 1,
      embed_dim: 48,
      patch_embed_size: [8, 8, 8],
      output_channels: 1,
      encoder_eva_depth: 2,
      encoder_eva_numheads: 2,
      decoder_eva_depth: 0,
      decoder_eva_numheads: 0,
      input_shape: [16, 24, 8],
      init_values: 0.1,
      scale_attn_inner: true,
      drop_path_rate: 0.2,
      token_order: tokenOrder,
    };
    const t = await runTorch("evamae", kw, out, x, dir);
    assert.deepEqual([t.missing, t.unexpected, t.upstream_only, t.ours_only], [[], [], [], []]);
    assert.equal(t.params, net.parameterCount());
    const d = maxAbsDiff(y.dataSync(), t.y);
    assert.ok(d < 1e-3 * maxAbs(t.y), `max abs diff ${d}, scale ${maxAbs(t.y)}`);
    tf.dispose([x, y]);
    net.dispose();
  });
}

test("voco-resenc-xs: export loads strictly into nnssl's VoCoArchitecture tree (upstream ResidualEncoder + projector) and matches its embeddings", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8, 16],
    blocks: [1, 2, 1],
    strides: [1, 2, 2],
    patchSize: [16, 16, 16],
    headDim: 24,
    seed: 5,
  });
  const x = tf.randomNormal<tf.Rank.R5>([3, 16, 16, 16, 1], 0, 1, "float32", 7);
  const y = net.apply(x, { training: false });
  const ours = y.dataSync() as Float32Array;
  const dir = tmp("ssl3d-parity-");
  const kw = {
    input_channels: 1,
    n_stages: 3,
    features_per_stage: [4, 8, 16],
    strides: [1, 2, 2],
    n_blocks_per_stage: [1, 2, 1],
    head_dim: 24,
  };
  for (const format of ["pth-compatible", "safetensors"] as const) {
    const out = join(dir, format === "safetensors" ? "w.safetensors" : "w.pth");
    await exportNetwork(net, out, { format });
    const r = await runTorch("voco", kw, out, x, dir);
    assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
    assert.equal(r.params, net.parameterCount());
    assert.deepEqual(r.yShape, [3, 24]);
    const d = maxAbsDiff(ours, r.y);
    assert.ok(d < 1e-3 * maxAbs(r.y), `${format}: max abs diff ${d}, scale ${maxAbs(r.y)}`);
  }
  tf.dispose([x, y]);
  net.dispose();
});

test("voco-primus-xs: export loads strictly into nnssl's VoCoEvaArchitecture tree (EvaMAE without decoder/up-projection + projector); embeddings match", async () => {
  await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)
  const net = createNetwork("voco-primus-xs", { patchSize: [16, 16, 24], headDim: 24, seed: 8 });
  const x = tf.randomNormal<tf.Rank.R5>([3, 16, 16, 24, 1], 0, 1, "float32", 9);
  const y = net.apply(x, { training: false });
  const dir = tmp("ssl3d-parity-");
  const out = join(dir, "w.pth");
  await exportNetwork(net, out, { format: "pth-compatible" });
  const kw = {
    head_dim: 24,
    input_channels: 1,
    embed_dim: 48,
    patch_embed_size: [8, 8, 8],
    encoder_eva_depth: 2,
    encoder_eva_numheads: 2,
    input_shape: [16, 16, 24],
    init_values: 0.1,
    scale_attn_inner: true,
    drop_path_rate: 0.2,
    token_order: "whd",
  };
  const r = await runTorch("vocoeva", kw, out, x, dir);
  assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
  assert.equal(r.params, net.parameterCount());
  assert.deepEqual(r.yShape, [3, 24]);
  const d = maxAbsDiff(y.dataSync(), r.y);
  assert.ok(d < 1e-3 * maxAbs(r.y), `max abs diff ${d}, scale ${maxAbs(r.y)}`);
  tf.dispose([x, y]);
  net.dispose();
});
