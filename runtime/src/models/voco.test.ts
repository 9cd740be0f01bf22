/**
 * VoCoArchitecture (nnssl `src/nnssl/architectures/voco_architecture.py`): parameter counts and state-dict names equal
 * upstream's, head shapes, the row normalisation, embeddings independent of the other crops in the batch, no
 * `decoder.*` aliases, the adaptation keys point at the encoder, save/load round trip (checkpoints, export),
 * fixed-preset errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { tmp } from "../../../test/helpers/torch-parity.js";
import { ConfigError } from "../errors.js";
import { adaptationPlan, aliasesOf, torchStateDict } from "./checkpoint-export.js";
import { loadNetwork, saveNetwork } from "./network-io.js";
import { countParams, createNetwork } from "./registry.js";
import { isEmbeddingNetwork, rowNorm } from "./voco.js";

await tf.setBackend("cpu");

test("parameter counts equal upstream VoCoArchitecture (ResidualEncoder + VocoProjectionHead, counted with torch)", () => {
  // sum(p.numel()) of nnssl's module tree built in the venv (test/helpers/torch-models.py VoCoRef): ResEnc-L encoder
  // 90,296,576 + head 1120·2048+2048 + 2·(2048·2048+2048) = 100,985,088; resenc-xs encoder 225,056 + a 256-wide
  // head (our xs default) 387,616, + a 2048-wide head 8,865,568
  assert.equal(countParams("voco-resenc-l"), 100_985_088);
  assert.equal(countParams("voco-resenc-xs"), 387_616);
  assert.equal(countParams("voco-resenc-xs", { headDim: 2048 }), 8_865_568);
  assert.equal(countParams("voco-resenc-xs", { headDim: 64 }), 241_120);
  assert.throws(() => countParams("voco-resenc-l", { headDim: 64 }), ConfigError);
  assert.throws(() => countParams("voco-resenc-l", { features: [8, 16] }), ConfigError);
  assert.throws(() => countParams("voco-resenc-xs", { encoderOnly: false }), ConfigError);
});

test("state dict: upstream names (encoder.* without decoder aliases, projector.layer{1,2,3}.0), head shapes, adaptation keys", () => {
  const net = createNetwork("voco-resenc-xs", { patchSize: [16, 16, 16], headDim: 32, seed: 2 });
  const sd = torchStateDict(net, { aliases: true });
  const keys = [...sd.keys()];
  assert.ok(
    keys.every((k) => k.startsWith("encoder.") || k.startsWith("projector.")),
    keys.filter((k) => !k.startsWith("encoder.")).join(","),
  );
  assert.ok(keys.includes("encoder.stem.convs.0.all_modules.0.weight"));
  assert.deepEqual(
    keys.filter((k) => k.startsWith("projector.")),
    [
      "projector.layer1.0.weight",
      "projector.layer1.0.bias",
      "projector.layer2.0.weight",
      "projector.layer2.0.bias",
      "projector.layer3.0.weight",
      "projector.layer3.0.bias",
    ],
  );
  assert.deepEqual(sd.get("projector.layer1.0.weight")!.shape, [32, 8 + 16 + 32 + 64]); // PyTorch [out, in]
  assert.deepEqual(sd.get("projector.layer3.0.weight")!.shape, [32, 32]);
  assert.deepEqual(aliasesOf(net.config, "encoder.stages.0.blocks.0.conv1.conv.weight"), [
    "encoder.stages.0.blocks.0.conv1.all_modules.0.weight",
  ]);
  const a = net.config.adaptation;
  assert.deepEqual(
    [a.archClassName, a.keyToEncoder, a.keyToStem, a.keysToInProj],
    [
      "ResidualEncoderUNet",
      "encoder.stages",
      "encoder.stem",
      ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
    ],
  );
  // the network sees 16³ crops; downstream nnU-Net is told upstream's 160³, as by every nnssl trainer
  const plan = adaptationPlan(net.config);
  assert.deepEqual([plan.recommended_downstream_patchsize, plan.key_to_encoder], [[160, 160, 160], "encoder.stages"]);
  net.dispose();
});

test("row normalisation = InstanceNorm1d(affine=False) on [N, H]: every row mean 0, biased variance 1 (eps 1e-5)", () => {
  const x = tf.tensor2d([
    [1, 2, 3, 4],
    [10, 10, 10, 14],
    [0, 0, 0, 0],
  ]);
  const y = rowNorm(x).arraySync();
  const m = (r: number[]) => r.reduce((a, b) => a + b, 0) / r.length;
  assert.ok(Math.abs(m(y[0]!)) < 1e-6 && Math.abs(m(y[1]!)) < 1e-6);
  const v = (r: number[]) => m(r.map((q) => q * q));
  assert.ok(Math.abs(v(y[0]!) - 1.25 / (1.25 + 1e-5)) < 1e-5);
  assert.ok(Math.abs(y[1]![3]! - 3 / Math.sqrt(3 + 1e-5)) < 1e-5); // [−1,−1,−1,3], variance 3
  assert.deepEqual(y[2], [0, 0, 0, 0]);
  x.dispose();
});

test("embeddings: [N, headDim], a crop's embedding does not depend on the rest of the batch, apply() = embed as [N,1,1,1,D]", () => {
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [8, 8, 8],
    headDim: 16,
    seed: 3,
  });
  assert.ok(isEmbeddingNetwork(net));
  const x = tf.randomNormal<tf.Rank.R5>([3, 8, 8, 8, 1], 0, 1, "float32", 1);
  const before = tf.memory().numTensors;
  const all = tf.tidy(() => net.embed(x, { training: true }).arraySync());
  const one = tf.tidy(() =>
    net.embed(tf.slice(x, [1, 0, 0, 0, 0], [1, -1, -1, -1, -1]), { training: true }).arraySync(),
  );
  assert.equal(tf.memory().numTensors, before);
  assert.equal(all.length, 3);
  assert.equal(all[0]!.length, 16);
  one[0]!.forEach((v, i) => {
    assert.ok(Math.abs(v - all[1]![i]!) < 1e-4, `feature ${i}: ${v} vs ${all[1]![i]}`);
  });
  const y = net.apply(x, { training: false });
  assert.deepEqual(y.shape, [3, 1, 1, 1, 16]);
  tf.dispose([x, y]);
  net.dispose();
});

test("save/load round trip rebuilds the VoCo network with identical weights (checkpoints, ssl3d export)", async () => {
  const net = createNetwork("voco-resenc-xs", {
    features: [4, 8],
    strides: [1, 2],
    patchSize: [8, 8, 8],
    headDim: 16,
    seed: 6,
  });
  const file = join(tmp("ssl3d-voco-"), "n.safetensors");
  await saveNetwork(net, file);
  const { net: back } = await loadNetwork(file);
  assert.equal(back.config.name, "voco-resenc-xs");
  assert.equal(back.parameterCount(), net.parameterCount());
  for (const [k, v] of net.weights) assert.deepEqual(back.weights.get(k)!.dataSync(), v.dataSync(), k);
  net.dispose();
  back.dispose();
});

test("voco-primus: upstream VoCoEvaArchitecture counts and names (encoder.down_projection/eva/mask_token, no up_projection), Eva adaptation keys", () => {
  // sum(p.numel()) of test/helpers/torch-models.py VoCoEvaRef (EvaMAE(decoder 0, Identity up-projection) + projector)
  // in the venv: Primus-M on 64³ crops (8³ tokens) + 864→2048 head = 154,692,992; primus-xs on 32³ + 256 head = 229,440
  assert.equal(countParams("voco-primus-m", { patchSize: [64, 64, 64] }), 154_692_992);
  assert.equal(countParams("voco-primus-xs"), 229_440);
  assert.throws(() => countParams("voco-primus-m", { headDim: 64 }), ConfigError);
  assert.throws(() => countParams("voco-primus-xs", { decoderDepth: 2 }), ConfigError);
  const net = createNetwork("voco-primus-xs", { patchSize: [16, 16, 16], headDim: 8, seed: 1 });
  const keys = [...torchStateDict(net, { aliases: true }).keys()];
  assert.ok(
    keys.includes("encoder.mask_token") &&
      keys.includes("encoder.down_projection.proj.weight") &&
      keys.includes("encoder.eva.pos_embed"),
  );
  assert.ok(!keys.some((k) => k.includes("up_projection") || k.includes("decoder")), keys.join(","));
  assert.deepEqual(keys.filter((k) => k.startsWith("projector.")).length, 6);
  const a = net.config.adaptation;
  assert.deepEqual(
    [a.archClassName, a.keyToEncoder, a.keyToStem, a.keysToInProj, a.keyToLpe],
    ["PrimusXS", "encoder.eva", "encoder.down_projection", ["encoder.down_projection.proj"], "encoder.eva.pos_embed"],
  );
  assert.ok(isEmbeddingNetwork(net));
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 3);
  const before = tf.memory().numTensors;
  const e = tf.tidy(() => net.embed(x, { training: false }).shape);
  assert.deepEqual(e, [2, 8]);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  net.dispose();
});
