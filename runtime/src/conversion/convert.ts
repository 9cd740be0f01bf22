/**
 * `ssl3d convert folder|bids|openmind`: scan a source, verify every image and mask, and write
 * `$nnssl_raw/DatasetNNN_NAME/pretrain_data.json`. Every file that cannot be used is reported with the reason;
 * `onError` decides whether that fails the conversion (nothing written) or skips those images. Nothing is dropped
 * silently: skipped images and ignored non-NIfTI files are part of the report.
 */
import { readdirSync } from "node:fs";
import * as path from "node:path";
import type { Collection, CollectionCounts, Dataset, Image } from "../config/collection.js";
import { countCollection } from "../config/collection.js";
import { processEnv, type Env } from "../config/settings.js";
import { formatDatasetName, parseDatasetName, requireRoot } from "../config/env.js";
import { ConfigError, DataError, Ssl3dError } from "../errors.js";
import { writeCollection } from "../io/collection-file.js";
import type { NiftiHeader } from "../io/nifti.js";
import { readNifti, readNiftiHeader } from "../io/nifti.js";
import { log } from "../observability/log.js";
import type { Candidate, Problem, ScanResult } from "./scan.js";
import { scanBids, scanFolder, scanOpenMind } from "./scan.js";
import { collectionFile } from "../config/layout.js";

export type SourceKind = "folder" | "bids" | "openmind";
export const SOURCE_KINDS: readonly SourceKind[] = ["folder", "bids", "openmind"];

export interface ConvertOptions {
  readonly kind: SourceKind;
  readonly src: string;
  readonly datasetId: number;
  readonly name: string;
  readonly onError: "skip" | "fail";
  /** Folder mode: modality of every image (default: BIDS suffix when known, else `unknown`). */
  readonly modality?: string | undefined;
  /** `full` (default) decompresses and converts every voxel; `header` only validates headers and sizes. */
  readonly check?: "full" | "header";
  /** Files verified concurrently (default 2). */
  readonly jobs?: number;
  readonly env?: Env;
  /** Called for every problem as it is found (the CLI lists them on stderr). */
  readonly onProblem?: (p: Problem) => void;
}

export interface ConvertReport {
  readonly datasetName: string;
  readonly output: string;
  readonly counts: CollectionCounts;
  readonly skipped: readonly Problem[];
  readonly ignored: readonly string[];
}

async function verifyFile(file: string, check: "full" | "header"): Promise<NiftiHeader["shape"]> {
  if (check === "header") return (await readNiftiHeader(file)).shape;
  return (await readNifti(file)).shape;
}

function reasonOf(err: unknown, file: string): string {
  if (err instanceof Ssl3dError) {
    const prefix = `${file}: `;
    return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

async function verify(c: Candidate, check: "full" | "header"): Promise<Problem | undefined> {
  let shape;
  try {
    shape = await verifyFile(c.file, check);
  } catch (err) {
    return { file: c.file, reason: reasonOf(err, c.file) };
  }
  for (const [kind, m] of [
    ["anonymization", c.anonymizationMask],
    ["anatomy", c.anatomyMask],
  ] as const) {
    if (m === undefined) continue;
    try {
      const ms = await verifyFile(m, check);
      if (ms.join("x") !== shape.join("x"))
        return {
          file: m,
          reason: `${kind} mask shape ${ms.join("x")} differs from its image's ${shape.join("x")} (${c.file})`,
        };
    } catch (err) {
      return { file: m, reason: `${kind} mask of ${c.file}: ${reasonOf(err, m)}` };
    }
  }
  return undefined;
}

/** Build the collection from verified candidates (sorted by dataset, subject, session, name). */
export function buildCollection(
  name: string,
  index: number,
  cands: readonly Candidate[],
  datasetInfo?: ReadonlyMap<string, Record<string, unknown>>,
): Collection {
  const sorted = [...cands].sort(
    (a, b) =>
      cmp(a.dataset, b.dataset) || cmp(a.subject, b.subject) || cmp(a.session, b.session) || cmp(a.name, b.name),
  );
  const datasets: Record<string, Dataset> = {};
  for (const c of sorted) {
    const d = (datasets[c.dataset] ??= {
      dataset_index: c.dataset,
      name: null,
      dataset_info: datasetInfo?.get(c.dataset) ?? null,
      subjects: {},
    });
    const s = (d.subjects[c.subject] ??= { subject_id: c.subject, sessions: {}, subject_info: c.subjectInfo ?? null });
    const e = (s.sessions[c.session] ??= { session_id: c.session, session_info: null, images: [] });
    const img: Image = {
      name: c.name,
      image_path: c.file,
      modality: c.modality,
      image_info: c.imageInfo ?? null,
      associated_masks:
        c.anonymizationMask === undefined && c.anatomyMask === undefined
          ? null
          : { anonymization_mask: c.anonymizationMask ?? null, anatomy_mask: c.anatomyMask ?? null },
    };
    e.images.push(img);
  }
  return { collection_index: index, collection_name: name, datasets };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export async function scanSource(kind: SourceKind, src: string, modality?: string): Promise<ScanResult> {
  switch (kind) {
    case "folder":
      return scanFolder(src, { modality });
    case "bids":
      return scanBids(src);
    case "openmind":
      return scanOpenMind(src);
  }
}

export async function convert(o: ConvertOptions): Promise<ConvertReport> {
  const env = o.env ?? processEnv();
  const datasetName = formatDatasetName(o.datasetId, o.name);
  const raw = requireRoot("nnssl_raw", env);
  const clash = safeList(raw).filter((n) => parseDatasetName(n)?.id === o.datasetId && n !== datasetName);
  if (clash.length > 0)
    throw new ConfigError(
      `dataset ID ${o.datasetId} is already used by ${clash.join(", ")} in nnssl_raw; pick another -d or remove it`,
      { file: raw },
    );

  const scan = await scanSource(o.kind, path.resolve(o.src), o.modality);
  const problems: Problem[] = [];
  const report = (p: Problem): void => {
    problems.push(p);
    o.onProblem?.(p);
  };
  for (const p of scan.problems) report(p);

  // duplicates first (cheap), then verify with a few files in flight; results are reported in scan order
  const seen = new Set<string>();
  const unique: Candidate[] = [];
  for (const c of scan.candidates) {
    const key = JSON.stringify([c.dataset, c.subject, c.session, c.name]);
    if (seen.has(key))
      report({ file: c.file, reason: `duplicate image name ${c.name} in ${c.dataset}/${c.subject}/${c.session}` });
    else {
      seen.add(key);
      unique.push(c);
    }
  }
  const results: (Problem | undefined)[] = new Array<Problem | undefined>(unique.length);
  let next = 0,
    done = 0,
    lastLog = Date.now();
  const jobs = Math.max(1, Math.min(o.jobs ?? 2, 64));
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      while (next < unique.length) {
        const k = next++;
        results[k] = await verify(unique[k]!, o.check ?? "full");
        done++;
        if (Date.now() - lastLog > 5000) {
          lastLog = Date.now();
          log().info({ done, total: unique.length }, "Verifying images");
        }
      }
    }),
  );
  const good: Candidate[] = [];
  unique.forEach((c, k) => {
    const p = results[k];
    if (p === undefined) good.push(c);
    else report(p);
  });
  if (problems.length > 0 && o.onError === "fail") {
    throw new DataError(
      `conversion failed: ${problems.length} unusable file(s)${o.onProblem === undefined ? ` (first: ${problems[0]!.file}: ${problems[0]!.reason})` : " (listed above)"}; nothing written; use --on-error skip to convert the rest`,
      { file: path.resolve(o.src) },
    );
  }
  if (good.length === 0)
    throw new DataError(
      `no usable NIfTI images found${problems.length > 0 ? ` (${problems.length} unusable)` : ""}; nothing written`,
      { file: path.resolve(o.src) },
    );

  const collection = buildCollection(datasetName, o.datasetId, good, scan.datasetInfo);
  const output = collectionFile(datasetName, env);
  await writeCollection(output, collection, { env });
  return { datasetName, output, counts: countCollection(collection), skipped: problems, ignored: scan.ignored };
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The lines `ssl3d convert` prints. */
export function formatConvertReport(r: ConvertReport): string {
  const c = r.counts;
  const mods = Object.entries(c.modalities)
    .map(([m, n]) => `${m} ${n}`)
    .join(", ");
  return [
    `${r.datasetName}: ${c.datasets} dataset(s), ${c.subjects} subject(s), ${c.sessions} session(s), ${c.images} image(s)`,
    `images per modality: ${mods}`,
    `skipped: ${r.skipped.length} unusable file(s)${r.skipped.length > 0 ? " (listed above)" : ""}; ignored: ${r.ignored.length} non-NIfTI file(s)`,
    `wrote ${r.output}`,
  ].join("\n");
}
