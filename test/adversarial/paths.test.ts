/**
 * Adversarial tier, "nothing escapes its root" (docs/limits-and-safety.md, "Paths and roots"): hostile names in
 * pretrain_data.json (image `name`, `subject_id`, `session_id`, `dataset_index`, `collection_name`), hostile dataset
 * / plans / configuration names on the command line, output-name collisions and a symbolic link planted inside the
 * output folder. Every case: exit code 2, one line naming the file and the field, bounded time and memory, and the
 * sentinel files outside the roots (a `.json`, a `.zarr`, an `__anon.zarr` where the hostile names point) untouched.
 */
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTestDataset, type TestDataset } from "../helpers/preprocess-dataset.js";
import { assertFails, Sentinels, ssl3d } from "./helpers/cli.js";

const BOUNDS = { maxMs: 120_000, maxMiB: 1024 };
const work = mkdtempSync(join(tmpdir(), "ssl3d-adv-paths-"));
let ds: TestDataset;
let collectionFile: string;
let original: string;
const sentinels = new Sentinels();

before(async () => {
  ds = await makeTestDataset(join(work, "root"), { images: 2, shape: [20, 20, 20], masks: true });
  collectionFile = join(ds.rawDir, "pretrain_data.json");
  original = readFileSync(collectionFile, "utf8");
  // what `../../..`-style names would reach from $nnssl_preprocessed/<Dataset>/nnsslPlans_onemmiso/...
  for (const d of [work, join(work, "root"), join(work, "outside")]) {
    sentinels.add(d, "x.json");
    sentinels.add(d, "x.zarr/");
    sentinels.add(d, "x__anon.zarr/");
  }
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

interface Img {
  name: string;
  [k: string]: unknown;
}
interface Session {
  session_id: string;
  images: Img[];
  [k: string]: unknown;
}
interface Subject {
  subject_id: string;
  sessions: Record<string, Session>;
  [k: string]: unknown;
}
interface Dataset {
  dataset_index: string;
  subjects: Record<string, Subject>;
  [k: string]: unknown;
}
interface Doc {
  collection_name: string;
  datasets: Record<string, Dataset>;
}

/** Edit the collection document and write the file back. */
function withCollection(edit: (c: Doc) => void): void {
  const c = JSON.parse(original) as Doc;
  edit(c);
  writeFileSync(collectionFile, JSON.stringify(c, null, 2));
}

function firstSession(c: Doc): Session {
  return c.datasets.ds000001!.subjects["sub-01"]!.sessions["ses-DEFAULT"]!;
}

async function planAndPreprocess(extra: string[] = []): Promise<Awaited<ReturnType<typeof ssl3d>>> {
  return ssl3d(["plan-and-preprocess", "-d", "1", "-np", "1", "-npfp", "1", ...extra], ds.env);
}

// the first lands exactly on the sentinels in <work>/root (7 levels up from the session folder), as in issue 13
const hostileNames = [
  "../../../../../../../x.nii.gz",
  "../../../x",
  "../../../x.nii.gz",
  "a/../../../../x.nii.gz",
  "..",
  ".",
  "a\\b.nii.gz",
  "nul\u0000.nii.gz",
  "x".repeat(300) + ".nii.gz",
  ".nii.gz",
];

for (const name of hostileNames) {
  test(`image name ${JSON.stringify(name.length > 40 ? name.slice(0, 20) + "..." : name)}: exit 2 naming the file and images[0].name, nothing outside touched`, async () => {
    withCollection((c) => {
      firstSession(c).images[0]!.name = name;
    });
    const r = await planAndPreprocess();
    assertFails(r, 2, [/pretrain_data\.json/, /images\[0\]\.name/], BOUNDS);
    sentinels.check();
  });
}

test("subject_id, session_id, dataset_index and collection_name with path separators or '..': exit 2 naming the field", async () => {
  const cases: [string, (c: Doc) => void, RegExp][] = [
    [
      "subject",
      (c) => {
        const d = c.datasets.ds000001!;
        const s = d.subjects["sub-01"]!;
        s.subject_id = "../../..";
        d.subjects = { "../../..": s };
      },
      /subject_id/,
    ],
    [
      "session",
      (c) => {
        const subj = c.datasets.ds000001!.subjects["sub-01"]!;
        const e = subj.sessions["ses-DEFAULT"]!;
        e.session_id = "../x";
        subj.sessions = { "../x": e };
      },
      /session_id/,
    ],
    [
      "dataset",
      (c) => {
        const d = c.datasets.ds000001!;
        d.dataset_index = "../../..";
        c.datasets = { "../../..": d };
      },
      /dataset_index/,
    ],
    [
      "collection",
      (c) => {
        c.collection_name = "..";
      },
      /collection_name/,
    ],
  ];
  for (const [what, edit, field] of cases) {
    withCollection(edit);
    const r = await planAndPreprocess();
    assertFails(r, 2, [/pretrain_data\.json/, field], BOUNDS);
    sentinels.check();
    assert.ok(what.length > 0);
  }
});

test("image names that share an output file (a.nii vs a.nii.gz, a.nii.gz vs a__anon.nii.gz): exit 2, no image deletes another's arrays", async () => {
  for (const [first, second] of [
    ["a.nii", "a.nii.gz"],
    ["a.nii.gz", "a__anon.nii.gz"],
    ["b__anat.nii.gz", "b.nii.gz"],
  ] as const) {
    withCollection((c) => {
      const s = firstSession(c);
      const img = s.images[0]!;
      s.images = [
        { ...img, name: first },
        { ...img, name: second },
      ];
    });
    const r = await planAndPreprocess();
    assertFails(r, 2, [/pretrain_data\.json/, /images\[1\]\.name/, /same output file|duplicate/], BOUNDS);
  }
  sentinels.check();
});

test("hostile dataset, plans and configuration names on the command line: exit 2 before anything is written", async () => {
  writeFileSync(collectionFile, original);
  const pp = ds.env.nnssl_preprocessed!;
  const before = existsSync(pp) ? readdirSync(pp).sort() : [];
  const cases: [string[], RegExp][] = [
    [["plan-and-preprocess", "-d", "Dataset001_../../../outside", "-np", "1"], /dataset name/],
    [["plan-and-preprocess", "-d", "1", "-np", "1", "-p", "../../../x"], /plans name/],
    [["plan", "-d", "1", "--plans-name", "../x"], /plans name/],
    [["preprocess", "-d", "1", "--plans-name", "a/b", "-np", "1"], /plans name/],
    [["train", "1", "../../x", "-tr", "BaseMAETrainer"], /configuration name/],
    [["train", "1", "onemmiso", "-tr", "BaseMAETrainer", "-p", "../../x"], /plans name/],
  ];
  for (const [args, pattern] of cases) {
    const r = await ssl3d(args, ds.env);
    assertFails(r, 2, [pattern], BOUNDS);
  }
  assert.deepEqual(existsSync(pp) ? readdirSync(pp).sort() : [], before);
  sentinels.check();
});

test("a symbolic link planted inside the output folder cannot redirect writes outside the root", async () => {
  writeFileSync(collectionFile, original);
  const ok = await planAndPreprocess();
  assert.equal(ok.status, 0, ok.stderr);
  const subject = join(
    ds.env.nnssl_preprocessed!,
    ds.datasetName,
    "nnsslPlans_onemmiso",
    ds.datasetName,
    "ds000001",
    "sub-01",
  );
  const target = join(work, "outside", "linked");
  mkdirSync(target, { recursive: true });
  rmSync(subject, { recursive: true, force: true });
  symlinkSync(target, subject);
  const r = await planAndPreprocess();
  assertFails(r, 2, [/outside its root|symbolic link/], BOUNDS);
  assert.deepEqual(readdirSync(target), [], "nothing was written through the link");
  sentinels.check();
});

test("preprocessing removes only its own temporary files, never another image's", async () => {
  writeFileSync(collectionFile, original);
  rmSync(join(ds.env.nnssl_preprocessed!, ds.datasetName), { recursive: true, force: true });
  const ok = await planAndPreprocess();
  assert.equal(ok.status, 0, ok.stderr);
  const session = join(
    ds.env.nnssl_preprocessed!,
    ds.datasetName,
    "nnsslPlans_onemmiso",
    ds.datasetName,
    "ds000001",
    "sub-01",
    "ses-DEFAULT",
  );
  // leftovers of a killed write of this image (removed) and files that merely start with its name (kept)
  const mine = [
    ".sub-01_T1w.zarr.tmp-4242-0badcafe",
    ".sub-01_T1w__anon.zarr.tmp-4242-0badcafe",
    ".sub-01_T1w.json.tmp-4242-0badcafe",
  ];
  const others = [".sub-01_T1w2.zarr.tmp-4242-0badcafe", ".sub-01_T1w.zarr.tmp-not-ours", "notes.txt"];
  for (const n of [...mine, ...others]) writeFileSync(join(session, n), "x");
  const pp = join(ds.env.nnssl_preprocessed!, ds.datasetName);
  const stageTemps = [
    join(pp, ".valid_imgs.json.tmp-4242-0badcafe"),
    join(pp, ".pretrain_data__onemmiso.json.tmp-4242-0badcafe"),
    join(pp, "nnsslPlans_onemmiso", ".failed_imgs.json.tmp-4242-0badcafe"),
  ];
  const stageKeep = join(pp, ".valid_imgs.json.bak");
  for (const f of [...stageTemps, stageKeep]) writeFileSync(f, "x");
  rmSync(join(session, "sub-01_T1w.json")); // forces the image to be redone
  const r = await planAndPreprocess();
  assert.equal(r.status, 0, r.stderr);
  for (const n of mine) assert.ok(!existsSync(join(session, n)), `${n} should be removed`);
  for (const n of others) assert.ok(existsSync(join(session, n)), `${n} must be kept`);
  for (const f of stageTemps) assert.ok(!existsSync(f), `${f} should be removed`);
  assert.ok(existsSync(stageKeep), "files that are not its temporaries are kept");
  sentinels.check();
});
