/**
 * Opt-in (SSL3D_FULL_PARITY=1; minutes and several GB of RAM): full-size ResEnc-L and Primus-M against upstream
 * PyTorch, on the wasm backend (the training path: conv2d-based conv3d, matMul transposed convs). Results are
 * recorded in docs/parity.md. Sizes: SSL3D_PARITY_RESENC_SIZE (default 64), SSL3D_PARITY_PRIMUS_SIZE (default 160).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { exportNetwork } from "../../runtime/src/models/checkpoint-export.js";
import { createNetwork } from "../../runtime/src/models/registry.js";
import { maxAbs, maxAbsDiff, useBackend } from "../helpers/tf-check.js";
import { runTorch, tmp } from "../helpers/torch-parity.js";

const enabled = process.env.SSL3D_FULL_PARITY === "1";
const backend = (process.env.SSL3D_PARITY_BACKEND ?? "wasm") as "wasm" | "cpu";

test("full ResEnc-L parity with upstream", { skip: !enabled && "set SSL3D_FULL_PARITY=1" }, async () => {
  await useBackend(backend);
  const s = Number(process.env.SSL3D_PARITY_RESENC_SIZE ?? 64);
  const net = createNetwork("resenc-l", { patchSize: [s, s, s], seed: 11 });
  const x = tf.randomNormal<tf.Rank.R5>([1, s, s, s, 1], 0, 1, "float32", 12);
  let t0 = performance.now();
  const y = net.apply(x, { training: false });
  const ours = y.dataSync() as Float32Array;
  const tOurs = (performance.now() - t0) / 1000;
  const dir = tmp("ssl3d-parity-full-");
  const out = join(dir, "resenc-l.pth");
  await exportNetwork(net, out, { format: "pth-compatible" });
  t0 = performance.now();
  const kw = {
    input_channels: 1,
    n_stages: 6,
    features_per_stage: [32, 64, 128, 256, 320, 320],
    strides: [1, 2, 2, 2, 2, 2],
    n_blocks_per_stage: [1, 3, 4, 6, 6, 6],
    num_classes: 1,
    n_conv_per_stage_decoder: [1, 1, 1, 1, 1],
  };
  const r = await runTorch("resenc", kw, out, x, dir);
  const d = maxAbsDiff(ours, r.y);
  process.stderr.write(
    `PARITY resenc-l input ${s}^3 backend ${backend}: params ${r.params}, max|diff| ${d.toExponential(3)}, output scale ${maxAbs(r.y).toExponential(3)}, ours ${tOurs.toFixed(1)} s, torch+io ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
  assert.equal(r.params, 102_348_965);
  assert.ok(d < 1e-3 * maxAbs(r.y));
  tf.dispose([x, y]);
  net.dispose();
});

test("full Primus-M parity with upstream", { skip: !enabled && "set SSL3D_FULL_PARITY=1" }, async () => {
  await useBackend(backend);
  const s = Number(process.env.SSL3D_PARITY_PRIMUS_SIZE ?? 160);
  const net = createNetwork("primus-m", { patchSize: [s, s, s], seed: 13 });
  const x = tf.randomNormal<tf.Rank.R5>([1, s, s, s, 1], 0, 1, "float32", 14);
  let t0 = performance.now();
  const y = net.apply(x, { training: false });
  const ours = y.dataSync() as Float32Array;
  const tOurs = (performance.now() - t0) / 1000;
  const dir = tmp("ssl3d-parity-full-");
  const out = join(dir, "primus-m.pth");
  await exportNetwork(net, out, { format: "pth-compatible" });
  t0 = performance.now();
  const kw = {
    input_channels: 1,
    output_channels: 1,
    config_name: "M",
    patch_embed_size: [8, 8, 8],
    input_shape: [s, s, s],
    init_values: 0.1,
    scale_attn_inner: true,
    drop_path_rate: 0.2,
  };
  const r = await runTorch("primusx", kw, out, x, dir);
  const d = maxAbsDiff(ours, r.y);
  process.stderr.write(
    `PARITY primus-m input ${s}^3 backend ${backend}: params ${r.params}, max|diff| ${d.toExponential(3)}, output scale ${maxAbs(r.y).toExponential(3)}, ours ${tOurs.toFixed(1)} s, torch+io ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  assert.deepEqual([r.missing, r.unexpected, r.upstream_only, r.ours_only], [[], [], [], []]);
  if (s === 160) assert.equal(r.params, 151_786_529);
  assert.ok(d < 1e-3 * maxAbs(r.y));
  tf.dispose([x, y]);
  net.dispose();
});
