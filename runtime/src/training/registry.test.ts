import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { resolveTrainer, trainerKeys } from "./registry.js";

test("upstream names resolve to method × architecture with the spec 4.4 recipes", () => {
  const cnn = resolveTrainer("BaseMAETrainer_BS8");
  assert.equal(cnn.entry.key, "mae-resenc-l");
  assert.equal(cnn.options.batchSize, 8);
  assert.deepEqual(cnn.options.optimizer, { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.99, weightDecay: 3e-5 });
  assert.equal(cnn.options.gradClip, 12);
  assert.deepEqual(cnn.options.patchSize, [160, 160, 160]);
  assert.equal(cnn.options.numEpochs, 1000);
  assert.equal(cnn.options.itersPerEpoch, 250);
  assert.equal(cnn.options.valIters, 50);
  const vit = resolveTrainer("BaseEvaMAETrainer_BS8");
  assert.equal(vit.entry.key, "mae-primus-m");
  assert.equal(vit.options.optimizer.kind, "adamw");
  assert.equal(vit.options.gradClip, 1);
  assert.deepEqual(vit.options.schedule, { kind: "warmup-poly", warmupEpochs: 50, exponent: 0.9 });
  assert.equal(resolveTrainer("BaseEvaMAETrainer").options.batchSize, 2);
  assert.equal(resolveTrainer("BaseMAETrainer_BS1").options.batchSize, 1);
  assert.equal(resolveTrainer("BaseMAETrainer_ANON_BS2").options.methodOptions.anon, true);
  assert.equal(resolveTrainer("BaseMAETrainer_BS8_4000ep").options.numEpochs, 4000);
  for (const k of ["mae-resenc-l", "mae-primus-m", "simmim-primus-m", "models-genesis-resenc-l", "models-genesis-primus-m", "spark-resenc-l", "volume-fusion-resenc-l", "volume-fusion-primus-m", "swin-pretext-resenc-l", "swin-pretext-primus-m"]) assert.ok(trainerKeys().includes(k), k);
  assert.equal(resolveTrainer("mae-primus-m_BS4").options.batchSize, 4);
});

test("overrides are validated; family mismatch and unknown names are ConfigErrors naming the field", () => {
  const fam = (k: string) => (k.startsWith("primus") ? "vit" as const : k.startsWith("resenc") ? "cnn" as const : undefined);
  assert.equal(resolveTrainer("mae-resenc-l", { architecture: "resenc-xs", patchSize: [32, 32, 32] }, fam).options.architecture, "resenc-xs");
  assert.throws(() => resolveTrainer("mae-resenc-l", { architecture: "primus-xs" }, fam), (e: unknown) => e instanceof ConfigError && e.message.includes("architecture"));
  assert.throws(() => resolveTrainer("mae-resenc-l", { batchSize: 0 }), (e: unknown) => e instanceof ConfigError && e.message.includes("trainer.batchSize"));
  assert.throws(() => resolveTrainer("mae-resenc-l", { bogus: 1 }), ConfigError);
  assert.throws(() => resolveTrainer("mae-resenc-l", { methodOptions: { maskRatio: 2 } }), (e: unknown) => e instanceof ConfigError && e.message.includes("methodOptions.maskRatio"));
  assert.throws(() => resolveTrainer("NopeTrainer"), /unknown trainer/);
  assert.throws(() => resolveTrainer("BaseMAETrainer_foo"), /unsupported trainer suffix/);
});
