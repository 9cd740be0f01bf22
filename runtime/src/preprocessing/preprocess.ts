/**
 * `ssl3d preprocess`: every image of the collection (or this part's slice of it) through the configuration's
 * preprocessing into the Zarr store, in parallel, resumable (finished images are verified and skipped), and
 * with per-image failures either failing the run or being skipped and listed (`--on-error`).
 */
import { promises as fs } from "node:fs";
import { relativizePath, uniqueId, type Collection, type IndependentImage } from "../config/collection.js";
import { requireRoot } from "../config/env.js";
import { processEnv, type Env } from "../config/settings.js";
import { ConfigError, EnvironmentError, oneLine } from "../errors.js";
import { removeStaleTemps, writeJsonAtomic } from "../io/atomic.js";
import { assertInsideReal } from "../io/safe-path.js";
import { readCollection, writeCollection } from "../io/collection-file.js";
import { log } from "../observability/log.js";
import { createProgress } from "../observability/progress.js";
import { DEFAULT_PLANS_NAME, planConfiguration, readPlansFile, type Plan } from "../config/plans.js";
import {
  collectionCopyFile,
  collectionFile,
  fingerprintFile,
  dataIdentifierDir,
  failedImagesFile,
  imageOutputs,
  lockDataset,
  plansFile as plansFileOf,
  preprocessedDatasetDir,
  validImagesFile,
} from "../config/layout.js";
import { runTasks } from "./pool.js";
import type { ImageTask } from "./run-image.js";
import type { FailedImage, OnError } from "./tasks.js";
import { flattenCollection } from "../config/collection.js";

export interface PreprocessOptions {
  /** Workers per configuration: one number for all, or one per configuration. */
  readonly np?: number | readonly number[];
  readonly part?: number;
  readonly totalParts?: number;
  readonly plansName?: string;
  readonly onError?: OnError;
  readonly env?: Env;
  readonly progress?: boolean;
}

export interface ConfigSummary {
  readonly configuration: string;
  readonly images: number;
  readonly done: number;
  readonly skipped: number;
  readonly valid: number;
  readonly failed: FailedImage[];
  readonly dataDir: string;
}

export interface PreprocessSummary {
  readonly images: number;
  readonly valid: number;
  readonly failed: number;
  readonly configurations: string[];
  readonly plansFile: string;
  readonly preprocessedDir: string;
  readonly perConfiguration: ConfigSummary[];
}

/** Upstream's part slicing without its lost remainder: `[floor(p*n/t), floor((p+1)*n/t))`. */
export function partSlice<T>(items: readonly T[], part: number, total: number): T[] {
  if (!Number.isInteger(total) || total < 1)
    throw new ConfigError(`--total-parts must be a positive integer, got ${total}`);
  if (!Number.isInteger(part) || part < 0 || part >= total)
    throw new ConfigError(`--part must be in 0..${total - 1}, got ${part}`);
  const n = items.length;
  return items.slice(Math.floor((part * n) / total), Math.floor(((part + 1) * n) / total));
}

/** The IndependentImage as written to valid_imgs.json (paths relative to $nnssl_raw where possible). */
function serializeImage(i: IndependentImage, env: Env): IndependentImage {
  const m = i.associated_masks;
  return {
    ...i,
    image_path: relativizePath(i.image_path, env),
    associated_masks: {
      anonymization_mask: m.anonymization_mask === null ? null : relativizePath(m.anonymization_mask, env),
      anatomy_mask: m.anatomy_mask === null ? null : relativizePath(m.anatomy_mask, env),
    },
  };
}

/** The collection with every image/mask path pointing at its preprocessed `.zarr` (written `$nnssl_preprocessed`-relative). */
export function preprocessedCollection(c: Collection, dataDir: string): Collection {
  const copy = structuredClone(c);
  for (const d of Object.values(copy.datasets))
    for (const s of Object.values(d.subjects))
      for (const e of Object.values(s.sessions))
        for (const img of e.images) {
          const ii = {
            collection_name: c.collection_name,
            dataset_index: d.dataset_index,
            subject_id: s.subject_id,
            session_id: e.session_id,
            image_name: img.name,
          } as IndependentImage;
          const out = imageOutputs(dataDir, ii);
          img.image_path = out.image;
          if (img.associated_masks !== null) {
            img.associated_masks = {
              anonymization_mask: img.associated_masks.anonymization_mask === null ? null : out.anon,
              anatomy_mask: img.associated_masks.anatomy_mask === null ? null : out.anat,
            };
          }
        }
  return copy;
}

async function readJsonList(file: string): Promise<IndependentImage[] | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as IndependentImage[];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Record this part's valid images; when every part's list exists, merge them (in part order) into
 * `valid_imgs.json` and delete the part files. Returns the merged list when it was written.
 */
async function recordValid(
  dir: string,
  valid: IndependentImage[],
  part: number,
  total: number,
): Promise<IndependentImage[] | undefined> {
  const root = { root: dir };
  if (total <= 1) {
    await writeJsonAtomic(validImagesFile(dir), valid, 2, root);
    return valid;
  }
  await writeJsonAtomic(validImagesFile(dir, { part, total }), valid, 2, root);
  const lists: IndependentImage[][] = [];
  for (let p = 0; p < total; p++) {
    const l = await readJsonList(validImagesFile(dir, { part: p, total }));
    if (l === undefined) return undefined;
    lists.push(l);
  }
  const merged = lists.flat();
  await writeJsonAtomic(validImagesFile(dir), merged, 2, root);
  for (let p = 0; p < total; p++)
    await fs.rm(assertInsideReal(dir, validImagesFile(dir, { part: p, total })), { force: true });
  return merged;
}

export async function runPreprocess(
  datasetName: string,
  configs: readonly string[],
  opts: PreprocessOptions = {},
): Promise<PreprocessSummary> {
  const env = opts.env ?? processEnv();
  const plansName = opts.plansName ?? DEFAULT_PLANS_NAME;
  const plansFile = plansFileOf(preprocessedDatasetDir(datasetName, env), plansName);
  const plan = readPlansFile(plansFile);
  for (const c of configs) planConfiguration(plan, c, plansFile);
  const nps =
    typeof opts.np === "number" || opts.np === undefined
      ? configs.map(() => (opts.np as number | undefined) ?? 1)
      : [...opts.np];
  if (nps.length === 1 && configs.length > 1) while (nps.length < configs.length) nps.push(nps[0]!);
  if (nps.length !== configs.length)
    throw new ConfigError(`-np: give one number or one per configuration (${configs.length}), got ${nps.length}`);
  requireRoot("nnssl_preprocessed", env);
  const ppDir = preprocessedDatasetDir(datasetName, env);
  const collection = await readCollection(collectionFile(datasetName, env), { env });
  const all = flattenCollection(collection);
  const part = opts.part ?? 0;
  const total = opts.totalParts ?? 1;
  const mine = partSlice(all, part, total);
  const lock = lockDataset(ppDir, "ssl3d preprocess", { part, total });
  try {
    if (total <= 1) await removeStageTemps(ppDir, plansName, configs);
    return await preprocessLocked({
      datasetName,
      configs,
      opts,
      env,
      plan,
      plansName,
      plansFile,
      ppDir,
      collection,
      mine,
      part,
      total,
      nps,
    });
  } finally {
    lock.release();
  }
}

/**
 * Temporary files of the dataset-level lists a killed run was writing (`.<file>.tmp-<pid>-<hex>`). Only by a
 * whole-folder writer: parts run side by side and one of them may be writing the merged list right now.
 */
async function removeStageTemps(ppDir: string, plansName: string, configs: readonly string[]): Promise<void> {
  await removeStaleTemps(ppDir, [
    fingerprintFile(""),
    plansFileOf("", plansName),
    validImagesFile(""),
    ...configs.map((c) => collectionCopyFile("", c)),
  ]);
  for (const c of configs)
    await removeStaleTemps(dataIdentifierDir(ppDir, plansName, c), [validImagesFile(""), failedImagesFile("")]);
}

interface LockedArgs {
  datasetName: string;
  configs: readonly string[];
  opts: PreprocessOptions;
  env: Env;
  plan: Plan;
  plansName: string;
  plansFile: string;
  ppDir: string;
  collection: Collection;
  mine: IndependentImage[];
  part: number;
  total: number;
  nps: number[];
}

async function preprocessLocked(a: LockedArgs): Promise<PreprocessSummary> {
  const { datasetName, configs, opts, env, plan, plansName, plansFile, ppDir, collection, mine, part, total, nps } = a;
  const onError = opts.onError ?? "fail";
  const perConfiguration: ConfigSummary[] = [];

  for (const [ci, config] of configs.entries()) {
    const dataDir = dataIdentifierDir(ppDir, plansName, config);
    await fs.mkdir(dataDir, { recursive: true });
    await writeCollection(collectionCopyFile(ppDir, config), preprocessedCollection(collection, dataDir), { env });
    const tasks: ImageTask[] = mine.map((image) => ({ image, plan, config, dataDir }));
    const ok: boolean[] = new Array<boolean>(tasks.length).fill(false);
    const failed: FailedImage[] = [];
    let done = 0;
    let skipped = 0;
    let firstError: Error | undefined;
    const progress = createProgress(
      `preprocess ${config}`,
      tasks.length,
      opts.progress === false ? { tty: false } : {},
    );
    log().info(
      { dataset: datasetName, configuration: config, images: tasks.length, part, totalParts: total, np: nps[ci] },
      "preprocessing",
    );
    await runTasks(
      "preprocess",
      tasks,
      nps[ci]!,
      (o) => {
        const img = mine[o.index]!;
        if (o.ok) {
          ok[o.index] = true;
          if (o.result.status === "skipped") skipped++;
          else done++;
          progress.tick({ image: o.result.uniqueId, status: o.result.status });
        } else {
          // a full or read-only disk fails every image alike: stop the run whatever --on-error says
          if (o.error instanceof EnvironmentError) throw o.error;
          const reason = oneLine(o.error);
          failed.push({ unique_id: uniqueId(img), image_path: img.image_path, reason });
          log().error({ image: img.image_path, reason, onError }, `preprocessing failed: ${reason}`);
          firstError ??= o.error;
          progress.tick({ image: uniqueId(img), status: "failed" });
        }
      },
      { stopOnError: onError === "fail", fileOf: (i) => mine[i]!.image_path },
    );
    progress.stop();
    if (firstError !== undefined && onError === "fail") throw firstError;
    const valid = mine.filter((_, i) => ok[i]).map((i) => serializeImage(i, env));
    failed.sort((a, b) => a.unique_id.localeCompare(b.unique_id));
    await writeJsonAtomic(failedImagesFile(dataDir, { part, total }), failed, 2, { root: dataDir });
    const merged = await recordValid(dataDir, valid, part, total);
    if (merged !== undefined) await writeJsonAtomic(validImagesFile(ppDir), merged, 2, { root: ppDir }); // upstream location (last configuration wins)
    perConfiguration.push({
      configuration: config,
      images: tasks.length,
      done,
      skipped,
      valid: valid.length,
      failed,
      dataDir,
    });
    log().info({ configuration: config, done, skipped, failed: failed.length }, `preprocessing ${config} finished`);
  }
  return {
    images: mine.length,
    valid: Math.min(...perConfiguration.map((c) => c.valid), mine.length),
    failed: Math.max(0, ...perConfiguration.map((c) => c.failed.length)),
    configurations: [...configs],
    plansFile,
    preprocessedDir: ppDir,
    perConfiguration,
  };
}
