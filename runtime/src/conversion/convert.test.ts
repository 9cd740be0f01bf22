import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { flattenCollection, modalityFilter, openMindIqsFilter } from "../config/collection.js";
import { generatePhantom, writePhantomBids } from "../data/phantom.js";
import { ConfigError, DataError } from "../errors.js";
import { readCollection } from "../io/collection-file.js";
import { writeNifti } from "../io/nifti.js";
import type { Problem } from "./scan.js";
import { convert } from "./convert.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-convert-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});
let n = 0;
function fresh(): { dir: string; env: Record<string, string> } {
  const dir = join(tmp, `case-${n++}`);
  mkdirSync(dir, { recursive: true });
  return { dir, env: { nnssl_raw: join(dir, "raw"), nnssl_preprocessed: join(dir, "pre") } };
}

test("BIDS with sessions and masks: counts, names, masks paired, paths relative to nnssl_raw", async () => {
  const { env } = fresh();
  const src = join(env.nnssl_raw!, "Dataset007_Bids", "ds000007");
  await writePhantomBids(src, {
    seed: 3,
    subjects: 2,
    sessions: 2,
    modalities: ["T1w", "T2w"],
    masks: true,
    sizeRange: [8, 10],
  });
  writeFileSync(join(src, "sub-01", "ses-1", "anat", "sub-01_ses-1_T1w.json"), "{}");
  writeFileSync(join(src, "dataset_description.json"), "{}");
  const r = await convert({ kind: "bids", src, datasetId: 7, name: "Bids", onError: "fail", env });
  assert.deepEqual(r.counts, { datasets: 1, subjects: 2, sessions: 4, images: 8, modalities: { T1w: 4, T2w: 4 } });
  assert.equal(r.ignored.length, 1);
  assert.equal(r.output, join(env.nnssl_raw!, "Dataset007_Bids", "pretrain_data.json"));
  const text = readFileSync(r.output, "utf8");
  assert.match(text, /"\$nnssl_raw\/Dataset007_Bids\/ds000007\/sub-01\/ses-1\/anat\/sub-01_ses-1_T1w\.nii\.gz"/);
  const c = await readCollection(r.output, { env });
  assert.equal(c.collection_name, "Dataset007_Bids");
  assert.equal(c.collection_index, 7);
  const flat = flattenCollection(c);
  assert.deepEqual(flat.map((i) => `${i.subject_id}/${i.session_id}/${i.image_name}`).slice(0, 2), [
    "sub-01/ses-1/sub-01_ses-1_T1w.nii.gz",
    "sub-01/ses-1/sub-01_ses-1_T2w.nii.gz",
  ]);
  assert.ok(
    flat.every(
      (i) =>
        i.associated_masks.anonymization_mask?.endsWith("_desc-anonmask.nii.gz") === true &&
        i.associated_masks.anatomy_mask?.endsWith("_desc-anatmask.nii.gz") === true,
    ),
  );
  assert.equal(flattenCollection(c, [modalityFilter(["T2w"])]).length, 4);
});

test("a folder of BIDS datasets without session level becomes several datasets with ses-DEFAULT", async () => {
  const { dir, env } = fresh();
  await writePhantomBids(join(dir, "src", "dsA"), {
    seed: 1,
    subjects: 1,
    sessions: 0,
    modalities: ["FLAIR"],
    sizeRange: [8, 9],
  });
  await writePhantomBids(join(dir, "src", "dsB"), {
    seed: 2,
    subjects: 2,
    sessions: 0,
    modalities: ["T1w"],
    sizeRange: [8, 9],
  });
  mkdirSync(join(dir, "src", "notes"));
  const r = await convert({ kind: "bids", src: join(dir, "src"), datasetId: 8, name: "Multi", onError: "fail", env });
  assert.deepEqual(r.counts, { datasets: 2, subjects: 3, sessions: 3, images: 3, modalities: { FLAIR: 1, T1w: 2 } });
  const c = await readCollection(r.output, { env });
  assert.deepEqual(Object.keys(c.datasets), ["dsA", "dsB"]);
  assert.deepEqual(Object.keys(c.datasets.dsB!.subjects["sub-01"]!.sessions), ["ses-DEFAULT"]);
});

test("unusable files: fail writes nothing and names them; skip converts the rest and lists them", async () => {
  const { dir, env } = fresh();
  const src = join(dir, "bids");
  const files = await writePhantomBids(src, {
    seed: 4,
    subjects: 3,
    sessions: 0,
    modalities: ["T1w"],
    sizeRange: [8, 9],
  });
  const gz = readFileSync(files[1]!);
  writeFileSync(files[1]!, gz.subarray(0, gz.length - 40)); // truncated .nii.gz
  writeFileSync(
    join(src, "sub-03", "anat", "sub-03_T2w.nii"),
    "not a nifti at all, just text that is long enough to have a header..........................................................................................................................................................................................................................................................................................................................",
  );
  writeFileSync(join(src, "sub-03", "anat", "sub-03_PDw_desc-anonmask.nii.gz"), "");
  const seen: Problem[] = [];
  await assert.rejects(
    convert({ kind: "bids", src, datasetId: 9, name: "Broken", onError: "fail", env, onProblem: (p) => seen.push(p) }),
    (e: unknown) =>
      e instanceof DataError &&
      /conversion failed: 3 unusable file\(s\) \(listed above\); nothing written/.test(e.message),
  );
  assert.equal(existsSync(join(env.nnssl_raw!, "Dataset009_Broken")), false);
  const reasons = seen.map((p) => `${p.file.slice(src.length + 1)}: ${p.reason}`).sort();
  assert.match(
    reasons[0]!,
    /^sub-02\/anat\/sub-02_T1w\.nii\.gz: (truncated gzip stream|data shorter than the header claims)/,
  );
  assert.match(reasons[1]!, /^sub-03\/anat\/sub-03_PDw_desc-anonmask\.nii\.gz: mask without an image/);
  assert.match(reasons[2]!, /^sub-03\/anat\/sub-03_T2w\.nii: sizeof_hdr: not a NIfTI file/);
  const r = await convert({ kind: "bids", src, datasetId: 9, name: "Broken", onError: "skip", env, jobs: 1 });
  assert.equal(r.counts.images, 2);
  assert.equal(r.skipped.length, 3);
  const text1 = readFileSync(r.output, "utf8");
  // concurrency does not change the result or the order of the report
  const r4 = await convert({ kind: "bids", src, datasetId: 9, name: "Broken", onError: "skip", env, jobs: 4 });
  assert.equal(readFileSync(r4.output, "utf8"), text1);
  assert.deepEqual(r4.skipped, r.skipped);
});

test("a mask whose grid differs from its image is unusable", async () => {
  const { dir, env } = fresh();
  const anat = join(dir, "bids", "sub-01", "anat");
  const a = generatePhantom({ seed: 1, shape: [6, 6, 6] }).volume;
  await writeNifti(join(anat, "sub-01_T1w.nii.gz"), a);
  await writeNifti(
    join(anat, "sub-01_T1w_desc-anatmask.nii.gz"),
    { ...a, shape: [6, 6, 5], data: new Float32Array(180) },
    "uint8",
  );
  await assert.rejects(
    convert({ kind: "bids", src: join(dir, "bids"), datasetId: 10, name: "M", onError: "fail", env }),
    /anatomy mask shape 6x6x5 differs/,
  );
});

test("folder mode: modality from option, known suffix, or unknown; ID clash and empty sources are errors", async () => {
  const { dir, env } = fresh();
  const v = generatePhantom({ seed: 2, shape: [5, 5, 5] }).volume;
  await writeNifti(join(dir, "f", "scan_FLAIR.nii"), v);
  await writeNifti(join(dir, "f", "nested", "brain.nii.gz"), v);
  let r = await convert({ kind: "folder", src: join(dir, "f"), datasetId: 11, name: "F", onError: "fail", env });
  const c = await readCollection(r.output, { env });
  assert.deepEqual(
    flattenCollection(c).map((i) => [i.subject_id, i.image_modality]),
    [
      ["nested_brain", "unknown"],
      ["scan_FLAIR", "FLAIR"],
    ],
  );
  r = await convert({
    kind: "folder",
    src: join(dir, "f"),
    datasetId: 11,
    name: "F",
    onError: "fail",
    modality: "T1w",
    env,
  });
  assert.deepEqual(r.counts.modalities, { T1w: 2 });
  await assert.rejects(
    convert({ kind: "folder", src: join(dir, "f"), datasetId: 11, name: "Other", onError: "fail", env }),
    (e: unknown) => e instanceof ConfigError && /already used by Dataset011_F/.test(e.message),
  );
  mkdirSync(join(dir, "empty"));
  await assert.rejects(
    convert({ kind: "folder", src: join(dir, "empty"), datasetId: 12, name: "E", onError: "skip", env }),
    /no usable NIfTI images/,
  );
  await assert.rejects(
    convert({ kind: "folder", src: join(dir, "nope"), datasetId: 12, name: "E", onError: "skip", env }),
    /source folder not found/,
  );
  await assert.rejects(
    convert({ kind: "folder", src: join(dir, "f"), datasetId: 12, name: "E", onError: "skip", env: {} }),
    /nnssl_raw is not set/,
  );
});

test("OpenMind layout: CSV metadata, sessions, derived-image names, masks, infos, IQS table usable by the filter", async () => {
  const { dir, env } = fresh();
  const om = join(dir, "download", "OpenMind");
  const v = generatePhantom({ seed: 5, shape: [6, 5, 4] }).volume;
  const rel = [
    "ds000001/sub-01/ses-A/anat/sub-01_ses-A_T1w.nii.gz",
    "ds000001/sub-01/anat/sub-01_T2w.nii.gz",
    "ds000001/sub-02/anat/dwi_fa/sub-02_FA.nii.gz",
    "ds000002/sub-01/anat/sub-01_T1w.nii.gz",
  ];
  for (const r of rel) await writeNifti(join(om, r), v);
  await writeNifti(join(om, "masks/ds000001_sub-01_T1w_anon.nii.gz"), { ...v, data: new Float32Array(120) }, "uint8");
  copyFileSync(join(om, rel[0]!), join(om, "ds000002/sub-01/anat/sub-01_T1w_copy.nii.gz"));
  writeFileSync(
    join(dir, "download", "openneuro_metadata.csv"),
    [
      "unique_id,image_path,modality,age,sex,derived_from,manufacturer,image_quality_score,anon_mask_path,anat_mask_path",
      `ds000001_1,${rel[0]},T1w,31.0,F,,Siemens,1.2,masks/ds000001_sub-01_T1w_anon.nii.gz,`,
      `ds000001_2,${rel[1]},T2w,31.0,F,,"Siemens, Inc",2.9,,`,
      `ds000001_3,${rel[2]},FA,,M,DWI,,2.0,,`,
      `ds000002_1,${rel[3]},T1w,nan,,,GE,3.4,,`,
    ].join("\n") + "\n",
  );
  const r = await convert({
    kind: "openmind",
    src: join(dir, "download"),
    datasetId: 745,
    name: "OpenMind",
    onError: "fail",
    env,
  });
  assert.deepEqual(r.counts, {
    datasets: 2,
    subjects: 3,
    sessions: 4,
    images: 4,
    modalities: { FA: 1, T1w: 2, T2w: 1 },
  });
  const c = await readCollection(r.output, { env });
  const flat = flattenCollection(c);
  const byMod = (m: string, ds = "ds000001"): (typeof flat)[number] =>
    flat.find((i) => i.image_modality === m && i.dataset_index === ds)!;
  assert.equal(byMod("T1w").session_id, "ses-A");
  assert.equal(byMod("T2w").session_id, "ses-DEFAULT");
  // upstream: parent folder name minus its last 5 characters ("dwi_fa" → "d") + file name
  assert.equal(byMod("FA").image_name, "dsub-02_FA.nii.gz");
  assert.deepEqual(byMod("FA").image_info, { derived_from: "DWI" });
  assert.deepEqual(byMod("T1w").subject_info, { age: 31, sex: "F" });
  assert.deepEqual(byMod("T2w").image_info, { manufacturer: "Siemens, Inc" });
  assert.equal(byMod("T1w").associated_masks.anonymization_mask, join(om, "masks/ds000001_sub-01_T1w_anon.nii.gz"));
  assert.equal(byMod("T1w").associated_masks.anatomy_mask, null);
  assert.deepEqual(
    flattenCollection(c, [openMindIqsFilter(c, 2.5)]).map((i) => `${i.dataset_index}/${i.image_modality}`),
    ["ds000001/T1w", "ds000001/FA"],
  );
  // a row pointing to a missing file is listed
  writeFileSync(
    join(dir, "download", "openneuro_metadata.csv"),
    "image_path,modality\nds000009/sub-01/anat/x_T1w.nii.gz,T1w\n",
  );
  await assert.rejects(
    convert({ kind: "openmind", src: join(dir, "download"), datasetId: 745, name: "OpenMind", onError: "fail", env }),
    /x_T1w\.nii\.gz: file not found/,
  );
});
