import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Collection } from "../config/collection.js";
import { DataError } from "../errors.js";
import { summarizeCollection } from "./collection-summary.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-summary-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function coll(modality = "T1w"): Collection {
  return {
    collection_index: 1,
    collection_name: "Dataset001_S",
    datasets: {
      d: {
        dataset_index: "d",
        name: null,
        dataset_info: null,
        subjects: {
          s: {
            subject_id: "s",
            subject_info: null,
            sessions: {
              e: {
                session_id: "e",
                session_info: null,
                images: [
                  {
                    name: "a.nii",
                    image_path: join(tmp, "a.nii"),
                    modality,
                    image_info: null,
                    associated_masks: { anonymization_mask: join(tmp, "m.nii"), anatomy_mask: null },
                  },
                  {
                    name: "b.nii",
                    image_path: join(tmp, "b.nii"),
                    modality: "T2w",
                    image_info: null,
                    associated_masks: null,
                  },
                ],
              },
            },
          },
        },
      },
    },
  };
}

test("counts, bytes of images and masks, and a hash that follows description and file sizes", async () => {
  writeFileSync(join(tmp, "a.nii"), "x".repeat(100));
  writeFileSync(join(tmp, "b.nii"), "x".repeat(50));
  writeFileSync(join(tmp, "m.nii"), "x".repeat(7));
  const env = { nnssl_raw: tmp };
  const s1 = await summarizeCollection(coll(), env);
  assert.deepEqual(
    { ...s1, contentHash: "" },
    { datasets: 1, subjects: 1, sessions: 1, images: 2, modalities: { T1w: 1, T2w: 1 }, bytes: 157, contentHash: "" },
  );
  assert.equal((await summarizeCollection(coll(), env)).contentHash, s1.contentHash);
  assert.notEqual((await summarizeCollection(coll("FLAIR"), env)).contentHash, s1.contentHash);
  appendFileSync(join(tmp, "m.nii"), "y");
  const s2 = await summarizeCollection(coll(), env);
  assert.equal(s2.bytes, 158);
  assert.notEqual(s2.contentHash, s1.contentHash);
  rmSync(join(tmp, "b.nii"));
  await assert.rejects(
    summarizeCollection(coll(), env),
    (e: unknown) => e instanceof DataError && /b\.nii: file referenced by the collection not found/.test(e.message),
  );
});
