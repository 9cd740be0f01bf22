/**
 * Train/validation split (nnssl `AbstractBaseTrainer.do_split`): sorted unique subject ids,
 * `n_val = min(1000, max(floor(N/100), 5))` subjects drawn with a fixed seed (12345), capped at N − 1 so that tiny
 * datasets keep at least one training subject (with a single subject the validation set is empty and validation reuses
 * the training subject). The draw uses our own seeded generator (`Rng.sample`), NOT Python's
 * `random.Random(12345).sample`, so the chosen subjects differ from upstream's; the split is reproducible and is
 * persisted as `splits_final.json` next to the preprocessed data and reused by every later run (an upstream
 * `splits_final.json` is reused as is). See docs/training.md.
 */
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { DataError } from "../errors.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { Rng } from "./rng.js";

export const SPLIT_SEED = 12345;

export const SplitSchema = z.object({ train: z.array(z.string()), val: z.array(z.string()) });
export type Split = z.infer<typeof SplitSchema>;

export function numValidationSubjects(n: number): number {
  const nVal = Math.min(1000, Math.max(Math.floor(n / 100), 5));
  return Math.max(0, Math.min(nVal, n - 1));
}

export function makeSplit(subjectIds: Iterable<string>, seed = SPLIT_SEED): Split {
  const ids = [...new Set(subjectIds)].sort();
  const nVal = numValidationSubjects(ids.length);
  const chosen = new Set(new Rng(seed).sample(ids.length, nVal));
  const val = ids.filter((_, i) => chosen.has(i));
  const train = ids.filter((_, i) => !chosen.has(i));
  return { train, val };
}

export function readSplit(file: string): Split {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new DataError(`cannot read the split: ${err instanceof Error ? err.message : String(err)}`, { file });
  }
  // upstream nnU-Net writes a list of folds; nnssl writes one object. Accept both (fold "all" = first entry).
  const obj = Array.isArray(raw) ? (raw[0] as unknown) : raw;
  const r = SplitSchema.safeParse(obj);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new DataError(`invalid split: ${issue?.message ?? "bad shape"}`, { file, field: issue?.path.join(".") });
  }
  return r.data;
}

/** Errors of a folder that cannot be written: a read-only mount (training pods mount the preprocessed data so). */
const READ_ONLY_CODES = new Set(["EROFS", "EACCES", "EPERM"]);

function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Load `file` if it exists, else create the split from the subject ids and persist it atomically. When the folder is
 * read-only (`persisted: false`), the split is used without being written: it is a pure function of the subject ids,
 * so every rank and every later run computes the same one.
 */
export async function loadOrCreateSplit(
  file: string,
  subjectIds: Iterable<string>,
  write: (file: string, value: unknown, indent: number) => Promise<void> = writeJsonAtomic,
): Promise<{ split: Split; created: boolean; persisted: boolean }> {
  if (existsSync(file)) return { split: readSplit(file), created: false, persisted: true };
  const split = makeSplit(subjectIds);
  try {
    await write(file, split, 4);
  } catch (err) {
    // writeJsonAtomic reports a system error as an EnvironmentError whose cause carries the errno code
    const code = errnoCode(err) ?? errnoCode((err as { cause?: unknown } | null)?.cause);
    if (code !== undefined && READ_ONLY_CODES.has(code)) return { split, created: true, persisted: false };
    throw err;
  }
  return { split, created: true, persisted: true };
}
