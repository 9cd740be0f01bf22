import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { resolveTrainer, trainerKeys, upstreamDifferences } from "./registry.js";

test("upstream names resolve to method × architecture with the upstream trainers' recipes", () => {
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
  for (const k of [
    "mae-resenc-l",
    "mae-primus-m",
    "simmim-primus-m",
    "models-genesis-resenc-l",
    "models-genesis-primus-m",
    "spark-resenc-l",
    "volume-fusion-resenc-l",
    "volume-fusion-primus-m",
    "swin-pretext-resenc-l",
    "swin-pretext-primus-m",
  ])
    assert.ok(trainerKeys().includes(k), k);
  assert.equal(resolveTrainer("mae-primus-m_BS4").options.batchSize, 4);
});

test("overrides are validated; family mismatch and unknown names are ConfigErrors naming the field", () => {
  const fam = (k: string) =>
    k.startsWith("primus") ? ("vit" as const) : k.startsWith("resenc") ? ("cnn" as const) : undefined;
  assert.equal(
    resolveTrainer("mae-resenc-l", { architecture: "resenc-xs", patchSize: [32, 32, 32] }, fam).options.architecture,
    "resenc-xs",
  );
  assert.throws(
    () => resolveTrainer("mae-resenc-l", { architecture: "primus-xs" }, fam),
    (e: unknown) => e instanceof ConfigError && e.message.includes("architecture"),
  );
  assert.throws(
    () => resolveTrainer("mae-resenc-l", { batchSize: 0 }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("trainer.batchSize"),
  );
  assert.throws(() => resolveTrainer("mae-resenc-l", { bogus: 1 }), ConfigError);
  assert.throws(
    () => resolveTrainer("mae-resenc-l", { methodOptions: { maskRatio: 2 } }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("methodOptions.maskRatio"),
  );
  assert.throws(() => resolveTrainer("NopeTrainer"), /unknown trainer/);
  assert.throws(() => resolveTrainer("BaseMAETrainer_foo"), /unsupported trainer suffix/);
});

test("VoCo and SimCLR trainers: upstream recipes, nnssl names and VoCo's variant suffixes", () => {
  const v = resolveTrainer("VoCoTrainer");
  assert.equal(v.entry.key, "voco-resenc-l");
  assert.deepEqual(
    [v.options.method, v.options.architecture, v.options.gradClip, v.options.augment],
    ["voco", "voco-resenc-l", null, false],
  );
  assert.deepEqual(v.options.patchSize, [256, 256, 64]);
  assert.deepEqual(v.options.optimizer, { kind: "sgd-nesterov", lr: 1e-2, momentum: 0.99, weightDecay: 3e-5 });
  assert.deepEqual(v.options.methodOptions, { baseCrops: [4, 4, 1], targetCrops: 4, augment: true });
  const s = resolveTrainer("SimCLRTrainer_BS6");
  assert.deepEqual(
    [s.entry.key, s.options.method, s.options.gradClip, s.options.batchSize, s.options.augment],
    ["simclr-resenc-l", "simclr", 0.1, 6, false],
  );
  assert.deepEqual(s.options.patchSize, [192, 192, 64]);
  assert.equal(resolveTrainer("simclr-resenc-l").options.methodOptions.cropsPerImage, 2);
  // upstream variant names
  const lr = resolveTrainer("VoCoTrainer_BS8_lr_1e3");
  assert.deepEqual([lr.options.batchSize, lr.options.optimizer.lr], [8, 1e-3]);
  const wd = resolveTrainer("VoCoTrainer_BS8_lr_1e2_wd_3e4");
  assert.ok(Math.abs(wd.options.optimizer.weightDecay - 3e-4) < 1e-12 && wd.options.optimizer.lr === 1e-2);
  const g = resolveTrainer("VoCoTrainer_BS8_lr_1e2_wd_3e5_3x3x2_PS64");
  assert.deepEqual(g.options.patchSize, [192, 192, 128]);
  assert.deepEqual(g.options.methodOptions.baseCrops, [3, 3, 2]);
  assert.equal(resolveTrainer("VoCoTrainer_BS8_lr_1e2_wd_3e5_4x4x1_PS64_N8").options.methodOptions.targetCrops, 8);
  assert.throws(() => resolveTrainer("SimCLRTrainer_3x3x1"), /unsupported trainer suffix/);
  // Eva variants: Primus-M VoCo network, AdamW two-stage, clip 1
  const ve = resolveTrainer("VoCoEvaTrainer_BS8");
  assert.deepEqual(
    [
      ve.entry.key,
      ve.entry.family,
      ve.options.architecture,
      ve.options.optimizer.kind,
      ve.options.gradClip,
      ve.options.batchSize,
    ],
    ["voco-primus-m", "vit", "voco-primus-m", "adamw", 1, 8],
  );
  assert.deepEqual(ve.options.patchSize, [256, 256, 64]);
  const se = resolveTrainer("SimCLREvaTrainer_BS32");
  assert.deepEqual(
    [se.entry.key, se.options.method, se.options.gradClip, se.options.batchSize],
    ["simclr-primus-m", "simclr", 1, 32],
  );
  assert.deepEqual(se.options.patchSize, [192, 192, 64]);
  assert.throws(
    () => resolveTrainer("VoCoTrainer", { methodOptions: { targetCrops: 0 } }),
    (e: unknown) => e instanceof ConfigError && e.message.includes("methodOptions.targetCrops"),
  );
});

test("names whose meaning differs from upstream nnssl's class say so (docs/training.md table)", () => {
  for (const bs of [16, 24, 32]) {
    const t = resolveTrainer(`BaseMAETrainer_BS${bs}_ep1000`);
    assert.equal(t.options.batchSize, bs);
    const d = upstreamDifferences(t);
    assert.equal(d.length, 1);
    assert.match(
      d[0]!,
      new RegExp(`^BaseMAETrainer_BS${bs}_ep1000: upstream .* batch size 2 .*; ssl3d trains with batch size ${bs}$`),
    );
  }
  const mb = upstreamDifferences(resolveTrainer("BaseMAETrainer_BS8_ep1000_maskblock64"));
  assert.deepEqual(mb, [
    "BaseMAETrainer_BS8_ep1000_maskblock64: mask block 64 on a 160×160×160 patch: upstream masks a 2×2×2 grid of 80×80×80-voxel blocks; ssl3d masks 64³ blocks on a 3×3×3 grid (the last block per axis partial)",
  ]);
  // a block edge that divides the patch means what upstream means; so do the other upstream names ssl3d accepts
  for (const n of [
    "BaseMAETrainer",
    "BaseMAETrainer_BS8",
    "BaseMAETrainer_BS8_ep2000",
    "BaseMAETrainer_BS8_ep1000_maskblock2",
    "BaseMAETrainer_BS8_ep1000_maskblock32",
    "BaseMAETrainer_BS16",
    "SparkMAETrainer_BS6_1000ep",
    "VoCoTrainer_BS8_lr_1e2_wd_3e5_3x3x2_PS64",
    "BaseEvaMAETrainer_BS8",
  ]) {
    assert.deepEqual(upstreamDifferences(resolveTrainer(n)), [], n);
  }
  // the geometry check follows the patch actually trained: 16³ blocks on a 40³ patch
  assert.match(
    upstreamDifferences(resolveTrainer("BaseMAETrainer", { patchSize: [40, 40, 32] }))[0]!,
    /upstream masks a 2×2×2 grid of 20×20×16-voxel blocks; ssl3d masks 16³ blocks on a 3×3×2 grid/,
  );
  assert.match(
    upstreamDifferences(resolveTrainer("BaseMAETrainer", { patchSize: [50, 48, 48] }))[0]!,
    /upstream's block mask would not cover the patch/,
  );
});
