/**
 * Preprocessing benchmark (npm run bench:preprocess [-- --np N --repeat R --big]).
 *
 * 1. images/min of `ssl3d preprocess -c onemmiso` (read NIfTI, crop, z-score, resample, write Zarr) against the
 *    upstream Python path (nnU-Net v2 functions as nnssl calls them, writing blosc2 zstd-8 like nnssl) on the same
 *    real scans (mricron templates: ch2 1 mm, inia19 0.5 mm, ch2 resampled to 4 mm along x), same worker count,
 *    same run; reported as a ratio (> 1 = we are faster).
 * 2. Random 3D patch reads/s (160^3 or the largest the image allows) from the Zarr store against reading the
 *    whole array.
 * 3. With --big: peak memory (max RSS) of preprocessing a synthetic 512x512x400 scan (0.5x0.5x1 mm) end to end
 *    (read NIfTI, preprocess, write Zarr) in a fresh process, relative to the scan's float32 size (target: <= 4x).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openZarrVolume } from "../runtime/src/io/zarr-volume.js";
import { createLogger } from "../runtime/src/observability/log.js";
import { extractFingerprint } from "../runtime/src/planning/fingerprint.js";
import { planExperiment } from "../runtime/src/planning/plan-experiment.js";
import { runPlan } from "../runtime/src/planning/plan-stage.js";
import { listPreprocessedImages } from "../runtime/src/preprocessing/dataset.js";
import { runPreprocess } from "../runtime/src/preprocessing/preprocess.js";
import { preprocessImage } from "../runtime/src/preprocessing/run-image.js";
import type { IndependentImage } from "../runtime/src/config/collection.js";
import { writeNifti } from "../runtime/src/io/nifti.js";
import { pythonBin } from "../test/helpers/python.js";

const { values: args } = parseArgs({
  options: {
    np: { type: "string", default: "2" },
    repeat: { type: "string", default: "1" },
    big: { type: "boolean", default: false },
    "big-write": { type: "string" },
    "big-measure": { type: "string" },
  },
});
const np = Number(args.np);
const repeat = Number(args.repeat);
const HELPER = join(import.meta.dirname, "..", "test", "helpers", "nnunet_reference.py");
const TEMPLATES = "/usr/share/mricron/templates";

/** Child 1 of --big: write a synthetic 512x512x400 int16 scan (0.5x0.5x1 mm) as .nii into `dir`. */
async function bigWrite(dir: string): Promise<void> {
  const [nx, ny, nz] = [512, 512, 400];
  const data = new Int16Array(nx * ny * nz);
  for (let z = 0; z < nz; z++)
    for (let y = 0; y < ny; y++)
      for (let x = 0; x < nx; x++) {
        const r = ((z - 200) / 190) ** 2 + ((y - 256) / 240) ** 2 + ((x - 256) / 230) ** 2;
        if (r < 1) data[(z * ny + y) * nx + x] = Math.round(500 + 300 * Math.sin(x / 7) * Math.cos(y / 11) + z);
      }
  const affine = [0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  await writeNifti(join(dir, "big.nii"), { data, shape: [nx, ny, nz], affine }, "int16");
}

/** Child 2 of --big: preprocess that file end to end (read, preprocess, write Zarr + properties); report max RSS. */
async function bigMeasure(dir: string): Promise<void> {
  const before = process.resourceUsage().maxRSS * 1024;
  const plan = planExperiment("Dataset998_Big", [[1, 0.5, 0.5]]);
  const image: IndependentImage = {
    collection_index: 998,
    collection_name: "Dataset998_Big",
    dataset_index: "ds",
    dataset_name: null,
    subject_id: "sub-1",
    session_id: "ses-1",
    image_name: "big.nii",
    image_path: join(dir, "big.nii"),
    image_modality: "T1w",
    associated_masks: { anonymization_mask: null, anatomy_mask: null },
    dataset_info: null,
    subject_info: null,
    session_info: null,
    image_info: null,
  };
  const t0 = performance.now();
  const r = await preprocessImage({ image, plan, config: "onemmiso", dataDir: join(dir, "out") });
  const secs = (performance.now() - t0) / 1000;
  const peak = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(
    JSON.stringify({
      inputBytes: 512 * 512 * 400 * 4,
      rssBeforeBytes: before,
      peakRssBytes: peak,
      outShape: r.shape,
      seconds: secs,
    }) + "\n",
  );
}

async function main(): Promise<void> {
  createLogger({ level: "warn", json: true });
  const root = mkdtempSync(join(tmpdir(), "ssl3d-bench-pp-"));
  try {
    const ds = "Dataset997_Bench";
    const raw = join(root, "raw");
    const rawDir = join(raw, ds, "ds000001");
    const env = {
      ...process.env,
      nnssl_raw: raw,
      nnssl_preprocessed: join(root, "pp"),
      nnssl_results: join(root, "res"),
    };
    mkdirSync(env.nnssl_preprocessed, { recursive: true });
    const anisoFile = join(root, "ch2-aniso.nii.gz");
    const mk = spawnSync(
      pythonBin(),
      [HELPER, "make-aniso", join(TEMPLATES, "ch2.nii.gz"), anisoFile, "--axis", "0", "--factor", "4"],
      { encoding: "utf8" },
    );
    if (mk.status !== 0) throw new Error(mk.stderr);
    const inputs = [join(TEMPLATES, "ch2.nii.gz"), join(TEMPLATES, "inia19-t1-brain.nii.gz"), anisoFile];
    const subjects: Record<string, unknown> = {};
    inputs.forEach((f, i) => {
      const sub = `sub-${i + 1}`;
      mkdirSync(join(rawDir, sub), { recursive: true });
      const name = `${sub}_T1w.nii.gz`;
      symlinkSync(f, join(rawDir, sub, name));
      subjects[sub] = {
        subject_id: sub,
        subject_info: null,
        sessions: {
          s: {
            session_id: "s",
            session_info: null,
            images: [
              {
                name,
                image_path: `$nnssl_raw/${ds}/ds000001/${sub}/${name}`,
                modality: "T1w",
                image_info: null,
                associated_masks: null,
              },
            ],
          },
        },
      };
    });
    writeFileSync(
      join(raw, ds, "pretrain_data.json"),
      JSON.stringify({
        collection_index: 997,
        collection_name: ds,
        datasets: { ds000001: { dataset_index: "ds000001", name: null, dataset_info: null, subjects } },
      }),
    );
    await extractFingerprint(ds, { np: 1, env, progress: false });
    await runPlan(ds, { env });

    // upstream (Python, multiprocessing pool of np spawn workers)
    const saveDir = join(root, "upstream-out");
    mkdirSync(saveDir);
    const py = spawnSync(
      pythonBin(),
      [HELPER, "bench", "--np", String(np), "--repeat", String(repeat), "--save", saveDir, ...inputs],
      {
        encoding: "utf8",
        env: { ...process.env, OMP_NUM_THREADS: "1" },
      },
    );
    if (py.status !== 0) throw new Error(py.stderr);
    const up = JSON.parse(py.stdout) as { images: number; seconds: number };

    // ours (worker threads), same images, same count, fresh output each repeat
    let oursSecs = 0;
    for (let r = 0; r < repeat; r++) {
      rmSync(join(env.nnssl_preprocessed, ds, "nnsslPlans_onemmiso"), { recursive: true, force: true });
      const t0 = performance.now();
      await runPreprocess(ds, ["onemmiso"], { np, env, progress: false });
      oursSecs += (performance.now() - t0) / 1000;
    }
    const oursImages = inputs.length * repeat;
    const perMin = (imgs: number, s: number): number => (imgs / s) * 60;

    // patch reads from the largest stored volume
    const imgs = await listPreprocessedImages(ds, "onemmiso", "nnsslPlans", env);
    let best = imgs[0]!;
    let bestN = 0;
    for (const i of imgs) {
      const v = await openZarrVolume(i.image);
      const nvox = v.shape.reduce((a, b) => a * b, 1);
      if (nvox > bestN) {
        bestN = nvox;
        best = i;
      }
      await v.close();
    }
    const vol = await openZarrVolume(best.image);
    let seed = 12345;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const patchRate = async (
      edge: number,
      reads: number,
      generic = false,
    ): Promise<{ patch: number[]; perSec: number }> => {
      const sp = vol.shape.slice(1).map((s) => Math.min(edge, s));
      const t = performance.now();
      for (let k = 0; k < reads; k++) {
        const start = sp.map((p, i) => Math.floor(rnd() * (vol.shape[i + 1]! - p + 1)));
        if (generic) await vol.readRegionZarrita([0, ...start], [vol.shape[0]!, ...sp]);
        else await vol.readRegion(start, sp);
      }
      return { patch: sp, perSec: reads / ((performance.now() - t) / 1000) };
    };
    const p160 = await patchRate(160, 20);
    const p96 = await patchRate(96, 40);
    const p96generic = await patchRate(96, 40, true);
    const sp = p160.patch;
    const t0 = performance.now();
    const wholeReads = 5;
    for (let k = 0; k < wholeReads; k++) await vol.readAll();
    const wholeSecs = (performance.now() - t0) / 1000;
    await vol.close();

    const result = {
      workers: np,
      images: oursImages,
      upstreamImagesPerMin: perMin(up.images, up.seconds),
      oursImagesPerMin: perMin(oursImages, oursSecs),
      speedRatio: perMin(oursImages, oursSecs) / perMin(up.images, up.seconds),
      patch: sp,
      volumeShape: vol.shape,
      patchReadsPerSec: p160.perSec,
      patch96ReadsPerSec: p96.perSec,
      patch96ZarritaReadsPerSec: p96generic.perSec,
      wholeArrayReadsPerSec: wholeReads / wholeSecs,
      patchVsWholeRatio: p160.perSec / (wholeReads / wholeSecs),
    };
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    process.stdout.write(
      [
        "",
        `| measure | ours | upstream / baseline | ratio |`,
        `|---|---|---|---|`,
        `| preprocessing, images/min (${np} workers, ${oursImages} images) | ${result.oursImagesPerMin.toFixed(2)} | ${result.upstreamImagesPerMin.toFixed(2)} | ${result.speedRatio.toFixed(2)}x |`,
        `| random ${sp.join("x")} patch reads/s vs whole-array reads/s (volume ${vol.shape.join("x")}) | ${result.patchReadsPerSec.toFixed(1)} | ${result.wholeArrayReadsPerSec.toFixed(1)} | ${result.patchVsWholeRatio.toFixed(2)}x |`,
        `| random ${p96.patch.join("x")} patch reads/s vs whole-array reads/s | ${p96.perSec.toFixed(1)} | ${result.wholeArrayReadsPerSec.toFixed(1)} | ${(p96.perSec / result.wholeArrayReadsPerSec).toFixed(2)}x |`,
        `| random ${p96.patch.join("x")} patch reads/s: direct shard reader vs zarrita's generic get | ${p96.perSec.toFixed(1)} | ${p96generic.perSec.toFixed(1)} | ${(p96.perSec / p96generic.perSec).toFixed(2)}x |`,
        "",
      ].join("\n"),
    );
    if (args.big) {
      const bigDir = join(root, "big");
      mkdirSync(bigDir);
      const w = spawnSync(process.execPath, [...process.execArgv, import.meta.filename, "--big-write", bigDir], {
        encoding: "utf8",
      });
      if (w.status !== 0) throw new Error(w.stderr);
      const r = spawnSync(process.execPath, [...process.execArgv, import.meta.filename, "--big-measure", bigDir], {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      });
      if (r.status !== 0) throw new Error(r.stderr);
      const b = JSON.parse(r.stdout) as {
        inputBytes: number;
        rssBeforeBytes: number;
        peakRssBytes: number;
        outShape: number[];
        seconds: number;
      };
      process.stdout.write(
        `| 512x512x400 scan (int16 .nii, 0.5x0.5x1 mm) -> ${b.outShape.join("x")}, read + preprocess + write: peak RSS / float32 scan size | ${(b.peakRssBytes / b.inputBytes).toFixed(2)}x (whole process incl. Node runtime; growth ${((b.peakRssBytes - b.rssBeforeBytes) / b.inputBytes).toFixed(2)}x) | ${b.seconds.toFixed(1)} s | |\n`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (args["big-write"] !== undefined) await bigWrite(args["big-write"]);
else if (args["big-measure"] !== undefined) await bigMeasure(args["big-measure"]);
else await main();
