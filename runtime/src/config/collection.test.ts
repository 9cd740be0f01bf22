import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import type { Collection } from "./collection.js";
import {
  countCollection,
  flattenCollection,
  formatJsonPath,
  imageStem,
  modalityFilter,
  openMindIqsFilter,
  outputPath,
  parseCollection,
  relativizePath,
  resolveCollectionPaths,
  resolvePath,
  serializeCollection,
  uniqueId,
  uniqueSubjectId,
} from "./collection.js";

const env = { nnssl_raw: "/data/raw", nnssl_preprocessed: "/data/pre", openmind: "/om" };

function doc(): Record<string, unknown> {
  return {
    collection_index: 745,
    collection_name: "Dataset745_OpenNeuro",
    datasets: {
      ds000001: {
        dataset_index: "ds000001",
        dataset_info: {
          image_quality_score: [
            { modality: "T1w", derived_from: null, image_quality_score: 1.2 },
            { modality: "T2w", derived_from: null, image_quality_score: 3.1 },
            { modality: "FA", derived_from: "DWI", image_quality_score: 2.0 },
          ],
        },
        subjects: {
          "sub-01": {
            subject_id: "sub-01",
            subject_info: { age: 30 },
            sessions: {
              "ses-1": {
                session_id: "ses-1",
                images: [
                  {
                    name: "sub-01_T1w.nii.gz",
                    image_path: "$nnssl_raw/Dataset745/ds000001/sub-01/ses-1/anat/sub-01_T1w.nii.gz",
                    modality: "T1w",
                    associated_masks: { anonymization_mask: "$openmind/m/anon.nii.gz", anatomy_mask: null },
                  },
                  {
                    name: "sub-01_T2w.nii",
                    image_path: "/abs/sub-01_T2w.nii",
                    modality: "T2w",
                    image_info: { echo_time: 0.1 },
                  },
                  {
                    name: "sub-01_FA.nii.gz",
                    image_path: "rel/fa.nii.gz",
                    modality: "FA",
                    image_info: { derived_from: "DWI" },
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

function dig(o: unknown, ...keys: (string | number)[]): Record<string, unknown> {
  let cur = o;
  for (const k of keys) cur = (cur as Record<string | number, unknown>)[k];
  return cur as Record<string, unknown>;
}

const img0 = ["datasets", "ds000001", "subjects", "sub-01", "sessions", "ses-1", "images", 0] as const;

test("JSON paths are formatted as dotted keys and [index]", () => {
  assert.equal(
    formatJsonPath(["datasets", "ds000001", "subjects", "sub-01", "sessions", "ses-1", "images", 2, "image_path"]),
    "datasets.ds000001.subjects.sub-01.sessions.ses-1.images[2].image_path",
  );
  assert.equal(formatJsonPath(["datasets", "a.b"]), 'datasets["a.b"]');
  assert.equal(formatJsonPath([]), "(root)");
});

test("a valid document parses with defaults filled and paths resolved", () => {
  const c = resolveCollectionPaths(parseCollection(doc(), "/x/pretrain_data.json"), {
    env,
    file: "/x/pretrain_data.json",
  });
  const imgs = c.datasets.ds000001!.subjects["sub-01"]!.sessions["ses-1"]!.images;
  assert.equal(imgs[0]!.image_path, "/data/raw/Dataset745/ds000001/sub-01/ses-1/anat/sub-01_T1w.nii.gz");
  assert.equal(imgs[0]!.associated_masks?.anonymization_mask, "/om/m/anon.nii.gz");
  assert.equal(imgs[0]!.image_info, null);
  assert.equal(imgs[1]!.associated_masks, null);
  assert.equal(imgs[2]!.image_path, "/x/rel/fa.nii.gz");
  assert.equal(c.datasets.ds000001!.name, null);
  assert.equal(c.datasets.ds000001!.subjects["sub-01"]!.sessions["ses-1"]!.session_info, null);
});

const bad: [string, (d: Record<string, unknown>) => void, RegExp][] = [
  [
    "wrong type of image_path",
    (d) => {
      dig(d, ...img0).image_path = 42;
    },
    /images\[0\]\.image_path: expected string, received number/,
  ],
  [
    "missing modality",
    (d) => {
      delete dig(d, ...img0).modality;
    },
    /images\[0\]\.modality: expected string, received undefined/,
  ],
  [
    "unknown image key",
    (d) => {
      dig(d, ...img0).extra = 1;
    },
    /images\[0\]: Unrecognized key: "extra"/,
  ],
  [
    "mask key missing",
    (d) => {
      delete dig(d, ...img0, "associated_masks").anatomy_mask;
    },
    /associated_masks\.anatomy_mask: expected string, received undefined/,
  ],
  [
    "collection_index boolean",
    (d) => {
      d.collection_index = true;
    },
    /collection_index: expected string or number/,
  ],
  [
    "subjects not an object",
    (d) => {
      dig(d, "datasets", "ds000001").subjects = [];
    },
    /datasets\.ds000001\.subjects: expected record, received array/,
  ],
  [
    "key mismatch",
    (d) => {
      dig(d, "datasets", "ds000001", "subjects", "sub-01").subject_id = "sub-02";
    },
    /subjects\.sub-01\.subject_id: subject_id "sub-02" differs from its key/,
  ],
  [
    "duplicate names",
    (d) => {
      dig(d, "datasets", "ds000001", "subjects", "sub-01", "sessions", "ses-1", "images", 1).name = "sub-01_T1w.nii.gz";
    },
    /images\[1\]\.name: duplicate image name/,
  ],
];
for (const [name, mutate, re] of bad) {
  test(`invalid document: ${name} names file and JSON path`, () => {
    const d = doc();
    mutate(d);
    assert.throws(
      () => parseCollection(d, "/x/pretrain_data.json"),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith("/x/pretrain_data.json: ") && re.test(e.message),
    );
  });
}

test("$ paths: unset variable and .. escaping the root are errors; .. inside the root is fine", () => {
  const ctx = { env, file: "/x/p.json" };
  assert.throws(
    () => resolvePath("$nope/a", ctx, "f"),
    (e: unknown) => e instanceof ConfigError && /needs environment variable nope/.test(e.message),
  );
  assert.throws(
    () => resolvePath("$nnssl_raw/../etc/passwd", ctx, "f"),
    (e: unknown) => e instanceof ConfigError && /escapes the root \$nnssl_raw/.test(e.message),
  );
  assert.throws(() => resolvePath("$nnssl_raw/a/../../b", ctx, "f"), /escapes/);
  assert.equal(resolvePath("$nnssl_raw/a/../b", ctx, "f"), "/data/raw/b");
  assert.equal(resolvePath("$nnssl_raw", ctx, "f"), "/data/raw");
  assert.equal(
    resolvePath("$nnssl_preprocessed/x", { env: { ...env, rocket_preprocessed: "/rocket" }, file: "/x/p.json" }, "f"),
    "/rocket/x",
  );
});

test("paths are written back relative to nnssl_raw first, then nnssl_preprocessed, without mutating the input", () => {
  assert.equal(relativizePath("/data/raw/a/b.nii", env), "$nnssl_raw/a/b.nii");
  assert.equal(relativizePath("/data/pre/x.nii", env), "$nnssl_preprocessed/x.nii");
  assert.equal(relativizePath("/data/rawish/x.nii", env), "/data/rawish/x.nii");
  assert.equal(relativizePath("/elsewhere/x.nii", env), "/elsewhere/x.nii");
  assert.equal(
    relativizePath("/data/raw/x.nii", { nnssl_raw: "/data", nnssl_preprocessed: "/data/raw" }),
    "$nnssl_raw/raw/x.nii",
  );
  const c = resolveCollectionPaths(parseCollection(doc(), "/x/p.json"), { env, file: "/x/p.json" });
  const before = JSON.stringify(c);
  const out = serializeCollection(c, env);
  assert.equal(JSON.stringify(c), before);
  const imgs = out.datasets.ds000001!.subjects["sub-01"]!.sessions["ses-1"]!.images;
  assert.equal(imgs[0]!.image_path, "$nnssl_raw/Dataset745/ds000001/sub-01/ses-1/anat/sub-01_T1w.nii.gz");
  assert.equal(imgs[0]!.associated_masks?.anonymization_mask, "/om/m/anon.nii.gz");
  // every key present, upstream order
  assert.deepEqual(Object.keys(out), ["collection_index", "collection_name", "datasets"]);
  assert.deepEqual(Object.keys(out.datasets.ds000001!), ["dataset_index", "name", "dataset_info", "subjects"]);
  assert.deepEqual(Object.keys(imgs[1]!), ["name", "image_path", "modality", "image_info", "associated_masks"]);
  assert.deepEqual(Object.keys(imgs[0]!.associated_masks), ["anonymization_mask", "anatomy_mask"]);
});

test("flattening gives upstream identifiers and output paths", () => {
  const c: Collection = resolveCollectionPaths(parseCollection(doc(), "/x/p.json"), { env, file: "/x/p.json" });
  const flat = flattenCollection(c);
  assert.equal(flat.length, 3);
  const [a, b] = flat;
  assert.equal(uniqueId(a!), "Dataset745_OpenNeuro__ds000001__sub-01__ses-1__sub-01_T1w.nii.gz");
  assert.equal(uniqueSubjectId(a!), "Dataset745_OpenNeuro__ds000001__sub-01");
  assert.equal(outputPath(a!), "Dataset745_OpenNeuro/ds000001/sub-01/ses-1/sub-01_T1w");
  assert.equal(outputPath(a!, "anon", ".zarr"), "Dataset745_OpenNeuro/ds000001/sub-01/ses-1/sub-01_T1w__anon.zarr");
  assert.equal(outputPath(b!, "anat", ".json"), "Dataset745_OpenNeuro/ds000001/sub-01/ses-1/sub-01_T2w__anat.json");
  assert.deepEqual(b!.associated_masks, { anonymization_mask: null, anatomy_mask: null });
  assert.equal(a!.subject_info?.age, 30);
  assert.equal(imageStem("x.nrrd"), "x");
  assert.equal(imageStem("x.mha"), "x.mha");
});

test("modality and OpenMind IQS filters", () => {
  const c = resolveCollectionPaths(parseCollection(doc(), "/x/p.json"), { env, file: "/x/p.json" });
  assert.deepEqual(
    flattenCollection(c, [modalityFilter(["T1w", "FA"])]).map((i) => i.image_modality),
    ["T1w", "FA"],
  );
  assert.deepEqual(
    flattenCollection(c, [openMindIqsFilter(c, 2.5)]).map((i) => i.image_modality),
    ["T1w", "FA"],
  );
  assert.deepEqual(
    flattenCollection(c, [openMindIqsFilter(c, 1.5)]).map((i) => i.image_modality),
    ["T1w"],
  );
  assert.deepEqual(
    flattenCollection(c, [openMindIqsFilter(c, 3.5), modalityFilter(["T2w"])]).map((i) => i.image_modality),
    ["T2w"],
  );
  const noIqs = parseCollection(
    { ...doc(), datasets: { ds000001: { ...dig(doc(), "datasets", "ds000001"), dataset_info: null } } },
    "/x/p.json",
  );
  assert.throws(() => openMindIqsFilter(noIqs, 2), /dataset_info\.image_quality_score/);
});

test("counts per level and per modality", () => {
  const c = parseCollection(doc(), "/x/p.json");
  assert.deepEqual(countCollection(c), {
    datasets: 1,
    subjects: 1,
    sessions: 1,
    images: 3,
    modalities: { FA: 1, T1w: 1, T2w: 1 },
  });
});
