/**
 * Source scanners of `ssl3d convert`: they turn a folder of NIfTI files, a BIDS tree or the OpenMind download into
 * candidate images (plus problems found while scanning). No file is opened here; `convert.ts` verifies each one.
 * Naming conventions are documented in docs/converters.md.
 */
import { existsSync, promises as fs, statSync } from "node:fs";
import * as path from "node:path";
import { imageStem } from "../config/collection.js";
import { ConfigError } from "../errors.js";
import { parseCsv } from "../io/csv.js";

export interface Candidate {
  readonly dataset: string;
  readonly subject: string;
  readonly session: string;
  /** Image name inside its session (file name; OpenMind derived images get a prefix). */
  readonly name: string;
  readonly file: string;
  readonly modality: string;
  readonly anonymizationMask?: string | undefined;
  readonly anatomyMask?: string | undefined;
  readonly imageInfo?: Record<string, unknown> | undefined;
  readonly subjectInfo?: Record<string, unknown> | undefined;
}

export interface Problem {
  readonly file: string;
  readonly reason: string;
}

export interface ScanResult {
  readonly candidates: Candidate[];
  readonly problems: Problem[];
  /** Files seen but not NIfTI (BIDS sidecars etc.): counted and reported, never read. */
  readonly ignored: string[];
  /** Per-dataset `dataset_info` (OpenMind: image_quality_score). */
  readonly datasetInfo?: ReadonlyMap<string, Record<string, unknown>>;
}

export const DEFAULT_SESSION = "ses-DEFAULT";
const NIFTI_RE = /\.nii(\.gz)?$/;
const MASK_RE = /_desc-(anon|anat)mask\.nii(\.gz)?$/;

async function listDir(dir: string): Promise<{ name: string; dir: boolean }[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  return entries
    .map((e) => ({ name: e.name, dir: e.isDirectory() || (e.isSymbolicLink() && isDirSync(path.join(dir, e.name))) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function isDirSync(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

async function requireDir(src: string): Promise<void> {
  let st;
  try {
    st = await fs.stat(src);
  } catch {
    throw new ConfigError("source folder not found", { file: src });
  }
  if (!st.isDirectory()) throw new ConfigError("source is not a folder", { file: src });
}

/**
 * Pair images with their masks inside one folder: `<stem>_desc-anonmask.nii[.gz]` and `<stem>_desc-anatmask.nii[.gz]`
 * belong to `<stem>.nii[.gz]`. A mask without its image is a problem.
 */
function pairMasks(files: readonly string[], problems: Problem[]): { image: string; anon?: string; anat?: string }[] {
  const images = files.filter((f) => NIFTI_RE.test(f) && !MASK_RE.test(f));
  type Pair = { image: string; anon?: string; anat?: string };
  const byStem = new Map<string, Pair>(images.map((f) => [imageStem(f), { image: f }]));
  for (const f of files) {
    const m = MASK_RE.exec(f);
    if (m === null) continue;
    const stem = f.slice(0, m.index);
    const target = byStem.get(stem);
    if (target === undefined) {
      problems.push({
        file: f,
        reason: `mask without an image (expected ${path.basename(stem)}.nii or .nii.gz next to it)`,
      });
      continue;
    }
    if (m[1] === "anon") target.anon = f;
    else target.anat = f;
  }
  return [...byStem.values()];
}

/** Modality from a BIDS file name: the last `_`-separated token of the stem (`sub-01_ses-1_T1w` → `T1w`). */
export function bidsSuffix(fileName: string): string {
  const stem = imageStem(fileName);
  const k = stem.lastIndexOf("_");
  return k === -1 ? stem : stem.slice(k + 1);
}

// ---------------------------------------------------------------------------------------------------------------

async function walk(dir: string, out: string[]): Promise<void> {
  for (const e of await listDir(dir)) {
    const p = path.join(dir, e.name);
    if (e.dir) await walk(p, out);
    else out.push(p);
  }
}

/**
 * A folder of NIfTI files (searched recursively): one dataset named after the folder, one subject per image (the
 * relative path without extension, `/` → `_`), session `ses-DEFAULT`. Modality: `opts.modality`, else the BIDS
 * suffix when it is a known modality, else `unknown`.
 */
export async function scanFolder(src: string, opts: { modality?: string | undefined }): Promise<ScanResult> {
  await requireDir(src);
  const all: string[] = [];
  await walk(src, all);
  const problems: Problem[] = [];
  const candidates: Candidate[] = [];
  const dataset = path.basename(path.resolve(src));
  for (const dir of [...new Set(all.map((f) => path.dirname(f)))]) {
    const here = all.filter((f) => path.dirname(f) === dir);
    for (const p of pairMasks(here, problems)) {
      const suffix = bidsSuffix(path.basename(p.image));
      candidates.push({
        dataset,
        subject: imageStem(path.relative(src, p.image)).split(path.sep).join("_"),
        session: DEFAULT_SESSION,
        name: path.basename(p.image),
        file: p.image,
        modality: opts.modality ?? (KNOWN_MODALITIES.has(suffix) ? suffix : "unknown"),
        anonymizationMask: p.anon,
        anatomyMask: p.anat,
      });
    }
  }
  return { candidates, problems, ignored: all.filter((f) => !NIFTI_RE.test(f)) };
}

/** BIDS anatomical suffixes (and OpenMind's modality names) recognised in folder mode. */
export const KNOWN_MODALITIES: ReadonlySet<string> = new Set([
  "T1w",
  "T2w",
  "FLAIR",
  "PDw",
  "T2starw",
  "T2star",
  "PD",
  "PDT2",
  "inplaneT1",
  "inplaneT2",
  "angio",
  "T1map",
  "T2map",
  "MP2RAGE",
  "UNIT1",
  "MTR",
  "FA",
  "ADC",
  "MD",
  "TRACE",
  "DWI",
  "dwi",
  "T1rho",
  "R1map",
  "R2map",
]);

// ---------------------------------------------------------------------------------------------------------------

async function subdirs(dir: string, prefix: string): Promise<string[]> {
  return (await listDir(dir)).filter((e) => e.dir && e.name.startsWith(prefix)).map((e) => e.name);
}

async function scanBidsDataset(root: string, dataset: string, out: ScanResult): Promise<void> {
  for (const sub of await subdirs(root, "sub-")) {
    const subDir = path.join(root, sub);
    const sessionDirs: [string, string][] = (await subdirs(subDir, "ses-")).map((s) => [
      s,
      path.join(subDir, s, "anat"),
    ]);
    if (existsSync(path.join(subDir, "anat"))) sessionDirs.unshift([DEFAULT_SESSION, path.join(subDir, "anat")]);
    for (const [session, anat] of sessionDirs) {
      if (!existsSync(anat)) continue;
      const files = (await listDir(anat)).filter((e) => !e.dir).map((e) => path.join(anat, e.name));
      out.ignored.push(...files.filter((f) => !NIFTI_RE.test(f)));
      for (const p of pairMasks(files, out.problems)) {
        out.candidates.push({
          dataset,
          subject: sub,
          session,
          name: path.basename(p.image),
          file: p.image,
          modality: bidsSuffix(path.basename(p.image)),
          anonymizationMask: p.anon,
          anatomyMask: p.anat,
        });
      }
    }
  }
}

/**
 * A BIDS dataset (`SRC/sub-*` present: one dataset named after SRC) or a folder of BIDS datasets (each child with
 * `sub-*` folders is one dataset): images in `sub-XX/[ses-YY/]anat/`, modality = file-name suffix, session
 * `ses-DEFAULT` when there is no session level.
 */
export async function scanBids(src: string): Promise<ScanResult> {
  await requireDir(src);
  const out: ScanResult = { candidates: [], problems: [], ignored: [] };
  if ((await subdirs(src, "sub-")).length > 0) {
    await scanBidsDataset(src, path.basename(path.resolve(src)), out);
  } else {
    const children = (await listDir(src)).filter((e) => e.dir);
    let found = 0;
    for (const c of children) {
      if ((await subdirs(path.join(src, c.name), "sub-")).length === 0) continue;
      found++;
      await scanBidsDataset(path.join(src, c.name), c.name, out);
    }
    if (found === 0)
      throw new ConfigError("no BIDS dataset found: neither SRC nor its sub-folders contain sub-* folders", {
        file: src,
      });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

const SUBJECT_INFO_KEYS = ["age", "sex", "handedness", "race", "weight", "bmi", "health_status"];
const IMAGE_INFO_KEYS = [
  "derived_from",
  "is_brain_extract",
  "manufacturer",
  "model_name",
  "phase_encoding_direction",
  "magnetic_field_strength",
  "repetition_time",
  "echo_time",
];

function isMissing(v: string | undefined): boolean {
  return v === undefined || v === "" || /^(nan|NaN|NA|N\/A|null|None)$/.test(v);
}

function csvValue(v: string): string | number | boolean {
  if (/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) return Number(v);
  if (v === "True" || v === "true") return true;
  if (v === "False" || v === "false") return false;
  return v;
}

/**
 * The OpenMind download (nnssl `src/nnssl/dataset_conversion/Dataset001_OpenMind.py`): `SRC/openneuro_metadata.csv`
 * lists images relative to `SRC/OpenMind/` (dataset/subject/[session/]anat/file), with modality, metadata, optional
 * `anon_mask_path`/`anat_mask_path` and `image_quality_score` per row. Derived images are named
 * `<parent folder minus 5 chars><file name>`.
 */
export async function scanOpenMind(src: string): Promise<ScanResult> {
  await requireDir(src);
  const csvFile = path.join(src, "openneuro_metadata.csv");
  let text: string;
  try {
    text = await fs.readFile(csvFile, "utf8");
  } catch {
    throw new ConfigError("OpenMind metadata not found (expected openneuro_metadata.csv in the root given)", {
      file: csvFile,
    });
  }
  const rows = parseCsv(text, csvFile);
  const base = path.join(src, "OpenMind");
  const out: ScanResult & { datasetInfo: Map<string, Record<string, unknown>> } = {
    candidates: [],
    problems: [],
    ignored: [],
    datasetInfo: new Map(),
  };
  type Iqs = { modality: string; derived_from: string | null; image_quality_score: number | null };
  const iqs = new Map<string, Map<string, Iqs>>();
  rows.forEach((row, k) => {
    const where = `${csvFile}: row ${k + 2}`;
    const rel = row.image_path;
    const modality = row.modality;
    if (rel === undefined || modality === undefined)
      throw new ConfigError("columns image_path and modality are required", { file: csvFile });
    const parts = rel.split("/");
    if (parts.length < 4 || isMissing(modality)) {
      out.problems.push({
        file: where,
        reason: `image_path "${rel}" is not dsXXXXXX/sub-YY/[ses-ZZ/]anat/<file> or modality is empty`,
      });
      return;
    }
    const dataset = parts[0]!,
      subject = parts[1]!;
    const session = parts[2]!.startsWith("ses-") ? parts[2]! : DEFAULT_SESSION;
    const subjectInfo = Object.fromEntries(
      SUBJECT_INFO_KEYS.filter((key) => !isMissing(row[key])).map((key) => [key, csvValue(row[key]!)]),
    );
    const imageInfo = Object.fromEntries(
      IMAGE_INFO_KEYS.filter((key) => !isMissing(row[key])).map((key) => [key, csvValue(row[key]!)]),
    );
    const fileName = parts[parts.length - 1]!;
    const name = "derived_from" in imageInfo ? parts[parts.length - 2]!.slice(0, -5) + fileName : fileName;
    const mask = (key: string): string | undefined => (isMissing(row[key]) ? undefined : path.join(base, row[key]!));
    out.candidates.push({
      dataset,
      subject,
      session,
      name,
      file: path.join(base, rel),
      modality,
      anonymizationMask: mask("anon_mask_path"),
      anatomyMask: mask("anat_mask_path"),
      imageInfo,
      subjectInfo,
    });
    // one IQS per (dataset, modality, derived_from): the first row's value, like upstream's groupby().first()
    const derived = isMissing(row.derived_from) ? null : row.derived_from!;
    const key = JSON.stringify([modality, derived]);
    const perDs = iqs.get(dataset) ?? new Map<string, Iqs>();
    iqs.set(dataset, perDs);
    const score = isMissing(row.image_quality_score) ? null : Number(row.image_quality_score);
    const prev = perDs.get(key);
    if (prev === undefined) perDs.set(key, { modality, derived_from: derived, image_quality_score: score });
    else if (prev.image_quality_score === null && score !== null) prev.image_quality_score = score;
  });
  for (const [ds, m] of iqs) out.datasetInfo.set(ds, { image_quality_score: [...m.values()] });
  return out;
}
