/**
 * Dataset fingerprint (nnssl `src/nnssl/experiment_planning/dataset_fingerprint/default_fingerprint_extractor.py`):
 * every image of `$nnssl_raw/<Dataset>/pretrain_data.json` is read once (in parallel with `-np` worker threads) and its
 * array-axis shape, spacing and intensity statistics recorded in
 * `$nnssl_preprocessed/<Dataset>/dataset_fingerprint.json`. Upstream's `spacings` key (one [a0, a1, a2] per image) is
 * kept so upstream tools can read the file; `images` holds our per-image entries, `failed` the images that could not be
 * read (with `--on-error skip`). An existing fingerprint is reused unless `clean`, or unless it no longer covers
 * exactly the collection's images (then it is recomputed; upstream would reuse it).
 */
import { promises as fs } from "node:fs";
import { flattenCollection, uniqueId, type IndependentImage } from "../config/collection.js";
import { processEnv, type Env } from "../config/settings.js";
import { ConfigError, DataError, oneLine } from "../errors.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { readCollection } from "../io/collection-file.js";
import { log } from "../observability/log.js";
import { createProgress } from "../observability/progress.js";
import { collectionFile, fingerprintFile, lockDataset, preprocessedDatasetDir } from "../config/layout.js";
import { runTasks } from "../preprocessing/pool.js";
import type { FailedImage, FingerprintEntry, OnError } from "../preprocessing/tasks.js";

export interface Fingerprint {
  readonly spacings: [number, number, number][];
  readonly images: FingerprintEntry[];
  readonly failed: FailedImage[];
  readonly dataset_name: string;
  readonly format: "ssl3d-fingerprint/v1";
}

export interface StageOptions {
  readonly np?: number;
  readonly onError?: OnError;
  readonly env?: Env;
  readonly progress?: boolean;
}

export async function loadDatasetImages(datasetName: string, env: Env = processEnv()): Promise<IndependentImage[]> {
  return flattenCollection(await readCollection(collectionFile(datasetName, env), { env }));
}

export async function readFingerprint(datasetName: string, env: Env = processEnv()): Promise<Fingerprint> {
  const file = fingerprintFile(preprocessedDatasetDir(datasetName, env));
  let doc: Partial<Fingerprint>;
  try {
    doc = JSON.parse(await fs.readFile(file, "utf8")) as Partial<Fingerprint>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new ConfigError("no fingerprint: run `ssl3d fingerprint -d ...` first", { file });
    throw new ConfigError(`unreadable fingerprint: ${oneLine(err)}`, { file });
  }
  if (!Array.isArray(doc.spacings)) throw new ConfigError("missing spacings list", { file, field: "spacings" });
  // an upstream fingerprint has only `spacings`
  return {
    spacings: doc.spacings,
    images: doc.images ?? [],
    failed: doc.failed ?? [],
    dataset_name: doc.dataset_name ?? datasetName,
    format: "ssl3d-fingerprint/v1",
  };
}

export async function extractFingerprint(
  datasetName: string,
  opts: StageOptions & { clean?: boolean } = {},
): Promise<{ fingerprint: Fingerprint; file: string; reused: boolean }> {
  const lock = lockDataset(preprocessedDatasetDir(datasetName, opts.env ?? processEnv()), "ssl3d fingerprint");
  try {
    return await fingerprintLocked(datasetName, opts);
  } finally {
    lock.release();
  }
}

async function fingerprintLocked(
  datasetName: string,
  opts: StageOptions & { clean?: boolean },
): Promise<{ fingerprint: Fingerprint; file: string; reused: boolean }> {
  const env = opts.env ?? processEnv();
  const file = fingerprintFile(preprocessedDatasetDir(datasetName, env));
  const images = await loadDatasetImages(datasetName, env);
  if (opts.clean !== true) {
    let fp: Fingerprint | undefined;
    try {
      await fs.access(file);
      fp = await readFingerprint(datasetName, env);
    } catch (err) {
      if (!(err instanceof ConfigError) && (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (fp !== undefined) {
      const have = new Set([...fp.images.map((e) => e.unique_id), ...fp.failed.map((e) => e.unique_id)]);
      const want = images.map(uniqueId);
      if (have.size === want.length && want.every((id) => have.has(id))) {
        log().info({ file }, "reusing existing fingerprint (use --clean to recompute)");
        return { fingerprint: fp, file, reused: true };
      }
      log().warn(
        { file, inFingerprint: have.size, inCollection: want.length },
        "fingerprint does not match the collection's images; recomputing",
      );
    }
  }
  const entries: (FingerprintEntry | undefined)[] = new Array<FingerprintEntry | undefined>(images.length);
  const failed: FailedImage[] = [];
  const onError = opts.onError ?? "fail";
  const progress = createProgress("fingerprint", images.length, opts.progress === false ? { tty: false } : {});
  let firstError: Error | undefined;
  await runTasks(
    "fingerprint",
    images,
    opts.np ?? 1,
    (o) => {
      const img = images[o.index]!;
      if (o.ok) {
        const degenerate = !o.result.intensity.finite
          ? "image contains NaN or Inf"
          : o.result.intensity.nonzero_fraction === 0
            ? "image is zero everywhere (nothing to train on)"
            : undefined;
        if (degenerate !== undefined) {
          const reason = degenerate;
          failed.push({ unique_id: uniqueId(img), image_path: img.image_path, reason });
          log().error({ image: img.image_path, reason }, `fingerprint: ${img.image_path}: ${reason}`);
          firstError ??= new DataError(reason, { file: img.image_path });
        } else entries[o.index] = o.result;
      } else {
        const reason = oneLine(o.error);
        failed.push({ unique_id: uniqueId(img), image_path: img.image_path, reason });
        log().error({ image: img.image_path, reason }, `fingerprint failed: ${reason}`);
        firstError ??= o.error;
      }
      progress.tick({ image: uniqueId(img) });
    },
    { stopOnError: onError === "fail", fileOf: (i) => images[i]!.image_path },
  );
  progress.stop();
  if (firstError !== undefined && onError === "fail") throw firstError;
  const ok = entries.filter((e): e is FingerprintEntry => e !== undefined);
  const fingerprint: Fingerprint = {
    spacings: ok.map((e) => e.spacing),
    images: ok,
    failed,
    dataset_name: datasetName,
    format: "ssl3d-fingerprint/v1",
  };
  await writeJsonAtomic(file, fingerprint);
  log().info({ file, images: ok.length, failed: failed.length }, "fingerprint written");
  return { fingerprint, file, reused: false };
}
