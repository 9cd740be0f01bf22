/**
 * EvaSimMIM (nnssl `src/nnssl/architectures/evaSimMIM_module.py`): upstream key set, the mask token replaces exactly
 * the masked tokens (the content of masked blocks is invisible to the network, that of visible blocks is not), an
 * all-visible mask equals the plain forward, checkpoint metadata rebuilds the wrapper, no leak across forward +
 * backward.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../../../test/helpers/tf-check.js";
import { tmp } from "../../../test/helpers/torch-parity.js";
import { ConfigError } from "../errors.js";
import { valueAndGrads } from "../training/backprop.js";
import { isMaskedNetwork, isTokenMaskNetwork, type TokenMaskNetwork } from "./architecture.js";
import { adaptationPlan } from "./checkpoint-export.js";
import { loadNetwork, saveNetwork } from "./network-io.js";
import { countParams, createNetwork } from "./registry.js";

const small = { embedDim: 24, heads: 1, depth: 2, patchSize: [16, 8, 24] as const, seed: 3 };

function simmim(): TokenMaskNetwork {
  const n = createNetwork("eva-simmim-xs", { ...small, patchSize: [...small.patchSize] });
  assert.ok(isTokenMaskNetwork(n));
  return n;
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

test("eva-simmim: upstream EvaSimMIM keys (down_projection, eva, up_projection, mask_token; no decoder), Primus-M count + mask token, adaptation plan", async () => {
  await useBackend("cpu");
  const net = simmim();
  const keys = [...net.weights.keys()];
  assert.ok(keys.includes("mask_token"));
  assert.ok(
    keys.every((k) => /^(mask_token|down_projection\.proj\.|eva\.|up_projection\.decode\.)/.test(k)),
    keys.join(","),
  );
  assert.ok(!keys.some((k) => k.startsWith("decoder.")));
  assert.equal(isMaskedNetwork(net), false);
  // EvaSimMIM-M = Primus-M's modules + a 864-vector mask token (same PatchDecode to 1 channel)
  assert.equal(countParams("eva-simmim-m"), countParams("primus-m") + 864);
  const plan = adaptationPlan(net.config);
  assert.equal(plan.key_to_encoder, "eva");
  assert.equal(plan.key_to_stem, "down_projection");
  assert.deepEqual(plan.keys_to_in_proj, ["down_projection.proj"]);
  assert.equal(plan.key_to_lpe, "eva.pos_embed");
  assert.ok(!("key_to_in_proj" in plan));
  assert.throws(() => createNetwork("eva-simmim-xs", { decoderDepth: 2 }), ConfigError);
  assert.throws(() => createNetwork("eva-simmim-xs", { tokenOrder: "hwd" }), ConfigError);
  assert.throws(() => createNetwork("eva-simmim-m", { depth: 2 }), ConfigError);
  net.dispose();
});

test("eva-simmim: masked tokens see only the mask token, visible ones their content; all-visible mask = plain forward", async () => {
  await useBackend("cpu");
  const net = simmim();
  const [g0, g1, g2] = net.tokenGrid;
  assert.deepEqual([g0, g1, g2], [2, 1, 3]);
  const T = g0 * g1 * g2;
  // a mask token far from the embeddings, so that it matters (not constant: LayerNorm would remove a constant shift)
  net.weights.get("mask_token")!.assign(tf.randomNormal([1, 1, 24], 0, 3, "float32", 5));
  const x = tf.randomNormal<tf.Rank.R5>([1, 16, 8, 24, 1], 0, 1, "float32", 1);
  const masked = [net.tokenIndex(1, 0, 2), net.tokenIndex(0, 0, 0)];
  const m = tf.tensor2d(
    Float32Array.from({ length: T }, (_, t) => (masked.includes(t) ? 0 : 1)),
    [1, T],
  );
  // change the input inside token (1,0,2) (masked) or inside token (0,0,1) (visible)
  const block = (b0: number, b2: number): tf.Tensor5D =>
    tf.tidy(() => {
      const d = new Float32Array(16 * 8 * 24);
      for (let a = 0; a < 8; a++)
        for (let b = 0; b < 8; b++) for (let c = 0; c < 8; c++) d[((b0 * 8 + a) * 8 + b) * 24 + b2 * 8 + c] = 5;
      return tf.add(x, tf.tensor5d(d, [1, 16, 8, 24, 1]));
    });
  const ctx = { training: false };
  const y = net.forwardTokenMask(x, m, ctx);
  const yMaskedChanged = net.forwardTokenMask(block(1, 2), m, ctx);
  const yVisibleChanged = net.forwardTokenMask(block(0, 1), m, ctx);
  assert.ok(maxDiff(y, yMaskedChanged) < 1e-6, "content of a masked token leaked into the output");
  assert.ok(maxDiff(y, yVisibleChanged) > 1e-3, "content of a visible token was ignored");
  // all visible: identical to the plain forward, and independent of the mask token
  const ones = tf.ones<tf.Rank.R2>([1, T]);
  const plain = net.apply(x, ctx);
  const allVisible = net.forwardTokenMask(x, ones, ctx);
  assert.ok(maxDiff(plain, allVisible) < 1e-6);
  net.weights.get("mask_token")!.assign(tf.randomNormal([1, 1, 24], 0, 3, "float32", 6));
  assert.ok(maxDiff(allVisible, net.forwardTokenMask(x, ones, ctx)) < 1e-6);
  assert.ok(maxDiff(y, net.forwardTokenMask(x, m, ctx)) > 1e-3, "the mask token did not reach the masked positions");
  assert.throws(() => net.forwardTokenMask(x, tf.ones<tf.Rank.R2>([1, T - 1]), ctx), ConfigError);
  tf.dispose([x, m, y, yMaskedChanged, yVisibleChanged, ones, plain, allVisible]);
  net.dispose();
});

test("eva-simmim: no tensor leak across forward + backward; the mask token gets a gradient; save/load rebuilds the wrapper", async () => {
  await useBackend("cpu");
  const net = simmim();
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 8, 24, 1], 0, 1, "float32", 2);
  const m = tf.tensor2d(
    Float32Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? 0 : 1)),
    [2, 6],
  );
  const before = tf.memory().numTensors;
  const { value, grads } = valueAndGrads(
    () => tf.mean<tf.Scalar>(tf.square(net.forwardTokenMask(x, m, { training: true, seed: 4 }))),
    [...net.weights.values()],
  );
  const g = grads[net.weights.get("mask_token")!.name];
  assert.ok(g !== undefined && tf.tidy(() => tf.sum(tf.abs(g)).dataSync()[0]!) > 0);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  const file = join(tmp("ssl3d-simmim-"), "n.safetensors");
  await saveNetwork(net, file);
  const { net: back } = await loadNetwork(file);
  assert.equal(back.config.name, "eva-simmim-xs");
  assert.ok(isTokenMaskNetwork(back));
  const a = net.forwardTokenMask(x, m, { training: false });
  const b = back.forwardTokenMask(x, m, { training: false });
  assert.ok(maxDiff(a, b) < 1e-6);
  tf.dispose([x, m, a, b]);
  back.dispose();
  net.dispose();
});
