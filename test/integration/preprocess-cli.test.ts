/**
 * The preprocessing CLI end to end on phantom NIfTI datasets, as subprocesses: plan-and-preprocess output
 * layout and summary, the nnssl aliases with legacy flags, kill -9 in the middle + re-run = byte-identical to an
 * uninterrupted run, and unreadable images with --on-error fail / skip.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, test } from "node:test";
import { openZarrVolume } from "../../runtime/src/io/zarr-volume.js";
import { listPreprocessedImages } from "../../runtime/src/preprocessing/dataset.js";
import { makeTestDataset } from "../helpers/preprocess-dataset.js";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "ssl3d.mjs");
const NODE = join(ROOT, "node_modules", ".bin", "node");
const work = mkdtempSync(join(tmpdir(), "ssl3d-pp-cli-"));
after(() => {
  rmSync(work, { recursive: true, force: true });
});

function cli(
  args: string[],
  env: NodeJS.ProcessEnv,
  argv0 = BIN,
): { status: number | null; stdout: string; stderr: string } {
  // cwd outside the repository: worker threads must find tsx from the runtime, not from the working directory
  const r = spawnSync(NODE, [argv0, ...args], {
    cwd: work,
    env: { ...env, SSL3D_LOG_LEVEL: "warn" },
    encoding: "utf8",
    timeout: 300_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every file under `dir` (relative path -> bytes), temporary files included. */
function snapshot(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

test("plan-and-preprocess: fingerprint, plan, Zarr store with masks, collection copy, valid list, summary", async () => {
  const ds = await makeTestDataset(join(work, "a"), { images: 3, masks: true });
  const termLog = join(work, "a", "termination-log");
  const r = cli(["plan-and-preprocess", "-d", "1", "-np", "2", "-npfp", "2"], {
    ...ds.env,
    SSL3D_TERMINATION_LOG: termLog,
  });
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(readFileSync(termLog, "utf8")) as Record<string, unknown>;
  const pp = join(ds.env.nnssl_preprocessed!, ds.datasetName);
  assert.deepEqual(summary, {
    images: 3,
    valid: 3,
    failed: 0,
    configurations: ["onemmiso"],
    plansFile: join(pp, "nnsslPlans.json"),
    preprocessedDir: pp,
  });
  assert.deepEqual(JSON.parse(r.stdout.trim().split("\n").at(-1)!), summary);

  const fp = JSON.parse(readFileSync(join(pp, "dataset_fingerprint.json"), "utf8")) as {
    spacings: number[][];
    images: { shape: number[] }[];
  };
  assert.equal(fp.spacings.length, 3);
  assert.deepEqual(
    fp.spacings[1],
    [1.5, 0.8, 0.8].map(Math.fround),
    "array-axis (z, y, x) order as upstream (float32 pixdim)",
  );
  const plans = JSON.parse(readFileSync(join(pp, "nnsslPlans.json"), "utf8")) as {
    configurations: Record<string, unknown>;
    transpose_forward: number[];
  };
  assert.deepEqual(Object.keys(plans.configurations), ["onemmiso", "median", "noresample"]);
  assert.deepEqual(plans.transpose_forward, [0, 1, 2]);

  const imgs = await listPreprocessedImages(ds.datasetName, "onemmiso", "nnsslPlans", ds.env);
  assert.equal(imgs.length, 3);
  const first = imgs[0]!;
  assert.equal(first.uniqueId, `${ds.datasetName}__ds000001__sub-01__ses-DEFAULT__sub-01_T1w.nii.gz`);
  assert.equal(first.uniqueSubjectId, `${ds.datasetName}__ds000001__sub-01`);
  assert.ok(
    first.anonMask?.endsWith("sub-01_T1w__anon.zarr") === true &&
      first.anatMask?.endsWith("sub-01_T1w__anat.zarr") === true,
  );
  assert.equal(imgs[1]!.anonMask, undefined);
  const props = JSON.parse(readFileSync(first.properties, "utf8")) as {
    shape: number[];
    bbox_used_for_cropping: number[][];
    spacing: number[];
    target_spacing: number[];
  };
  assert.deepEqual(props.target_spacing, [1, 1, 1]);
  const vol = await openZarrVolume(first.image);
  assert.deepEqual(vol.shape, props.shape);
  const data = await vol.readAll();
  let s = 0;
  let ss = 0;
  for (const v of data) {
    s += v;
    ss += v * v;
  }
  const mean = s / data.length;
  assert.ok(
    Math.abs(mean) < 0.1 && Math.abs(Math.sqrt(ss / data.length - mean * mean) - 1) < 0.1,
    "z-scored before resampling: about N(0, 1) after",
  );
  await vol.close();
  const anon = await openZarrVolume(first.anonMask);
  const values = new Set(await anon.readAll());
  await anon.close();
  assert.ok(
    [...values].every((v) => v === -1 || v === 0 || v === 1),
    `mask values ${[...values].join(",")}`,
  );
  assert.ok(values.has(1), "anonymization mask kept under its own name (not swapped with the anatomy mask)");

  const copy = JSON.parse(readFileSync(join(pp, "pretrain_data__onemmiso.json"), "utf8")) as {
    datasets: Record<
      string,
      { subjects: Record<string, { sessions: Record<string, { images: { image_path: string }[] }> }> }
    >;
  };
  const p0 = copy.datasets.ds000001!.subjects["sub-01"]!.sessions["ses-DEFAULT"]!.images[0]!.image_path;
  assert.equal(
    p0,
    `$nnssl_preprocessed/${ds.datasetName}/nnsslPlans_onemmiso/${ds.datasetName}/ds000001/sub-01/ses-DEFAULT/sub-01_T1w.zarr`,
  );
  assert.ok(existsSync(join(pp, "valid_imgs.json")));

  // nnssl aliases with their legacy flags: the 3-step route, split into two parts
  const alias = (name: string): string => {
    const link = join(work, name);
    if (!existsSync(link)) symlinkSync(BIN, link);
    return link;
  };
  const ok = (res: { status: number | null; stderr: string }): void => {
    assert.equal(res.status, 0, res.stderr);
  };
  ok(cli(["-d", "1", "-np", "1", "--clean"], ds.env, alias("nnssl_extract_fingerprint")));
  ok(cli(["-d", "1", "-pl", "ExperimentPlanner"], ds.env, alias("nnssl_plan_experiment")));
  ok(
    cli(
      ["-d", "1", "-c", "median", "-np", "1", "-part", "0", "-total_parts", "2", "-plans_name", "nnsslPlans"],
      ds.env,
      alias("nnssl_preprocess"),
    ),
  );
  assert.ok(
    existsSync(join(pp, "nnsslPlans_median", "valid_imgs__0_of_2.json")),
    "part list kept until all parts are done",
  );
  assert.ok(!existsSync(join(pp, "nnsslPlans_median", "valid_imgs.json")));
  ok(
    cli(["-d", "1", "-c", "median", "-np", "1", "-part", "1", "-total_parts", "2"], ds.env, alias("nnssl_preprocess")),
  );
  assert.ok(!existsSync(join(pp, "nnsslPlans_median", "valid_imgs__0_of_2.json")), "part lists merged and removed");
  assert.equal((await listPreprocessedImages(ds.datasetName, "median", "nnsslPlans", ds.env)).length, 3);
});

test("kill -9 in the middle, re-run: complete and byte-identical to an uninterrupted run; nothing half-done is listed", async () => {
  const ds = await makeTestDataset(join(work, "k"), { images: 6, shape: [112, 112, 96] });
  const envA = { ...ds.env, nnssl_preprocessed: join(work, "k", "ppA") };
  const envB = { ...ds.env, nnssl_preprocessed: join(work, "k", "ppB") };
  const args = ["plan-and-preprocess", "-d", "1", "-np", "1", "-npfp", "1"];
  assert.equal(cli(args, envA).status, 0);

  const cfgDir = join(envB.nnssl_preprocessed, ds.datasetName, "nnsslPlans_onemmiso");
  const child = spawn(NODE, [BIN, ...args], { env: { ...envB, SSL3D_LOG_LEVEL: "warn" }, stdio: "ignore" });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on("exit", (_code, sig) => {
      resolve(sig);
    }),
  );
  const countMarkers = (): number => {
    let n = 0;
    const walk = (d: string): void => {
      if (!existsSync(d)) return;
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory() && !e.name.endsWith(".zarr")) walk(join(d, e.name));
        else if (e.isFile() && e.name.endsWith(".json") && !e.name.startsWith(".") && d !== cfgDir) n++;
      }
    };
    walk(cfgDir);
    return n;
  };
  // kill as soon as the second image is finished (the fourth would be "late")
  const t0 = Date.now();
  while (countMarkers() < 2 && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 5));
  child.kill("SIGKILL");
  assert.equal(await exited, "SIGKILL");
  const finishedAtKill = countMarkers();
  assert.ok(finishedAtKill >= 2 && finishedAtKill < 6, `killed in the middle (${finishedAtKill} of 6 done)`);
  assert.ok(!existsSync(join(cfgDir, "valid_imgs.json")), "no valid list from a killed run");
  await assert.rejects(listPreprocessedImages(ds.datasetName, "onemmiso", "nnsslPlans", envB), /no preprocessed data/);

  const again = cli(args, envB);
  assert.equal(again.status, 0, again.stderr);
  const a = snapshot(envA.nnssl_preprocessed);
  const b = snapshot(envB.nnssl_preprocessed);
  assert.deepEqual([...b.keys()], [...a.keys()], "same files (no temporary leftovers)");
  for (const [k, v] of a) assert.ok(v.equals(b.get(k)!), `${k} differs`);
  assert.equal((await listPreprocessedImages(ds.datasetName, "onemmiso", "nnsslPlans", envB)).length, 6);

  // a finished image whose array was damaged is redone (verified by content, not existence)
  const imgs = await listPreprocessedImages(ds.datasetName, "onemmiso", "nnsslPlans", envB);
  const shard = join(imgs[0]!.image, "c", "0", "0", "0", "0");
  const bytes = readFileSync(shard);
  bytes[0] = bytes[0]! ^ 0xff;
  writeFileSync(shard, bytes);
  const third = cli(["preprocess", "-d", "1", "-np", "1"], envB);
  assert.equal(third.status, 0, third.stderr);
  assert.match(third.stdout, /1 preprocessed, 5 already done, 0 failed/);
  assert.ok(readFileSync(shard).equals(a.get(relative(envB.nnssl_preprocessed, shard))!), "damaged array rewritten");
});

test("unreadable image: --on-error fail exits 3 naming the file; --on-error skip lists it and goes on", async () => {
  const ds = await makeTestDataset(join(work, "bad"), { images: 3, corrupt: [1] });
  const bad = ds.imageFiles[1]!;
  const failRun = cli(["plan-and-preprocess", "-d", "1", "-np", "1"], ds.env);
  assert.equal(failRun.status, 3, failRun.stderr);
  assert.ok(failRun.stderr.includes(bad), failRun.stderr);
  assert.match(failRun.stderr, /gzip|truncated|unexpected end|incorrect header|cannot read/i);

  const termLog = join(work, "bad", "termination-log");
  const skipRun = cli(["plan-and-preprocess", "-d", "1", "-np", "1", "--on-error", "skip", "--clean"], {
    ...ds.env,
    SSL3D_TERMINATION_LOG: termLog,
  });
  assert.equal(skipRun.status, 0, skipRun.stderr);
  assert.ok(skipRun.stderr.includes(bad), "the skipped image is reported on stderr");
  const summary = JSON.parse(readFileSync(termLog, "utf8")) as { images: number; valid: number; failed: number };
  assert.deepEqual([summary.images, summary.valid, summary.failed], [3, 2, 1]);
  const pp = join(ds.env.nnssl_preprocessed!, ds.datasetName);
  const fp = JSON.parse(readFileSync(join(pp, "dataset_fingerprint.json"), "utf8")) as {
    spacings: unknown[];
    failed: { image_path: string; reason: string }[];
  };
  assert.equal(fp.spacings.length, 2);
  assert.equal(fp.failed[0]!.image_path, bad);
  const failed = JSON.parse(readFileSync(join(pp, "nnsslPlans_onemmiso", "failed_imgs.json"), "utf8")) as {
    image_path: string;
    reason: string;
  }[];
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.image_path, bad);
  assert.ok(failed[0]!.reason.length > 0);
  assert.equal((await listPreprocessedImages(ds.datasetName, "onemmiso", "nnsslPlans", ds.env)).length, 2);

  // the fingerprint is reused while it matches the collection's images (failed ones included), else recomputed
  const again = cli(["fingerprint", "-d", "1", "-np", "1", "--on-error", "skip"], ds.env);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /2 images, 1 failed \(reused\)/);
  const collFile = join(ds.rawDir, "pretrain_data.json");
  const coll = JSON.parse(readFileSync(collFile, "utf8")) as {
    datasets: { ds000001: { subjects: Record<string, unknown> } };
  };
  delete coll.datasets.ds000001.subjects["sub-02"]; // the corrupt image leaves the collection
  writeFileSync(collFile, JSON.stringify(coll));
  const stale = cli(["fingerprint", "-d", "1", "-np", "1"], ds.env);
  assert.equal(stale.status, 0, stale.stderr);
  assert.match(stale.stdout, /2 images, 0 failed\n/);
});
