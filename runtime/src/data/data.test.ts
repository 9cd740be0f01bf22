import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { writeRawVolume } from "../../../test/helpers/raw-volume.js";
import { ConfigError, DataError, fileSystemError } from "../errors.js";
import { augmentSample, centreCrop, flip, MAE_AUGMENT, NO_AUGMENT } from "./augment.js";
import { DataLoader } from "./loader.js";
import { MODELS_GENESIS_DEFAULTS, modelsGenesisBatch } from "./models-genesis.js";
import { cornerBounds, initialPatchSize } from "./patch.js";
import { Rng, deriveSeed } from "./rng.js";
import { filterImages, type TrainingImage } from "./source.js";
import { loadOrCreateSplit, makeSplit, numValidationSubjects, readSplit } from "./split.js";

const READER = new URL("../../../test/helpers/raw-volume.ts", import.meta.url).href;

test("Rng: deterministic, state round-trips, int inclusive, sample distinct", () => {
  const a = new Rng(7);
  const b = new Rng(7);
  for (let i = 0; i < 5; i++) assert.equal(a.nextU32(), b.nextU32());
  const s = a.state();
  const x = [a.float(), a.float()];
  const c = Rng.fromState(s);
  assert.deepEqual([c.float(), c.float()], x);
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(a.int(-2, 2));
  assert.deepEqual([...seen].sort(), [-1, -2, 0, 1, 2].sort());
  const k = a.sample(10, 10);
  assert.deepEqual(
    [...k].sort((p, q) => p - q),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.notEqual(deriveSeed(1, "train", 0), deriveSeed(1, "train", 1));
  assert.notEqual(deriveSeed(1, "train", 0), deriveSeed(1, "val", 0));
});

test("split: n_val = min(1000, max(N//100, 5)) capped at N-1, sorted subjects, reproducible, disjoint", () => {
  assert.equal(numValidationSubjects(34191), 341);
  assert.equal(numValidationSubjects(200000), 1000);
  assert.equal(numValidationSubjects(50), 5);
  assert.equal(numValidationSubjects(3), 2);
  assert.equal(numValidationSubjects(1), 0);
  const ids = Array.from({ length: 40 }, (_, i) => `ds1__sub-${String(i).padStart(2, "0")}`);
  const s1 = makeSplit([...ids].reverse());
  const s2 = makeSplit(ids);
  assert.deepEqual(s1, s2);
  assert.equal(s1.val.length, 5);
  assert.equal(s1.train.length, 35);
  assert.deepEqual([...s1.train, ...s1.val].sort(), ids);
  assert.deepEqual(s1.train, [...s1.train].sort());
});

test("split: persisted as splits_final.json and reused; a broken file names file and field", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-split-"));
  try {
    const f = join(dir, "splits_final.json");
    const a = await loadOrCreateSplit(f, ["a", "b", "c", "d", "e", "f", "g"]);
    assert.equal(a.created, true);
    assert.deepEqual(JSON.parse(readFileSync(f, "utf8")), a.split);
    const b = await loadOrCreateSplit(f, ["zzz"]);
    assert.equal(b.created, false);
    assert.deepEqual(b.split, a.split);
    writeFileSync(f, JSON.stringify({ train: ["a"], val: [3] }));
    assert.throws(
      () => readSplit(f),
      (e: unknown) => e instanceof DataError && e.message.includes(f) && e.message.includes("val.0"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("split: a read-only data folder (EROFS) gives the same split without writing it; other write errors still fail", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-split-ro-"));
  try {
    const f = join(dir, "splits_final.json");
    const ids = ["a", "b", "c", "d", "e", "f", "g"];
    const fail = (code: string) => (): Promise<void> =>
      Promise.reject(Object.assign(new Error(`${code}: write ${f}`), { code }));
    const ro = await loadOrCreateSplit(f, ids, fail("EROFS"));
    assert.deepEqual(ro, { split: makeSplit(ids), created: true, persisted: false });
    assert.ok(!existsSync(f));
    // what the default writer (writeJsonAtomic) really throws: an EnvironmentError with the errno error as its cause
    const wrapped = (code: string) => (): Promise<void> =>
      Promise.reject(fileSystemError(Object.assign(new Error(`${code}: write ${f}`), { code }), f) ?? new Error(code));
    assert.deepEqual(await loadOrCreateSplit(f, ids, wrapped("EROFS")), {
      split: makeSplit(ids),
      created: true,
      persisted: false,
    });
    await assert.rejects(loadOrCreateSplit(f, ids, fail("ENOSPC")), /ENOSPC/);
    await assert.rejects(loadOrCreateSplit(f, ids, wrapped("ENOSPC")), /no space left/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("initial patch size: 160^3 -> 257^3 (nnssl `compute_initial_patch_size.py`); corner bounds with padding", () => {
  assert.deepEqual(initialPatchSize([160, 160, 160]), [257, 257, 257]);
  // image 300, P=257, F=160: need=97, lb=-49, ub=300+48+1-257=92
  assert.deepEqual(cornerBounds([300, 300, 300], [257, 257, 257], [160, 160, 160]), {
    lb: [-49, -49, -49],
    ub: [92, 92, 92],
  });
  // image smaller than P: need = P - shape
  assert.deepEqual(cornerBounds([10, 40, 40], [32, 32, 32], [32, 32, 32]), { lb: [-11, 0, 0], ub: [-11, 8, 8] });
});

test("augment: identity rotation/scale equals the centre crop; mirror flips the axis; MAE chain keeps the shape", () => {
  const P = [6, 6, 6] as const;
  const F = [4, 4, 4] as const;
  const data = Float32Array.from({ length: 216 }, (_, i) => i);
  const crop = centreCrop({ data, mask: undefined }, 1, P, F);
  assert.equal(crop.data[0], (1 * 6 + 1) * 6 + 1);
  // pScale=1 with the scale drawn from U(0.7,1)|U(1,1.4) is not identity; use rotation with maxAngle 0 instead
  const { sample, decision } = augmentSample(new Rng(1), { data, mask: undefined }, 1, P, F, {
    pRotation: 1,
    maxAngleRad: 0,
    pScale: 0,
    mirror: false,
  });
  assert.deepEqual(decision.rotation, [0, 0, 0]);
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(sample.data[i]! - crop.data[i]!) < 1e-4);
  const f = flip(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 1, [2, 2, 2], [false, false, true]);
  assert.deepEqual(Array.from(f), [1, 0, 3, 2, 5, 4, 7, 6]);
  const mask = new Float32Array(216).fill(1);
  const full = augmentSample(new Rng(3), { data, mask }, 1, P, F, { ...MAE_AUGMENT, pRotation: 1, pScale: 1 });
  assert.equal(full.sample.data.length, 64);
  assert.ok(full.sample.mask!.every((v) => v === 1 || v === -1));
  const small = data.subarray(0, 64);
  const none = augmentSample(new Rng(3), { data: small, mask: undefined }, 1, F, F, NO_AUGMENT);
  assert.deepEqual(Array.from(none.sample.data), Array.from(small));
});

test("filterImages: subjects of the split and modality filter", () => {
  const ims: TrainingImage[] = [
    { uniqueId: "1", uniqueSubjectId: "s1", modality: "T1w", image: "a" },
    { uniqueId: "2", uniqueSubjectId: "s1", modality: "FA", image: "b" },
    { uniqueId: "3", uniqueSubjectId: "s2", modality: "T1w", image: "c" },
  ];
  assert.deepEqual(
    filterImages(ims, new Set(["s1"]), { modalities: ["T1w"] }).map((i) => i.uniqueId),
    ["1"],
  );
  assert.equal(filterImages(ims, new Set(["s1", "s2"])).length, 3);
});

test("loader: same batches with 0 or 2 worker threads, in order; resume from a batch index continues the sequence", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loader-"));
  try {
    const images: TrainingImage[] = [];
    for (let i = 0; i < 3; i++) {
      const shape = [1, 12 + i, 10, 9];
      const n = shape.reduce((a, b) => a * b, 1);
      writeRawVolume(
        join(dir, `im${i}`),
        Float32Array.from({ length: n }, (_, k) => Math.sin(k * 0.37 + i)),
        shape,
      );
      writeRawVolume(
        join(dir, `im${i}__anon`),
        Float32Array.from({ length: n / shape[0]! }, (_, k) => (k % 7 === 0 ? 1 : 0)),
        [1, ...shape.slice(1)],
      );
      images.push({
        uniqueId: `im${i}`,
        uniqueSubjectId: `s${i}`,
        modality: "T1w",
        image: join(dir, `im${i}`),
        anonMask: join(dir, `im${i}__anon`),
      });
    }
    const opts = {
      images,
      batchSize: 2,
      patchSize: [8, 8, 8] as const,
      loaderPatchSize: [12, 12, 12] as const,
      augment: MAE_AUGMENT,
      withAnon: true,
      seed: 5,
      stream: "train",
      prefetch: 3,
      readerModule: READER,
    };
    const inProc = new DataLoader({ ...opts, numWorkers: 0 });
    const threaded = new DataLoader({ ...opts, numWorkers: 2 });
    const a = [];
    const b = [];
    for (let i = 0; i < 5; i++) {
      a.push(await inProc.next());
      b.push(await threaded.next());
    }
    assert.deepEqual(
      b.map((x) => x.index),
      [0, 1, 2, 3, 4],
    );
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(b[i]!.keys, a[i]!.keys);
      assert.deepEqual(Array.from(b[i]!.data), Array.from(a[i]!.data));
      assert.deepEqual(Array.from(b[i]!.anon!), Array.from(a[i]!.anon!));
    }
    assert.deepEqual(a[0]!.shape, [2, 8, 8, 8, 1]);
    assert.ok(a.some((x) => x.data.some((v) => v !== 0)));
    assert.deepEqual(threaded.state(), { stream: "train", nextIndex: 5 });
    const resumed = new DataLoader({ ...opts, numWorkers: 1, startIndex: 3 });
    const r3 = await resumed.next();
    assert.equal(r3.index, 3);
    assert.deepEqual(Array.from(r3.data), Array.from(a[3]!.data));
    await Promise.all([inProc.close(), threaded.close(), resumed.close()]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loader: a method\'s batch transform (models-genesis) runs in the workers; same input/target/anon with 0 or 2 workers, = the corruption of the plain batch seeded by deriveSeed(batch seed, "transform")', async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loader-"));
  try {
    const images: TrainingImage[] = [];
    for (let i = 0; i < 2; i++) {
      const shape = [1, 14, 12 + i, 12];
      const n = shape.reduce((a, b) => a * b, 1);
      writeRawVolume(
        join(dir, `im${i}`),
        Float32Array.from({ length: n }, (_, k) => Math.sin(k * 0.21 + i)),
        shape,
      );
      writeRawVolume(
        join(dir, `im${i}__anon`),
        Float32Array.from({ length: n }, (_, k) => (k % 5 === 0 ? 1 : 0)),
        shape,
      );
      images.push({
        uniqueId: `im${i}`,
        uniqueSubjectId: `s${i}`,
        modality: "T1w",
        image: join(dir, `im${i}`),
        anonMask: join(dir, `im${i}__anon`),
      });
    }
    const cfg = { ...MODELS_GENESIS_DEFAULTS, shuffleBlocks: 50, bezierPoints: 2000, flipRate: 0.9 };
    const base = {
      images,
      batchSize: 3,
      patchSize: [10, 10, 10] as const,
      loaderPatchSize: [10, 10, 10] as const,
      augment: NO_AUGMENT,
      withAnon: true,
      seed: 11,
      stream: "train",
      prefetch: 2,
      readerModule: READER,
    };
    const transform = { key: "models-genesis", options: cfg, validation: true };
    const plain = new DataLoader({ ...base, numWorkers: 0 });
    const inProc = new DataLoader({ ...base, transform, numWorkers: 0 });
    const threaded = new DataLoader({ ...base, transform, numWorkers: 2 });
    for (let i = 0; i < 3; i++) {
      const [p, a, b] = [await plain.next(), await inProc.next(), await threaded.next()];
      const want = modelsGenesisBatch(
        p.data,
        p.shape,
        deriveSeed(deriveSeed(11, "train", i), "transform"),
        cfg,
        p.anon,
      );
      assert.deepEqual(a.shape, p.shape);
      assert.deepEqual(Array.from(a.data), Array.from(want.input));
      assert.deepEqual(Array.from(a.target!), Array.from(want.target));
      assert.deepEqual(Array.from(a.anon!), Array.from(want.anon!));
      assert.notDeepEqual(Array.from(a.data), Array.from(a.target!)); // corrupted
      assert.deepEqual(Array.from(b.data), Array.from(a.data));
      assert.deepEqual(Array.from(b.target!), Array.from(a.target!));
      assert.deepEqual(Array.from(b.anon!), Array.from(a.anon!));
    }
    const bad = new DataLoader({ ...base, transform: { key: "nope", options: {}, validation: false }, numWorkers: 0 });
    await assert.rejects(bad.next(), (e: unknown) => e instanceof ConfigError && e.message.includes("nope"));
    await Promise.all([plain.close(), inProc.close(), threaded.close(), bad.close()]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loader: a transform that changes the batch shape (voco-crops) and adds an aux array: same crops and truth with 0 or 2 workers; patches counted from keys", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-loader-"));
  try {
    const shape = [1, 18, 17, 9];
    const n = shape.reduce((a, b) => a * b, 1);
    writeRawVolume(
      join(dir, "im0"),
      Float32Array.from({ length: n }, (_, k) => Math.sin(k * 0.13)),
      shape,
    );
    const images: TrainingImage[] = [
      { uniqueId: "im0", uniqueSubjectId: "s0", modality: "T1w", image: join(dir, "im0") },
    ];
    const base = {
      images,
      batchSize: 2,
      patchSize: [16, 16, 4] as const,
      loaderPatchSize: [16, 16, 4] as const,
      augment: NO_AUGMENT,
      withAnon: false,
      seed: 3,
      stream: "train",
      prefetch: 2,
      readerModule: READER,
      transform: {
        key: "voco-crops",
        options: { baseCrops: [4, 4, 1], targetCrops: 2, augment: true },
        validation: true,
      },
    };
    const inProc = new DataLoader({ ...base, numWorkers: 0 });
    const threaded = new DataLoader({ ...base, numWorkers: 2 });
    let patches = 0;
    threaded.onBatch = (p) => (patches += p);
    for (let i = 0; i < 2; i++) {
      const [a, b] = [await inProc.next(), await threaded.next()];
      assert.deepEqual(a.shape, [2 * (16 + 2), 4, 4, 4, 1]);
      assert.deepEqual(b.shape, a.shape);
      assert.deepEqual(b.aux!.shape, [2, 2, 16]);
      assert.deepEqual(Array.from(b.data), Array.from(a.data));
      assert.deepEqual(Array.from(b.aux!.data), Array.from(a.aux!.data));
    }
    assert.ok(patches >= 4 && patches % 2 === 0); // loaded patches (keys), not crops
    await Promise.all([inProc.close(), threaded.close()]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loader: an unreadable image is a DataError naming the file", async () => {
  const loader = new DataLoader({
    images: [{ uniqueId: "x", uniqueSubjectId: "s", modality: "T1w", image: "/nonexistent/x.zarr" }],
    batchSize: 1,
    patchSize: [4, 4, 4],
    loaderPatchSize: [4, 4, 4],
    augment: NO_AUGMENT,
    withAnon: false,
    seed: 1,
    stream: "train",
    prefetch: 1,
    numWorkers: 1,
    readerModule: READER,
  });
  await assert.rejects(loader.next(), (e: unknown) => e instanceof Error && e.message.includes("/nonexistent/x.zarr"));
  await loader.close();
});
