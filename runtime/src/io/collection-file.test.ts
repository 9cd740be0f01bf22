import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConfigError } from "../errors.js";
import { readCollection, writeCollection } from "./collection-file.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-coll-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});
const env = { nnssl_raw: join(tmp, "raw"), nnssl_preprocessed: join(tmp, "pre") };

const doc = {
  collection_index: 1,
  collection_name: "Dataset001_T",
  datasets: {
    ds1: {
      dataset_index: "ds1",
      name: "first",
      dataset_info: { k: [1, 2] },
      subjects: {
        "sub-01": {
          subject_id: "sub-01",
          subject_info: null,
          sessions: {
            "ses-DEFAULT": {
              session_id: "ses-DEFAULT",
              session_info: { n: 1 },
              images: [
                {
                  name: "a.nii.gz",
                  image_path: "$nnssl_raw/Dataset001_T/a.nii.gz",
                  modality: "T1w",
                  image_info: null,
                  associated_masks: {
                    anonymization_mask: "$nnssl_preprocessed/m.nii.gz",
                    anatomy_mask: "/abs/anat.nii",
                  },
                },
              ],
            },
          },
        },
      },
    },
  },
};

test("read -> write -> read is identical, and the written file equals the relative input document", async () => {
  const f1 = join(tmp, "one.json"),
    f2 = join(tmp, "two.json");
  writeFileSync(f1, JSON.stringify(doc));
  const c1 = await readCollection(f1, { env });
  assert.equal(
    c1.datasets.ds1!.subjects["sub-01"]!.sessions["ses-DEFAULT"]!.images[0]!.image_path,
    join(tmp, "raw", "Dataset001_T", "a.nii.gz"),
  );
  await writeCollection(f2, c1, { env });
  const c2 = await readCollection(f2, { env });
  assert.deepEqual(c2, c1);
  assert.deepEqual(JSON.parse(readFileSync(f2, "utf8")), doc);
  assert.deepEqual(
    readdirSync(tmp).filter((n) => n.includes(".tmp-")),
    [],
  );
});

test("file-level errors: missing file, invalid JSON, wrong types name the file", async () => {
  await assert.rejects(
    readCollection(join(tmp, "missing.json"), { env }),
    (e: unknown) => e instanceof ConfigError && /missing\.json: collection file not found/.test(e.message),
  );
  const bad = join(tmp, "bad.json");
  writeFileSync(bad, "{ nope");
  await assert.rejects(
    readCollection(bad, { env }),
    (e: unknown) => e instanceof ConfigError && /bad\.json: invalid JSON/.test(e.message),
  );
  writeFileSync(bad, JSON.stringify({ ...doc, collection_name: 5 }));
  await assert.rejects(readCollection(bad, { env }), /bad\.json: collection_name: expected string, received number/);
});

test("Python's NaN / Infinity tokens read as null; strings containing them are untouched", async () => {
  const { pythonJsonToJson } = await import("./collection-file.js");
  assert.equal(
    pythonJsonToJson('{"a": NaN, "b": -Infinity, "c": "NaN and Infinity", "d": [Infinity]}'),
    '{"a": null, "b": null, "c": "NaN and Infinity", "d": [null]}',
  );
  const f = join(tmp, "nan.json");
  const text = JSON.stringify({
    ...doc,
    datasets: {
      ds1: {
        ...doc.datasets.ds1,
        dataset_info: { image_quality_score: [{ modality: "T1w", derived_from: null, image_quality_score: 0 }] },
      },
    },
  }).replace('"image_quality_score":0', '"image_quality_score":NaN');
  writeFileSync(f, text);
  const c = await readCollection(f, { env });
  assert.deepEqual(c.datasets.ds1!.dataset_info, {
    image_quality_score: [{ modality: "T1w", derived_from: null, image_quality_score: null }],
  });
});
