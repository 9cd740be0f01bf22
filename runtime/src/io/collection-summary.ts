/**
 * The collection summary the operator reads (schema `CollectionSummarySchema` in api/v1alpha1/summary.ts): counts per level and per modality, the bytes
 * of all referenced image and mask files, and a content hash. The hash is sha256 over the canonical collection
 * (paths written relative to `$nnssl_raw`/`$nnssl_preprocessed`, keys sorted) followed by the size of every
 * referenced file, so it changes when the description or any file size changes, and it is the same for the same
 * data under a different root. (File contents are not hashed: that would read terabytes for OpenMind.)
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import type { Collection } from "../config/collection.js";
import { countCollection, flattenCollection, serializeCollection } from "../config/collection.js";
import { processEnv, type Env } from "../config/settings.js";
import { DataError } from "../errors.js";

export interface CollectionSummary {
  datasets: number;
  subjects: number;
  sessions: number;
  images: number;
  modalities: Record<string, number>;
  bytes: number;
  contentHash: string;
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataError(
      code === "ENOENT" ? "file referenced by the collection not found" : `cannot stat file (${code ?? String(err)})`,
      { file, cause: err },
    );
  }
}

export async function summarizeCollection(c: Collection, env: Env = processEnv()): Promise<CollectionSummary> {
  const hash = createHash("sha256");
  hash.update(JSON.stringify(canonical(serializeCollection(c, env))));
  let bytes = 0;
  for (const img of flattenCollection(c)) {
    for (const f of [img.image_path, img.associated_masks.anonymization_mask, img.associated_masks.anatomy_mask]) {
      if (f === null) continue;
      const n = await sizeOf(f);
      bytes += n;
      hash.update(`\n${n}`);
    }
  }
  return { ...countCollection(c), bytes, contentHash: `sha256:${hash.digest("hex")}` };
}
