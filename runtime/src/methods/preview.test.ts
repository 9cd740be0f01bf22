/**
 * Every method's `preview` (the run report's validation pictures): defined for every registered method, shapes that
 * fit a grid, no tensor left behind, and the pictures are those of the loss's own forward pass (the loss recomputed
 * from the preview's columns equals `loss`).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { applyBatchTransform, validationTransform } from "../data/batch-transforms.js";
import type { Network, Vec3 } from "../models/architecture.js";
import { createNetwork } from "../models/registry.js";
import type { MethodBatch, MethodPreview, PretrainMethod } from "./method.js";
import { getMethod, methodKeys } from "./registry.js";

await tf.setBackend("cpu");

interface Case {
  readonly name: string;
  readonly method: string;
  readonly options?: Record<string, unknown>;
  readonly arch: string;
  readonly netOptions: Record<string, unknown>;
  /** Loaded patch. */
  readonly patch: Vec3;
  readonly rows: number;
}

const CNN = { features: [4, 8], blocks: [1, 1], strides: [1, 2], seed: 1 };
const VIT = { embedDim: 24, heads: 1, depth: 1, seed: 1 };
const CASES: readonly Case[] = [
  {
    name: "MAE (CNN)",
    method: "mae",
    options: { blockSize: 4 },
    arch: "resenc-xs",
    netOptions: { ...CNN, patchSize: [16, 16, 16] },
    patch: [16, 16, 16],
    rows: 2,
  },
  {
    name: "MAE (Primus)",
    method: "mae",
    arch: "eva-mae-xs",
    netOptions: { ...VIT, patchSize: [16, 16, 16] },
    patch: [16, 16, 16],
    rows: 2,
  },
  {
    name: "SimMIM",
    method: "simmim",
    arch: "eva-simmim-xs",
    netOptions: { ...VIT, patchSize: [16, 16, 16] },
    patch: [16, 16, 16],
    rows: 2,
  },
  {
    name: "SparK",
    method: "spark",
    options: { blockSize: 4 },
    arch: "spark-resenc-xs",
    netOptions: { ...CNN, patchSize: [16, 16, 16] },
    patch: [16, 16, 16],
    rows: 2,
  },
  {
    name: "Models Genesis",
    method: "models-genesis",
    arch: "resenc-xs",
    netOptions: { ...CNN, patchSize: [16, 16, 16] },
    patch: [16, 16, 16],
    rows: 2,
  },
  {
    name: "VolumeFusion",
    method: "volume-fusion",
    options: { minSide: 2 },
    arch: "resenc-xs",
    netOptions: { ...CNN, outChannels: 5, patchSize: [16, 16, 16] },
    patch: [16, 16, 16],
    rows: 2,
  },
  {
    name: "SwinUNETR pre-text",
    method: "swin-pretext",
    arch: "swin-pretext-resenc-xs",
    netOptions: { ...CNN, features: [2, 4], patchSize: [8, 8, 8] },
    patch: [8, 8, 8],
    rows: 2,
  },
  {
    name: "VoCo",
    method: "voco",
    options: { baseCrops: [2, 2, 1] },
    arch: "voco-resenc-xs",
    netOptions: { ...CNN, patchSize: [8, 8, 8], headDim: 16 },
    patch: [16, 16, 8],
    rows: 2,
  },
  {
    name: "SimCLR",
    method: "simclr",
    options: { cropSize: [8, 8, 8] },
    arch: "voco-resenc-xs",
    netOptions: { ...CNN, patchSize: [8, 8, 8], headDim: 16 },
    patch: [16, 16, 8],
    rows: 2,
  },
];

/** A smooth random-ish loaded batch, passed through the method's validation transform as the loader would. */
function loadedBatch(m: PretrainMethod, patch: Vec3, rows: number): MethodBatch {
  const B = rows * (m.data?.imagesPerSample ?? 1);
  const shape: [number, number, number, number, number] = [B, ...patch, 1];
  const n = B * patch[0] * patch[1] * patch[2];
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) + Math.cos(i * 0.011) + (i % 7) * 0.1);
  const spec = validationTransform(m.data?.transform);
  const t =
    spec === undefined
      ? { data, shape, anon: undefined }
      : applyBatchTransform(spec, { data, shape, anon: undefined }, 11);
  return {
    x: tf.tensor5d(t.data, t.shape),
    target: "target" in t ? tf.tensor5d(t.target, t.shape) : undefined,
    aux: "aux" in t ? tf.tensor(t.aux.data, t.aux.shape) : undefined,
  };
}

function networkFor(c: Case, m: PretrainMethod): Network {
  return createNetwork(c.arch, { inChannels: 1, outChannels: m.outChannels(1), ...c.netOptions });
}

const col = (p: MethodPreview, label: RegExp): tf.Tensor5D => {
  const c = p.columns.find((x) => label.test(x.label));
  assert.ok(c !== undefined, `no column ${String(label)} in ${p.columns.map((x) => x.label).join(", ")}`);
  return c.volume;
};

/** The loss recomputed from the pictures, where the pictures determine it. */
function lossFromPreview(method: string, p: MethodPreview): number | undefined {
  return tf.tidy(() => {
    if (["mae", "simmim", "spark"].includes(method)) {
      const x = col(p, /^input$/);
      const masked = tf.sub(1, col(p, /^mask/));
      return tf
        .div(tf.sum(tf.mul(tf.squaredDifference(col(p, /^reconstruction$/), x), masked)), tf.sum(masked))
        .dataSync()[0];
    }
    if (method === "models-genesis")
      return tf.mean(tf.squaredDifference(col(p, /^restoration$/), col(p, /^original/))).dataSync()[0];
    return undefined;
  });
}

test("every registered method has a preview", () => {
  for (const key of methodKeys()) {
    const entry = getMethod(key);
    for (const fam of entry.families)
      assert.equal(
        typeof entry.create(entry.optionsSchema.parse({}) as never, fam).preview,
        "function",
        `${key} (${fam}) has no preview`,
      );
  }
  assert.deepEqual(
    [...new Set(CASES.map((c) => c.method))].sort(),
    methodKeys().sort(),
    "a method without a preview test case",
  );
});

for (const c of CASES) {
  test(`preview of ${c.name}: grid shapes, same forward pass as the loss, no tensor leak`, () => {
    const entry = getMethod(c.method);
    const family = c.arch.startsWith("eva") ? "vit" : "cnn";
    const m = entry.create(entry.optionsSchema.parse(c.options ?? {}), family);
    const net = networkFor(c, m);
    const mb = loadedBatch(m, c.patch, c.rows);
    const before = tf.memory().numTensors;
    const ctx = { training: false, seed: 5 };
    try {
      const loss = tf.tidy(() => m.loss(net, mb, ctx).dataSync()[0]!);
      let rowLabels: readonly string[] | undefined;
      let fromPreview: number | undefined;
      let kinds: string[] = [];
      const vols = tf.tidy(() => {
        const p = m.preview!(net, mb, ctx);
        assert.ok(p.caption.length > 20 && p.columns.length >= 2);
        rowLabels = p.rowLabels;
        kinds = p.columns.map((x) => x.kind);
        fromPreview = lossFromPreview(c.method, p);
        return p.columns.map((x) => tf.clone(x.volume));
      });
      const R = vols[0]!.shape[0];
      for (const v of vols) {
        assert.equal(v.rank, 5);
        assert.equal(v.shape[0], R, "columns differ in row count");
        assert.ok(
          v.shape.slice(1, 4).every((d) => d >= 2),
          `not a volume: ${v.shape.join("x")}`,
        );
        assert.ok(Array.from(v.dataSync()).every(Number.isFinite));
      }
      vols.forEach((v, i) => {
        if (kinds[i] === "map")
          assert.ok(
            Array.from(v.dataSync()).every((x) => x >= 0 && x <= 1),
            "a map column outside [0, 1]",
          );
      });
      if (rowLabels !== undefined) assert.equal(rowLabels.length, R);
      if (fromPreview !== undefined)
        assert.ok(
          Math.abs(fromPreview - loss) <= 1e-4 * Math.max(1, Math.abs(loss)),
          `loss from the preview ${fromPreview} != loss ${loss}`,
        );
      tf.dispose(vols);
      assert.equal(tf.memory().numTensors, before, "preview leaked tensors");
    } finally {
      tf.dispose([mb.x, mb.target ?? [], mb.aux ?? []]);
      net.dispose();
    }
  });
}

test("VolumeFusion preview: the fused input is the true coefficient map's mix of the two patches", () => {
  const entry = getMethod("volume-fusion");
  const m = entry.create(entry.optionsSchema.parse({ minSide: 2 }), "cnn");
  const c = CASES.find((x) => x.method === "volume-fusion")!;
  const net = networkFor(c, m);
  const mb = loadedBatch(m, c.patch, 2);
  try {
    const err = tf.tidy(() => {
      const p = m.preview!(net, mb, { training: false, seed: 3 });
      const a = col(p, /^true coefficients$/);
      const mix = tf.add(tf.mul(a, col(p, /^foreground/)), tf.mul(tf.sub(1, a), col(p, /^background/)));
      return tf.max(tf.abs(tf.sub(mix, col(p, /^fused input$/)))).dataSync()[0]!;
    });
    assert.ok(err < 1e-5, `fused input is not the mix: max error ${err}`);
  } finally {
    tf.dispose([mb.x]);
    net.dispose();
  }
});

test("SwinUNETR preview: the reconstruction column gives the loss's L1 reconstruction term", async () => {
  const { SwinPretext, SwinPretextOptionsSchema } = await import("./swin-pretext.js");
  const m = new SwinPretext(SwinPretextOptionsSchema.parse({}));
  const c = CASES.find((x) => x.method === "swin-pretext")!;
  const net = networkFor(c, m);
  const mb = loadedBatch(m, c.patch, 2);
  try {
    const [rec, fromPreview] = tf.tidy(() => {
      const terms = m.terms(net, mb, { training: false, seed: 2 });
      const p = m.preview(net, mb, { training: false, seed: 2 });
      return [
        terms.rec.dataSync()[0]!,
        tf.mean(tf.abs(tf.sub(col(p, /^reconstruction$/), col(p, /^rotated view/)))).dataSync()[0]!,
      ];
    });
    assert.ok(Math.abs(rec - fromPreview) < 1e-5, `${rec} vs ${fromPreview}`);
  } finally {
    tf.dispose([mb.x, mb.target ?? [], mb.aux ?? []]);
    net.dispose();
  }
});
