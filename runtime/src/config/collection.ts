/**
 * `pretrain_data.json`: the dataset description of nnssl (`src/nnssl/data/raw_dataset.py`), as zod schemas with the
 * exact upstream field names, plus the pure operations on it: `$`-relative path resolution (`resolve_relative_paths`),
 * the flattened `IndependentImage` view with its derived identifiers, and the modality / OpenMind IQS filters
 * (`src/nnssl/data/nnsslFilter/`).
 *
 * Deviations from upstream, on purpose: saving never mutates the in-memory collection; a `$` path whose `..`
 * escapes its root is rejected; dictionary keys must equal the id inside (`datasets.X.dataset_index == X`, same
 * for subjects and sessions) and image names must be unique within a session (preprocessing looks them up by
 * name); relative paths without `$` are resolved against the JSON file's folder instead of the working directory.
 *
 * File I/O lives in `io/collection-file.ts`; this module is zod + node:path only, so the operator may import it.
 */
import * as path from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { checkSafeName } from "../io/safe-path.js";
import type { Env } from "./env.js";
import { optionalRoot } from "./env.js";
import { collectionPathVariable } from "./settings.js";

const Info = z.record(z.string(), z.unknown()).nullable().default(null);
const Id = z.union([z.string(), z.int()]);

export const AssociatedMasksSchema = z.strictObject({
  anonymization_mask: z.string().nullable().describe("anonymization (deface) mask: 1 = voxel was anonymized"),
  anatomy_mask: z.string().nullable().describe("anatomy mask: 1 = region holding anatomy"),
});

export const ImageSchema = z.strictObject({
  name: z.string().min(1).describe("file name, unique within its session"),
  image_path: z.string().min(1).describe("absolute or $-relative path of the NIfTI file"),
  modality: z.string().min(1).describe("e.g. T1w, T2w, FLAIR"),
  image_info: Info,
  associated_masks: AssociatedMasksSchema.nullable().default(null),
});

export const SessionSchema = z.object({
  session_id: Id,
  session_info: Info,
  images: z.array(ImageSchema),
});

export const SubjectSchema = z.object({
  subject_id: z.string().min(1),
  sessions: z.record(z.string(), SessionSchema),
  subject_info: Info,
});

export const DatasetSchema = z.object({
  dataset_index: Id,
  name: z.string().nullable().default(null),
  dataset_info: Info,
  subjects: z.record(z.string(), SubjectSchema),
});

export const CollectionSchema = z.object({
  collection_index: Id,
  collection_name: z.string().min(1),
  datasets: z.record(z.string(), DatasetSchema),
});

export type AssociatedMasks = z.infer<typeof AssociatedMasksSchema>;
export type Image = z.infer<typeof ImageSchema>;
export type Session = z.infer<typeof SessionSchema>;
export type Subject = z.infer<typeof SubjectSchema>;
export type Dataset = z.infer<typeof DatasetSchema>;
export type Collection = z.infer<typeof CollectionSchema>;

/** `datasets.ds000001.subjects.sub-01.sessions.ses-1.images[2].image_path` */
export function formatJsonPath(p: readonly PropertyKey[]): string {
  let out = "";
  for (const k of p) {
    if (typeof k === "number") out += `[${k}]`;
    else {
      const s = String(k);
      out += /^[^.[\]"]+$/.test(s) ? (out === "" ? s : `.${s}`) : `[${JSON.stringify(s)}]`;
    }
  }
  return out === "" ? "(root)" : out;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_union") {
    const expected = new Set<string>();
    for (const branch of issue.errors) for (const i of branch) if (i.code === "invalid_type") expected.add(i.expected);
    return expected.size > 0 ? `expected ${[...expected].join(" or ")}` : issue.message;
  }
  return issue.message.replace(/^Invalid input: /, "");
}

/** Validate a parsed JSON document; a ConfigError naming the file, the JSON path and the problem. */
export function parseCollection(doc: unknown, file: string): Collection {
  const r = CollectionSchema.safeParse(doc);
  if (!r.success) {
    const first = r.error.issues[0]!;
    const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problem(s))` : "";
    throw new ConfigError(`${describeIssue(first)}${more}`, { file, field: formatJsonPath(first.path) });
  }
  const c = r.data;
  checkSafeName(c.collection_name, "collection_name", { file, field: "collection_name" });
  for (const [dk, d] of Object.entries(c.datasets)) {
    checkSafeName(dk, "dataset_index", { file, field: formatJsonPath(["datasets", dk, "dataset_index"]) });
    if (String(d.dataset_index) !== dk)
      throw new ConfigError(`dataset_index "${d.dataset_index}" differs from its key "${dk}"`, {
        file,
        field: formatJsonPath(["datasets", dk, "dataset_index"]),
      });
    for (const [sk, s] of Object.entries(d.subjects)) {
      if (s.subject_id !== sk)
        throw new ConfigError(`subject_id "${s.subject_id}" differs from its key "${sk}"`, {
          file,
          field: formatJsonPath(["datasets", dk, "subjects", sk, "subject_id"]),
        });
      checkSafeName(sk, "subject_id", { file, field: formatJsonPath(["datasets", dk, "subjects", sk, "subject_id"]) });
      for (const [ek, e] of Object.entries(s.sessions)) {
        if (String(e.session_id) !== ek)
          throw new ConfigError(`session_id "${e.session_id}" differs from its key "${ek}"`, {
            file,
            field: formatJsonPath(["datasets", dk, "subjects", sk, "sessions", ek, "session_id"]),
          });
        checkSafeName(ek, "session_id", {
          file,
          field: formatJsonPath(["datasets", dk, "subjects", sk, "sessions", ek, "session_id"]),
        });
        checkImageNames(e.images, file, ["datasets", dk, "subjects", sk, "sessions", ek, "images"]);
      }
    }
  }
  return c;
}

/**
 * Image names become file names (`<stem>.zarr`, `<stem>__anon.zarr`, `<stem>__anat.zarr`, `<stem>.json`): each must
 * be a plain file name, and no two images of a session may share an output (`a.nii` and `a.nii.gz`, or `a.nii.gz`
 * and `a__anon.nii.gz`, would overwrite or delete each other's arrays).
 */
function checkImageNames(images: readonly Image[], file: string, base: readonly PropertyKey[]): void {
  const outputs = new Map<string, string>();
  images.forEach((img, i) => {
    const field = formatJsonPath([...base, i, "name"]);
    checkSafeName(img.name, "image name", { file, field });
    const stem = imageStem(img.name);
    checkSafeName(stem, "image name without its extension", { file, field });
    for (const out of [stem, `${stem}__anon`, `${stem}__anat`]) {
      const other = outputs.get(out);
      if (other !== undefined)
        throw new ConfigError(
          other === img.name
            ? `duplicate image name "${img.name}" in this session`
            : `image name "${img.name}" maps to the same output file as "${other}" (${out}.zarr) in this session`,
          { file, field },
        );
    }
    for (const out of [stem, `${stem}__anon`, `${stem}__anat`]) outputs.set(out, img.name);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// $-relative paths

export interface PathContext {
  readonly env: Env;
  /** The collection file, for error messages and for resolving plain relative paths. */
  readonly file: string;
}

/**
 * Resolve one path: `$VAR/rest` → `<value of VAR>/rest` (any variable; unset is an error; a `..` leaving the
 * variable's root is an error); absolute paths are normalised; other relative paths are taken relative to the
 * folder of the collection file.
 */
export function resolvePath(p: string, ctx: PathContext, field: string): string {
  if (p.startsWith("$")) {
    const slash = p.indexOf("/");
    const name = (slash === -1 ? p : p.slice(0, slash)).slice(1);
    const rest = slash === -1 ? "" : p.slice(slash + 1);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new ConfigError(`"${p}" starts with "$" but "${name}" is not a variable name`, { file: ctx.file, field });
    const isRoot = name === "nnssl_raw" || name === "nnssl_preprocessed" || name === "nnssl_results";
    const raw = isRoot ? optionalRoot(name, ctx.env) : collectionPathVariable(name, ctx.env);
    if (raw === undefined || raw === "")
      throw new ConfigError(`path "${p}" needs environment variable ${name}, which is not set`, {
        file: ctx.file,
        field,
      });
    const root = path.resolve(raw);
    const resolved = path.resolve(root, rest);
    const rel = path.relative(root, resolved);
    if (rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
      throw new ConfigError(`path "${p}" escapes the root $${name} with ".."`, { file: ctx.file, field });
    }
    return resolved;
  }
  if (path.isAbsolute(p)) return path.normalize(p);
  return path.resolve(path.dirname(path.resolve(ctx.file)), p);
}

/** Write a path back relative to `$nnssl_raw`, else `$nnssl_preprocessed`, when it lies under one of them. */
export function relativizePath(p: string, env: Env): string {
  for (const v of ["nnssl_raw", "nnssl_preprocessed"] as const) {
    const root = optionalRoot(v, env);
    if (root === undefined) continue;
    const abs = path.resolve(root);
    const rel = path.relative(abs, p);
    if (rel === "") return `$${v}`;
    if (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel))
      return `$${v}/${rel.split(path.sep).join("/")}`;
  }
  return p;
}

function mapPaths(c: Collection, f: (p: string, field: readonly PropertyKey[]) => string): Collection {
  const datasets: Record<string, Dataset> = {};
  for (const [dk, d] of Object.entries(c.datasets)) {
    const subjects: Record<string, Subject> = {};
    for (const [sk, s] of Object.entries(d.subjects)) {
      const sessions: Record<string, Session> = {};
      for (const [ek, e] of Object.entries(s.sessions)) {
        const base = ["datasets", dk, "subjects", sk, "sessions", ek, "images"];
        sessions[ek] = {
          session_id: e.session_id,
          session_info: clone(e.session_info),
          images: e.images.map((img, i) => ({
            name: img.name,
            image_path: f(img.image_path, [...base, i, "image_path"]),
            modality: img.modality,
            image_info: clone(img.image_info),
            associated_masks:
              img.associated_masks === null
                ? null
                : {
                    anonymization_mask:
                      img.associated_masks.anonymization_mask === null
                        ? null
                        : f(img.associated_masks.anonymization_mask, [
                            ...base,
                            i,
                            "associated_masks",
                            "anonymization_mask",
                          ]),
                    anatomy_mask:
                      img.associated_masks.anatomy_mask === null
                        ? null
                        : f(img.associated_masks.anatomy_mask, [...base, i, "associated_masks", "anatomy_mask"]),
                  },
          })),
        };
      }
      subjects[sk] = { subject_id: s.subject_id, sessions, subject_info: clone(s.subject_info) };
    }
    datasets[dk] = { dataset_index: d.dataset_index, name: d.name, dataset_info: clone(d.dataset_info), subjects };
  }
  return { collection_index: c.collection_index, collection_name: c.collection_name, datasets };
}

function clone<T>(v: T): T {
  return v === null || v === undefined ? v : structuredClone(v);
}

/** A copy with every image/mask path resolved to an absolute path. */
export function resolveCollectionPaths(c: Collection, ctx: PathContext): Collection {
  return mapPaths(c, (p, field) => resolvePath(p, ctx, formatJsonPath(field)));
}

/**
 * The JSON document for a collection: every key present, upstream key order, paths under `$nnssl_raw` /
 * `$nnssl_preprocessed` written relative. Does not mutate `c`.
 */
export function serializeCollection(c: Collection, env: Env, opts: { relativePaths?: boolean } = {}): Collection {
  return opts.relativePaths === false ? mapPaths(c, (p) => p) : mapPaths(c, (p) => relativizePath(p, env));
}

// ---------------------------------------------------------------------------------------------------------------
// Flattened view

/** One image with everything above it, as used downstream (upstream `IndependentImage`). */
export interface IndependentImage {
  readonly collection_index: string | number;
  readonly collection_name: string;
  readonly dataset_index: string | number;
  readonly dataset_name: string | null;
  readonly subject_id: string;
  readonly session_id: string | number;
  readonly image_name: string;
  readonly image_path: string;
  readonly image_modality: string;
  /** Never null: both keys null when the image has no masks. */
  readonly associated_masks: AssociatedMasks;
  readonly dataset_info: Record<string, unknown> | null;
  readonly subject_info: Record<string, unknown> | null;
  readonly session_info: Record<string, unknown> | null;
  readonly image_info: Record<string, unknown> | null;
}

export type ImageFilter = (img: IndependentImage) => boolean;

/** All images in document order, keeping those that pass every filter. */
export function flattenCollection(c: Collection, filters: readonly ImageFilter[] = []): IndependentImage[] {
  const out: IndependentImage[] = [];
  for (const d of Object.values(c.datasets)) {
    for (const s of Object.values(d.subjects)) {
      for (const e of Object.values(s.sessions)) {
        for (const img of e.images) {
          const ii: IndependentImage = {
            collection_index: c.collection_index,
            collection_name: c.collection_name,
            dataset_index: d.dataset_index,
            dataset_name: d.name,
            subject_id: s.subject_id,
            session_id: e.session_id,
            image_name: img.name,
            image_path: img.image_path,
            image_modality: img.modality,
            associated_masks: img.associated_masks ?? { anonymization_mask: null, anatomy_mask: null },
            dataset_info: d.dataset_info,
            subject_info: s.subject_info,
            session_info: e.session_info,
            image_info: img.image_info,
          };
          if (filters.every((f) => f(ii))) out.push(ii);
        }
      }
    }
  }
  return out;
}

/** `{collection_name}__{dataset_index}__{subject_id}__{session_id}__{image_name}` */
export function uniqueId(i: IndependentImage): string {
  return `${i.collection_name}__${i.dataset_index}__${i.subject_id}__${i.session_id}__${i.image_name}`;
}

/** `{collection_name}__{dataset_index}__{subject_id}`: the unit of the train/val split. */
export function uniqueSubjectId(i: IndependentImage): string {
  return `${i.collection_name}__${i.dataset_index}__${i.subject_id}`;
}

/** Image name without a trailing `.nii.gz`, `.nii` or `.nrrd` (other names are kept whole). */
export function imageStem(name: string): string {
  for (const ext of [".nii.gz", ".nii", ".nrrd"]) if (name.endsWith(ext)) return name.slice(0, -ext.length);
  return name;
}

export type OutputKind = "image" | "anon" | "anat";

/** `{collection_name}/{dataset_index}/{subject_id}/{session_id}/{stem}{suffix}{ext}` (suffix `__anon`, `__anat`). */
export function outputPath(i: IndependentImage, kind: OutputKind = "image", ext = ""): string {
  const suffix = kind === "image" ? "" : kind === "anon" ? "__anon" : "__anat";
  return `${i.collection_name}/${i.dataset_index}/${i.subject_id}/${i.session_id}/${imageStem(i.image_name)}${suffix}${ext}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Filters (nnssl `src/nnssl/data/nnsslFilter/modality_filter.py`, `iqs_filter.py`)

/** Keeps images whose modality is one of `modalities`. */
export function modalityFilter(modalities: readonly string[]): ImageFilter {
  const set = new Set(modalities);
  return (img) => set.has(img.image_modality);
}

const IqsEntry = z.object({
  modality: z.string(),
  derived_from: z.string().nullable().optional(),
  image_quality_score: z.number().nullable(),
});

/**
 * OpenMind image-quality filter: keeps an image iff the IQS of its (dataset_index, modality,
 * image_info.derived_from) triple, from `dataset_info.image_quality_score`, is <= threshold (lower is better).
 * A triple without a score is an error (upstream raises KeyError) naming the dataset.
 */
export function openMindIqsFilter(c: Collection, threshold: number): ImageFilter {
  const table = new Map<string, number | null>();
  const key = (ds: string | number, mod: string, der: unknown): string =>
    JSON.stringify([String(ds), mod, typeof der === "string" ? der : null]);
  for (const [dk, d] of Object.entries(c.datasets)) {
    const raw = d.dataset_info?.image_quality_score;
    const r = z.array(IqsEntry).safeParse(raw);
    if (!r.success)
      throw new ConfigError(`the OpenMind IQS filter needs a list of {modality, derived_from, image_quality_score}`, {
        field: formatJsonPath(["datasets", dk, "dataset_info", "image_quality_score"]),
      });
    for (const e of r.data) table.set(key(d.dataset_index, e.modality, e.derived_from), e.image_quality_score);
  }
  return (img) => {
    const k = key(img.dataset_index, img.image_modality, img.image_info?.derived_from);
    if (!table.has(k)) {
      throw new ConfigError(
        `no image_quality_score for modality ${img.image_modality}, derived_from ${JSON.stringify(img.image_info?.derived_from ?? null)}`,
        { field: formatJsonPath(["datasets", String(img.dataset_index), "dataset_info", "image_quality_score"]) },
      );
    }
    const v = table.get(k);
    return v !== null && v !== undefined && v <= threshold;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Counting

export interface CollectionCounts {
  datasets: number;
  subjects: number;
  sessions: number;
  images: number;
  modalities: Record<string, number>;
}

export function countCollection(c: Collection): CollectionCounts {
  const counts: CollectionCounts = { datasets: 0, subjects: 0, sessions: 0, images: 0, modalities: {} };
  for (const d of Object.values(c.datasets)) {
    counts.datasets++;
    for (const s of Object.values(d.subjects)) {
      counts.subjects++;
      for (const e of Object.values(s.sessions)) {
        counts.sessions++;
        for (const img of e.images) {
          counts.images++;
          counts.modalities[img.modality] = (counts.modalities[img.modality] ?? 0) + 1;
        }
      }
    }
  }
  counts.modalities = Object.fromEntries(Object.entries(counts.modalities).sort(([a], [b]) => a.localeCompare(b)));
  return counts;
}
