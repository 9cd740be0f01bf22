/**
 * The SwinUNETR pre-text network (nnssl `src/nnssl/architectures/swinunetr_architecture.py`): upstream parameter names
 * and shapes (ResEnc-L from declarations, no allocation), head outputs on the right tokens, every parameter reached by
 * the gradient, no tensor leak, export keys without a U-Net decoder. Parity with PyTorch:
 * test/integration/swin-pretext-parity.test.ts. Run time ~1 s.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { torchStateDict } from "./checkpoint-export.js";
import { countParams, createNetwork } from "./registry.js";
import { RESENC_L } from "./resenc-unet.js";
import { declareSwinPretext, evaReconLayers, isPretextNetwork, reconLayers } from "./swin-pretext.js";
import { selectBackend } from "./backend/select.js";
import { torchShape } from "./params.js";

await selectBackend("cpu"); // native kernels when built (SSL3D_NATIVE=0: stock)

test("ResEnc-L: upstream head names, shapes and module indices (recon_proj_head.0/4/8/12/16/20)", () => {
  const decls = declareSwinPretext(RESENC_L.hyper, 1, 1);
  const heads = decls.filter((d) => !d.name.startsWith("encoder."));
  assert.deepEqual(
    heads.map((d) => [d.name, torchShape(d)]),
    [
      ["rotation_proj_head.weight", [4, 320]],
      ["rotation_proj_head.bias", [4]],
      ["contrast_proj_head.weight", [512, 320]],
      ["contrast_proj_head.bias", [512]],
      ["recon_proj_head.0.weight", [320, 320, 3, 3, 3]],
      ["recon_proj_head.0.bias", [320]],
      ["recon_proj_head.4.weight", [256, 320, 3, 3, 3]],
      ["recon_proj_head.4.bias", [256]],
      ["recon_proj_head.8.weight", [128, 256, 3, 3, 3]],
      ["recon_proj_head.8.bias", [128]],
      ["recon_proj_head.12.weight", [64, 128, 3, 3, 3]],
      ["recon_proj_head.12.bias", [64]],
      ["recon_proj_head.16.weight", [32, 64, 3, 3, 3]],
      ["recon_proj_head.16.bias", [32]],
      ["recon_proj_head.20.weight", [1, 32, 3, 3, 3]],
      ["recon_proj_head.20.bias", [1]],
    ],
  );
  // five ×2 upsamplings (5³ → 160³), none after the final conv (stage 0 has stride 1)
  assert.deepEqual(
    reconLayers(RESENC_L.hyper, 1).map((l) => l.upsample),
    [true, true, true, true, true, false],
  );
  // encoder part = upstream ResidualEncoder: the U-Net's encoder keys, nothing of its decoder
  const enc = decls.filter((d) => d.name.startsWith("encoder."));
  assert.ok(enc.length > 0 && enc.every((d) => /^encoder\.(stem|stages)\./.test(d.name)));
  const head =
    1284 +
    164_352 +
    [
      [320, 320],
      [320, 256],
      [256, 128],
      [128, 64],
      [64, 32],
      [32, 1],
    ].reduce((a, [i, o]) => a + i! * o! * 27 + o!, 0);
  assert.equal(countParams("swin-pretext-resenc-l"), countParams("resenc-l", { encoderOnly: true }) + head);
});

test("resenc-xs: heads read tokens 0 and 1 of the C-order flattened bottleneck; full-size reconstruction; gradients reach every parameter; no leak", () => {
  const net = createNetwork("swin-pretext-resenc-xs", { patchSize: [32, 32, 32], seed: 5 });
  assert.ok(isPretextNetwork(net));
  assert.equal(net.config.family, "cnn");
  assert.equal(net.config.adaptation.keyToEncoder, "encoder.stages");
  assert.equal(net.config.adaptation.keyToStem, "encoder.stem");
  assert.equal(net.parameterCount(), countParams("swin-pretext-resenc-xs"));
  const x = tf.randomNormal<tf.Rank.R5>([2, 32, 32, 32, 1], 0, 1, "float32", 1);
  tf.dispose(net.forwardPretext(x, { training: true }) as unknown as tf.Tensor[]); // first call may create cached constants
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    const o = net.forwardPretext(x, { training: true });
    assert.deepEqual(o.rotation.shape, [2, 4]);
    assert.deepEqual(o.contrast.shape, [2, 512]);
    assert.deepEqual(o.reconstruction.shape, [2, 32, 32, 32, 1]);
    const z = (net.encode(x, { training: true }) as tf.Tensor5D[])[3]!; // bottleneck [2,4,4,4,64]
    assert.deepEqual(z.shape, [2, 4, 4, 4, 64]);
    const tok = (g2: number) => tf.reshape(tf.slice(z, [0, 0, 0, g2, 0], [2, 1, 1, 1, 64]), [2, 64]);
    const w = (n: string) => net.weights.get(n)!;
    const rot = tf.add(tf.matMul(tok(0), w("rotation_proj_head.weight")), w("rotation_proj_head.bias"));
    const con = tf.add(tf.matMul(tok(1), w("contrast_proj_head.weight")), w("contrast_proj_head.bias"));
    assert.ok(tf.max(tf.abs(tf.sub(rot, o.rotation))).dataSync()[0]! < 1e-5);
    assert.ok(tf.max(tf.abs(tf.sub(con, o.contrast))).dataSync()[0]! < 1e-5);
    assert.ok(tf.max(tf.abs(tf.sub(net.apply(x, { training: true }), o.reconstruction))).dataSync()[0] === 0);
  });
  assert.equal(tf.memory().numTensors, before);
  const { value, grads } = tf.variableGrads(() => {
    const o = net.forwardPretext(x, { training: true });
    return tf.addN([tf.sum(o.rotation), tf.sum(o.contrast), tf.mean(o.reconstruction)]) as tf.Scalar;
  }, [...net.weights.values()]);
  assert.equal(Object.keys(grads).length, net.weights.size);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  net.dispose();
});

test("export: upstream .all_modules aliases, no decoder.encoder aliases (no U-Net decoder), heads under their names", () => {
  const net = createNetwork("swin-pretext-resenc-xs", {
    features: [2, 4],
    strides: [1, 2],
    blocks: [1, 1],
    patchSize: [8, 8, 8],
  });
  const keys = [...torchStateDict(net, { aliases: true }).keys()];
  assert.ok(keys.includes("encoder.stem.convs.0.all_modules.0.weight"));
  assert.ok(
    keys.every((k) => !k.startsWith("decoder.")),
    keys.filter((k) => k.startsWith("decoder.")).join(","),
  );
  assert.deepEqual(
    keys.filter((k) => !k.startsWith("encoder.")),
    [
      "rotation_proj_head.weight",
      "rotation_proj_head.bias",
      "contrast_proj_head.weight",
      "contrast_proj_head.bias",
      "recon_proj_head.0.weight",
      "recon_proj_head.0.bias",
      "recon_proj_head.4.weight",
      "recon_proj_head.4.bias",
    ],
  );
  net.dispose();
  // a single-voxel bottleneck cannot feed two heads
  const tiny = createNetwork("swin-pretext-resenc-xs", {
    features: [2, 4],
    strides: [1, 2],
    blocks: [1, 1],
    patchSize: [2, 2, 2],
  });
  assert.ok(isPretextNetwork(tiny));
  const x = tf.zeros<tf.Rank.R5>([1, 2, 2, 2, 1]);
  assert.throws(() => tiny.forwardPretext(x, { training: false }), /token/);
  x.dispose();
  tiny.dispose();
});

test("Primus (SwinUNETREvaArchitecture): encoder under encoder.* without up_projection, heads on tokens 0/1 of the grid, 864→432→216→108→1", () => {
  assert.deepEqual(
    evaReconLayers(864, 8, 1).map((l) => [l.index, l.cin, l.cout, l.upsample]),
    [
      [0, 864, 432, true],
      [4, 432, 216, true],
      [8, 216, 108, true],
      [12, 108, 1, false],
    ],
  );
  const net = createNetwork("swin-pretext-primus-xs", { patchSize: [32, 32, 32], seed: 2 });
  assert.ok(isPretextNetwork(net));
  assert.equal(net.config.family, "vit");
  const a = net.config.adaptation;
  assert.deepEqual(
    [a.keyToEncoder, a.keyToStem, a.keysToInProj, a.keyToLpe],
    ["encoder.eva", "encoder.down_projection", ["encoder.down_projection.proj"], "encoder.eva.pos_embed"],
  );
  const names = net.declarations.map((d) => d.name);
  assert.ok(
    names.includes("encoder.mask_token") &&
      names.includes("encoder.eva.pos_embed") &&
      names.includes("encoder.down_projection.proj.weight"),
  );
  assert.ok(
    names.every((n) =>
      /^(encoder\.(down_projection|eva|mask_token)|rotation_proj_head|contrast_proj_head|recon_proj_head)/.test(n),
    ),
    names.join(","),
  );
  assert.deepEqual(
    net.declarations
      .filter((d) => d.name.startsWith("recon_proj_head") && d.name.endsWith("weight"))
      .map((d) => [d.name, torchShape(d)]),
    [
      ["recon_proj_head.0.weight", [24, 48, 3, 3, 3]],
      ["recon_proj_head.4.weight", [12, 24, 3, 3, 3]],
      ["recon_proj_head.8.weight", [6, 12, 3, 3, 3]],
      ["recon_proj_head.12.weight", [1, 6, 3, 3, 3]],
    ],
  );
  assert.equal(net.parameterCount(), countParams("swin-pretext-primus-xs"));
  const x = tf.randomNormal<tf.Rank.R5>([2, 32, 32, 32, 1], 0, 1, "float32", 3);
  tf.dispose(net.forwardPretext(x, { training: false }) as unknown as tf.Tensor[]);
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    const o = net.forwardPretext(x, { training: false });
    assert.deepEqual(
      [o.rotation.shape, o.contrast.shape, o.reconstruction.shape],
      [
        [2, 4],
        [2, 512],
        [2, 32, 32, 32, 1],
      ],
    );
    const t = net.encode(x, { training: false }) as tf.Tensor3D; // [2, 64, 48], C-order over the 4³ grid
    const tok = (i: number) => tf.reshape(tf.slice(t, [0, i, 0], [2, 1, 48]), [2, 48]);
    const w = (n: string) => net.weights.get(n)!;
    assert.ok(
      tf
        .max(
          tf.abs(
            tf.sub(tf.add(tf.matMul(tok(0), w("rotation_proj_head.weight")), w("rotation_proj_head.bias")), o.rotation),
          ),
        )
        .dataSync()[0]! < 1e-5,
    );
    assert.ok(
      tf
        .max(
          tf.abs(
            tf.sub(tf.add(tf.matMul(tok(1), w("contrast_proj_head.weight")), w("contrast_proj_head.bias")), o.contrast),
          ),
        )
        .dataSync()[0]! < 1e-5,
    );
  });
  assert.equal(tf.memory().numTensors, before);
  const { value, grads } = tf.variableGrads(() => {
    const o = net.forwardPretext(x, { training: true, seed: 1 });
    return tf.addN([tf.sum(o.rotation), tf.sum(o.contrast), tf.mean(o.reconstruction)]) as tf.Scalar;
  }, [...net.weights.values()]);
  // every parameter but the (unused, as upstream) mask token
  assert.equal(Object.keys(grads).length, net.weights.size - 1);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  net.dispose();
});
