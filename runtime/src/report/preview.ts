/**
 * The method's pictures of validation patches for the run report: the network of the latest checkpoint, the
 * method rebuilt from the checkpoint's trainer options, and the first validation batch of the run (the validation
 * loader's stream, transform and seed as in training/loop.ts), passed through the method's own `preview` (the same
 * forward pass as its loss) inside `tf.tidy`. Each volume becomes three orthogonal centre slices as PNG data URIs.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { PNG } from "pngjs";
import { NO_AUGMENT } from "../data/augment.js";
import type { Batch } from "../data/batch.js";
import { validationTransform } from "../data/batch-transforms.js";
import { DataLoader } from "../data/loader.js";
import { deriveSeed } from "../data/rng.js";
import { filterImages } from "../data/source.js";
import { readSplit } from "../data/split.js";
import { EnvironmentError } from "../errors.js";
import type { MethodBatch, PretrainMethod } from "../methods/method.js";
import { getMethod } from "../methods/registry.js";
import { readSafetensors } from "../models/safetensors.js";
import { networkFromSafetensors } from "../models/network-io.js";
import { TrainerOptionsSchema, type TrainerOptions } from "../training/registry.js";
import { listImages } from "../training/run.js";
import type { CheckpointEntry } from "./run-folder.js";
import { optionalRoot } from "../config/env.js";
import { preprocessedDatasetDir, splitsFile } from "../config/layout.js";

export interface SliceImage {
  /** `data:image/png;base64,...` */
  readonly src: string;
  readonly width: number;
  readonly height: number;
}

export interface PreviewCell {
  /** Slices through the centre: normal to x, y and z. */
  readonly slices: readonly [SliceImage, SliceImage, SliceImage];
}

export interface PreviewGrid {
  readonly caption: string;
  readonly columns: readonly string[];
  readonly rows: readonly { readonly label: string; readonly cells: readonly PreviewCell[] }[];
  /** What the pictures were computed from. */
  readonly source: { readonly checkpoint: string; readonly epoch: number; readonly images: readonly string[] };
}

/** Grey levels of a [H, W] slice, windowed to [lo, hi], as a PNG data URI. */
export function slicePng(values: Float32Array, height: number, width: number, lo: number, hi: number): SliceImage {
  const png = new PNG({ width, height });
  const span = hi - lo > 1e-12 ? hi - lo : 1;
  for (let i = 0; i < width * height; i++) {
    const v = Math.round(Math.min(1, Math.max(0, (values[i]! - lo) / span)) * 255);
    png.data[4 * i] = v;
    png.data[4 * i + 1] = v;
    png.data[4 * i + 2] = v;
    png.data[4 * i + 3] = 255;
  }
  return { src: `data:image/png;base64,${PNG.sync.write(png).toString("base64")}`, width, height };
}

/** The three centre slices of channel 0 of a C-order [X, Y, Z, C] volume: (Y×Z at x/2), (X×Z at y/2), (X×Y at z/2). */
export function centreSlices(
  vol: Float32Array,
  dims: readonly [number, number, number, number],
): [Float32Array, [number, number]][] {
  const [X, Y, Z, C] = dims;
  const at = (x: number, y: number, z: number) => vol[((x * Y + y) * Z + z) * C]!;
  const cx = Math.floor(X / 2);
  const cy = Math.floor(Y / 2);
  const cz = Math.floor(Z / 2);
  const sx = new Float32Array(Y * Z);
  for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) sx[y * Z + z] = at(cx, y, z);
  const sy = new Float32Array(X * Z);
  for (let x = 0; x < X; x++) for (let z = 0; z < Z; z++) sy[x * Z + z] = at(x, cy, z);
  const sz = new Float32Array(X * Y);
  for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) sz[x * Y + y] = at(x, y, cz);
  return [
    [sx, [Y, Z]],
    [sy, [X, Z]],
    [sz, [X, Y]],
  ];
}

/** Intensity window of a row: the 1st and 99th percentile of its input volume. */
export function percentileWindow(values: Float32Array): [number, number] {
  const s = Float32Array.from(values).sort();
  if (s.length === 0) return [0, 1];
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))]!;
  return [q(0.01), q(0.99)];
}

function batchTensors(b: Batch): MethodBatch {
  const [B, X, Y, Z] = b.shape;
  return {
    x: tf.tensor5d(b.data, b.shape),
    anon: b.anon === undefined ? undefined : tf.tensor5d(b.anon, [B, X, Y, Z, 1]),
    target: b.target === undefined ? undefined : tf.tensor5d(b.target, b.shape),
    aux: b.aux === undefined ? undefined : tf.tensor(b.aux.data, b.aux.shape),
  };
}

/** The run's first validation batch, loaded as the validation loader of training/loop.ts loads it. */
async function validationBatch(
  o: TrainerOptions,
  initArgs: Record<string, unknown>,
  needs: Pick<PretrainMethod, "data" | "needsAnon">,
  rows: number,
): Promise<Batch> {
  const dataset = String(initArgs.dataset_name);
  const plans = String(initArgs.plans_name);
  const config = String(initArgs.configuration_name);
  if (optionalRoot("nnssl_preprocessed") === undefined)
    throw new EnvironmentError("nnssl_preprocessed is not set: the validation patches cannot be loaded");
  const all = await listImages(dataset, config, plans);
  const splitFile = splitsFile(preprocessedDatasetDir(dataset));
  const split = existsSync(splitFile) ? readSplit(splitFile) : undefined;
  const filter = { modalities: o.modalities };
  const val = split === undefined ? [] : filterImages(all, new Set(split.val), filter);
  const images = val.length > 0 ? val : filterImages(all, new Set(all.map((i) => i.uniqueSubjectId)), filter);
  if (images.length === 0) throw new EnvironmentError(`no preprocessed images of ${dataset} ${plans}_${config} left`);
  const data = needs.data ?? {};
  const transform = validationTransform(data.transform);
  const loader = new DataLoader({
    images,
    batchSize: rows * (data.imagesPerSample ?? 1),
    patchSize: o.patchSize,
    loaderPatchSize: o.patchSize,
    augment: NO_AUGMENT,
    withAnon: needs.needsAnon,
    seed: o.seed,
    numWorkers: 0,
    prefetch: 1,
    stream: "val",
    startIndex: 0,
    ...(data.crop === undefined ? {} : { crop: data.crop }),
    ...(transform === undefined ? {} : { transform }),
  });
  try {
    return await loader.next();
  } finally {
    await loader.close();
  }
}

/** Rows of preview samples: 2, or 1 for patches above 64³ (a forward pass of a full-size network on CPU). */
function previewRows(o: TrainerOptions): number {
  return o.patchSize[0] * o.patchSize[1] * o.patchSize[2] > 64 ** 3 ? 1 : 2;
}

/** Compute the method's preview grid from a checkpoint. */
export async function computePreview(ck: CheckpointEntry): Promise<PreviewGrid> {
  const o = TrainerOptionsSchema.parse(ck.meta.init_args.trainer_options);
  const entry = getMethod(o.method);
  const net = networkFromSafetensors(await readSafetensors(ck.file), ck.file);
  try {
    const method = entry.create(o.methodOptions, net.config.family);
    if (method.preview === undefined) throw new EnvironmentError(`method ${o.method} has no preview`);
    const batch = await validationBatch(o, ck.meta.init_args, method, previewRows(o));
    const seed = deriveSeed(o.seed, "val-mask", 0, 0);
    let labels: string[] = [];
    let kinds: ("image" | "map")[] = [];
    let caption = "";
    let rowLabels: readonly string[] | undefined;
    const mb = batchTensors(batch);
    const volumes = tf.tidy(() => {
      const p = method.preview!(net, mb, { training: false, seed });
      caption = p.caption;
      labels = p.columns.map((c) => c.label);
      kinds = p.columns.map((c) => c.kind);
      rowLabels = p.rowLabels;
      // a column may be one of the batch tensors (the input), which are disposed below: own handles
      return p.columns.map((c) => tf.clone(c.volume));
    });
    tf.dispose([mb.x, mb.anon ?? [], mb.target ?? [], mb.aux ?? []]);
    try {
      const grid = await gridOf(volumes, kinds, rowLabels);
      return {
        caption,
        columns: labels,
        rows: grid,
        source: { checkpoint: ck.file, epoch: ck.meta.current_epoch, images: [...new Set(batch.keys)] },
      };
    } finally {
      tf.dispose(volumes);
    }
  } finally {
    net.dispose();
  }
}

async function gridOf(
  volumes: readonly tf.Tensor5D[],
  kinds: readonly ("image" | "map")[],
  rowLabels: readonly string[] | undefined,
): Promise<PreviewGrid["rows"]> {
  const data = await Promise.all(volumes.map((v) => v.data() as Promise<Float32Array>));
  const R = Math.min(...volumes.map((v) => v.shape[0]));
  const rows: { label: string; cells: PreviewCell[] }[] = [];
  for (let r = 0; r < R; r++) {
    const sample = (c: number) => {
      const [, X, Y, Z, C] = volumes[c]!.shape;
      const n = X * Y * Z * C;
      return { vol: data[c]!.subarray(r * n, (r + 1) * n), dims: [X, Y, Z, C] as [number, number, number, number] };
    };
    const firstImage = kinds.indexOf("image");
    const [lo, hi] = firstImage < 0 ? [0, 1] : percentileWindow(sample(firstImage).vol);
    const cells = volumes.map((_, c) => {
      const { vol, dims } = sample(c);
      const [wlo, whi] = kinds[c] === "map" ? [0, 1] : [lo, hi];
      const s = centreSlices(vol, dims).map(([v, [h, w]]) => slicePng(v, h, w, wlo, whi));
      return { slices: [s[0]!, s[1]!, s[2]!] as const };
    });
    rows.push({ label: rowLabels?.[r] ?? `sample ${r}`, cells });
  }
  return rows;
}
