/**
 * Architecture unit tests: parameter counts equal upstream (checked against dynamic-network-architectures, see
 * docs/parity.md), no tensor leaks across forward+backward on cpu and wasm, encoder access, EvaMAE token dropping,
 * deterministic init, safetensors export/import round trip.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { useBackend } from "../../../test/helpers/tf-check.js";
import { tmp } from "../../../test/helpers/torch-parity.js";
import { isMaskedNetwork, type Network } from "./architecture.js";
import {
  adaptationPlan,
  pretrainPlanFor,
  recordedPlan,
  torchStateDict,
  UPSTREAM_DOWNSTREAM_PATCH,
} from "./checkpoint-export.js";
import { architectureFromAdaptationPlan } from "./checkpoint-import.js";
import { loadNetwork, saveNetwork } from "./network-io.js";
import { countParams, createNetwork } from "./registry.js";
import { decodeSafetensors, encodeSafetensors } from "./safetensors.js";
import { ConfigError, DataError } from "../errors.js";

test("only the EvaMAE wrappers are MaskedNetworks", async () => {
  await useBackend("cpu");
  const p = createNetwork("primus-xs", { patchSize: [8, 8, 8] });
  const m = createNetwork("eva-mae-xs", { patchSize: [8, 8, 8] });
  assert.equal(isMaskedNetwork(p), false);
  assert.equal(isMaskedNetwork(m), true);
  p.dispose();
  m.dispose();
});

test("parameter counts equal upstream", () => {
  assert.equal(countParams("resenc-l"), 102_348_965);
  // upstream ResidualEncoder(1, 6, ResEnc-L widths/strides/blocks) alone
  assert.equal(countParams("resenc-l", { encoderOnly: true }), 90_296_576);
  assert.equal(countParams("primus-s"), 26_268_285);
  assert.equal(countParams("primus-b"), 97_958_065);
  assert.equal(countParams("primus-m"), 151_786_529);
  assert.equal(countParams("primus-l"), 331_823_761);
  assert.throws(() => countParams("resenc-l", { features: [8, 16] }), ConfigError);
  assert.throws(() => countParams("nope"), ConfigError);
});

test("encoderOnly ResEnc: encoder keys only, encode() equals the full network's, apply() is a ConfigError", async () => {
  await useBackend("cpu");
  const full = createNetwork("resenc-xs", { patchSize: [16, 16, 16], seed: 4 });
  const enc = createNetwork("resenc-xs", { patchSize: [16, 16, 16], seed: 4, encoderOnly: true });
  const keys = [...enc.weights.keys()];
  assert.ok(keys.length > 0 && keys.every((k) => k.startsWith("encoder.")));
  assert.deepEqual(
    keys,
    [...full.weights.keys()].filter((k) => k.startsWith("encoder.")),
  );
  const x = tf.randomNormal<tf.Rank.R5>([1, 16, 16, 16, 1], 0, 1, "float32", 2);
  const a = full.encode(x, { training: true }) as tf.Tensor5D[];
  const b = enc.encode(x, { training: true }) as tf.Tensor5D[];
  assert.equal(a.length, b.length);
  a.forEach((t, i) => {
    assert.deepEqual([...t.dataSync()], [...b[i]!.dataSync()]);
  });
  assert.throws(() => enc.apply(x, { training: true }), ConfigError);
  assert.equal(enc.config.hyper.encoderOnly, true);
  assert.throws(() => createNetwork("resenc-xs", { encoderOnly: "yes" }), ConfigError);
  tf.dispose([x, ...a, ...b]);
  full.dispose();
  enc.dispose();
});

function step(net: Network, x: tf.Tensor5D): number {
  const vars = [...net.weights.values()].filter((v) => v.trainable);
  const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(net.apply(x, { training: true, seed: 1 }))), vars);
  const gsum = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.abs(g)))).dataSync()[0]!);
  tf.dispose([value, ...Object.values(grads)]);
  return gsum;
}

for (const backend of ["cpu", "wasm"] as const) {
  test(`no tensor leaks across forward+backward, encoder access (${backend})`, async () => {
    await useBackend(backend);
    const cnn = createNetwork("resenc-xs", { features: [4, 8, 16], patchSize: [8, 8, 8], seed: 1 });
    const vit = createNetwork("eva-mae-xs", {
      embedDim: 24,
      heads: 1,
      depth: 1,
      decoderDepth: 1,
      patchSize: [16, 16, 8],
      seed: 1,
    });
    const x1 = tf.randomNormal<tf.Rank.R5>([2, 8, 8, 8, 1], 0, 1, "float32", 1);
    const x2 = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 8, 1], 0, 1, "float32", 2);
    for (const [net, x] of [
      [cnn, x1],
      [vit, x2],
    ] as const) {
      step(net, x); // warm-up (kernel/backends may cache)
      const before = tf.memory().numTensors;
      const g = step(net, x);
      assert.ok(Number.isFinite(g) && g > 0, "gradients flow");
      assert.equal(tf.memory().numTensors, before, `${net.config.name}: tensor leak`);
    }
    const stages = cnn.encode(x1, { training: false }) as tf.Tensor5D[];
    assert.deepEqual(
      stages.map((s) => s.shape),
      [
        [2, 8, 8, 8, 4],
        [2, 4, 4, 4, 8],
        [2, 2, 2, 2, 16],
      ],
    );
    const tokens = vit.encode(x2, { training: false }) as tf.Tensor3D;
    assert.deepEqual(tokens.shape, [2, 4, 24]);
    assert.ok(isMaskedNetwork(vit));
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(
      () => {
        const r = vit.forwardMasked(x2, { keepRatio: 0.5, rngSeed: 3 }, { training: true });
        assert.deepEqual(r.reconstruction.shape, [2, 16, 16, 8, 1]);
        assert.equal(r.keepIndices.length, 2);
        assert.ok(r.keepIndices.every((k) => k.length === 2 && k[0]! < k[1]!));
        return tf.mean(tf.square(r.reconstruction));
      },
      [...vit.weights.values()].filter((v) => v.trainable),
    );
    const gMask = grads[vit.weights.get("mask_token")!.name];
    assert.ok(
      gMask !== undefined && tf.tidy(() => tf.sum(tf.abs(gMask)).dataSync()[0]!) > 0,
      "mask token receives gradient",
    );
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before, "forwardMasked leak");
    tf.dispose([...stages, tokens, x1, x2]);
    cnn.dispose();
    vit.dispose();
  });
}

test("EvaMAE: explicit keepIndices equal to all tokens reproduce the unmasked forward; hwd order differs", async () => {
  await useBackend("cpu");
  const net = createNetwork("eva-mae-xs", {
    embedDim: 24,
    heads: 1,
    depth: 1,
    decoderDepth: 1,
    patchSize: [16, 8, 8],
    seed: 2,
  });
  assert.ok(isMaskedNetwork(net));
  const x = tf.randomNormal<tf.Rank.R5>([1, 16, 8, 8, 1], 0, 1, "float32", 7);
  const full = net.apply(x, { training: false });
  const r = net.forwardMasked(x, { keepIndices: [[1, 0]] }, { training: false });
  assert.deepEqual(r.keepIndices, [[0, 1]]);
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(full, r.reconstruction))).dataSync()[0]!) < 1e-5);
  assert.throws(() => net.forwardMasked(x, { keepIndices: [[0, 0]] }, { training: false }), ConfigError);
  assert.equal(net.tokenIndex(1, 0, 0), 1);
  const hwd = createNetwork("eva-mae-xs", {
    embedDim: 24,
    heads: 1,
    depth: 1,
    decoderDepth: 1,
    patchSize: [16, 8, 8],
    seed: 2,
    tokenOrder: "hwd",
  });
  assert.ok(isMaskedNetwork(hwd));
  assert.equal(hwd.tokenIndex(0, 1, 0), 0 + 1 * 2 * 1);
  tf.dispose([x, full, r.reconstruction]);
  net.dispose();
  hwd.dispose();
});

test("init is deterministic for a seed; save/load round trip; bad files are DataErrors naming the field", async () => {
  await useBackend("cpu");
  const a = createNetwork("resenc-xs", { features: [4, 8], patchSize: [4, 4, 4], seed: 9 });
  const b = createNetwork("resenc-xs", { features: [4, 8], patchSize: [4, 4, 4], seed: 9 });
  const c = createNetwork("resenc-xs", { features: [4, 8], patchSize: [4, 4, 4], seed: 10 });
  const w = (n: Network): Float32Array => n.weights.get("encoder.stem.convs.0.conv.weight")!.dataSync() as Float32Array;
  assert.deepEqual(w(a), w(b));
  assert.notDeepEqual(w(a), w(c));
  // PyTorch default init bound 1/sqrt(fan_in) for the stem conv (fan_in = 27)
  assert.ok(Math.max(...w(a).map(Math.abs)) <= 1 / Math.sqrt(27));
  const dir = tmp("ssl3d-models-");
  const path = join(dir, "net.safetensors");
  await saveNetwork(c, path);
  const { net: back } = await loadNetwork(path);
  assert.deepEqual(w(back), w(c));
  assert.equal(back.config.seed, 10);
  // full upstream state dict with aliases also imports
  const sd = torchStateDict(c, { aliases: true });
  assert.ok(
    sd.has("encoder.stem.convs.0.all_modules.0.weight") &&
      sd.has("decoder.encoder.stages.1.blocks.0.skip.1.all_modules.1.bias"),
  );
  const dec = decodeSafetensors(encodeSafetensors(sd));
  assert.equal(dec.tensors.size, sd.size);
  const bad = new Map(sd);
  bad.set("encoder.stem.convs.0.conv.weight", { shape: [4, 1, 3, 3], data: new Float32Array(36) });
  bad.delete("encoder.stem.convs.0.all_modules.0.weight");
  bad.delete("decoder.encoder.stem.convs.0.conv.weight");
  bad.delete("decoder.encoder.stem.convs.0.all_modules.0.weight");
  const { loadTorchStateDict } = await import("./checkpoint-export.js");
  assert.throws(
    () => {
      loadTorchStateDict(back, bad, "x.safetensors");
    },
    (e: unknown) =>
      e instanceof DataError && /x\.safetensors: encoder\.stem\.convs\.0\.conv\.weight: shape/.test(e.message),
  );
  assert.throws(() => decodeSafetensors(Buffer.from([1, 2, 3]), "t.safetensors"), DataError);
  for (const n of [a, b, c, back]) n.dispose();
});

test("adaptation plans: Primus init kwargs for the configurable preset, named presets by name; import reads them back", async () => {
  await useBackend("cpu");
  const mae = createNetwork("eva-mae-xs", { embedDim: 48, depth: 3, heads: 4, patchSize: [16, 16, 16], seed: 2 });
  const plan = adaptationPlan(
    mae.config,
    { configurations: { onemmiso: { patch_size: [16, 16, 16] } } },
    UPSTREAM_DOWNSTREAM_PATCH,
  );
  const ap = plan.architecture_plans as { arch_class_name: string; arch_kwargs: Record<string, unknown> };
  assert.equal(ap.arch_class_name, "PrimusXS");
  assert.deepEqual(ap.arch_kwargs, {
    embed_dim: 48,
    patch_embed_size: [8, 8, 8],
    encoder_eva_depth: 3,
    encoder_eva_numheads: 4,
    drop_path_rate: 0.2,
    init_values: 0.1,
    scale_attn_inner: true,
  });
  assert.deepEqual(plan.recommended_downstream_patchsize, [160, 160, 160]);
  const sd = torchStateDict(mae, { aliases: false });
  const back = architectureFromAdaptationPlan(plan, sd, "x.pth");
  assert.equal(back.key, "eva-mae-xs");
  const rebuilt = createNetwork(back.key, back.options);
  assert.equal(rebuilt.parameterCount(), mae.parameterCount());
  assert.equal(
    (rebuilt.config.hyper as { decoderDepth: number }).decoderDepth,
    (mae.config.hyper as { decoderDepth: number }).decoderDepth,
  );
  const named = adaptationPlan(createNetwork("primus-m", { patchSize: [16, 16, 16] }).config);
  assert.deepEqual(
    [
      (named.architecture_plans as { arch_class_name: string }).arch_class_name,
      (named.architecture_plans as { arch_kwargs: unknown }).arch_kwargs,
    ],
    ["PrimusM", null],
  );
  assert.deepEqual(
    named.recommended_downstream_patchsize,
    [16, 16, 16],
    "without a trainer's recommendation: the network's input",
  );
  mae.dispose();
  rebuilt.dispose();
});

test("pretrainPlanFor keeps only the trained configuration with the network's patch; recordedPlan reads a checkpoint's", () => {
  const plans = {
    plans_name: "nnsslPlans",
    configurations: {
      median: { patch_size: null, spacing: [1, 1, 2] },
      onemmiso: { patch_size: null, spacing: [1, 1, 1] },
    },
  };
  assert.deepEqual(pretrainPlanFor(plans, "onemmiso", [64, 64, 64], "p.json"), {
    plans_name: "nnsslPlans",
    configurations: { onemmiso: { patch_size: [64, 64, 64], spacing: [1, 1, 1] } },
  });
  assert.throws(
    () => pretrainPlanFor(plans, undefined, [64, 64, 64], "p.json"),
    (e: unknown) => e instanceof ConfigError && /2 configurations/.test(e.message) && /p\.json/.test(e.message),
  );
  assert.throws(
    () => pretrainPlanFor(plans, "noresample", [64, 64, 64], "p.json"),
    (e: unknown) => e instanceof ConfigError && /configurations\.noresample/.test(e.message),
  );
  assert.equal(
    (
      pretrainPlanFor({ configurations: { only: {} } }, undefined, [8, 8, 8], "p.json").configurations as Record<
        string,
        unknown
      >
    ).only !== undefined,
    true,
  );
  const meta = {
    ssl3d: JSON.stringify({
      init_args: { configuration_name: "onemmiso" },
      nnssl_adaptation_plan: {
        pretrain_plan: { configurations: { onemmiso: { patch_size: [32, 32, 32] } } },
        recommended_downstream_patchsize: [160, 160, 160],
      },
    }),
  };
  assert.deepEqual(recordedPlan(meta), {
    pretrainPlan: { configurations: { onemmiso: { patch_size: [32, 32, 32] } } },
    recommended: [160, 160, 160],
    configuration: "onemmiso",
  });
  assert.deepEqual(recordedPlan({}), { pretrainPlan: null, recommended: undefined, configuration: undefined });
  assert.deepEqual(recordedPlan({ ssl3d: "{bad" }), {
    pretrainPlan: null,
    recommended: undefined,
    configuration: undefined,
  });
});
