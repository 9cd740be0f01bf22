/**
 * Parity with the upstream Python preprocessing (nnU-Net v2 functions from PyPI, run by
 * test/helpers/nnunet_reference.py) on real MRI templates of three different spacings: 1 mm (ch2), 0.5 mm
 * (inia19), and ch2 resampled to 4 mm along x (anisotropic: separate-z resampling and a non-identity transpose).
 * The `onemmiso` output must have the same shape, Pearson r > 0.999; the max abs difference is reported.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { planExperiment } from "../../runtime/src/planning/plan-experiment.js";
import { readVolume, toCaseInput } from "../../runtime/src/preprocessing/image-io.js";
import { preprocessCase } from "../../runtime/src/preprocessing/preprocess-case.js";
import { pythonBin, runPython } from "../helpers/python.js";
import { spawnSync } from "node:child_process";

const TEMPLATES = "/usr/share/mricron/templates";
const HELPER = join(import.meta.dirname, "..", "helpers", "nnunet_reference.py");
let work = "";

function runHelper(args: string[]): void {
  const r = spawnSync(pythonBin(), [HELPER, ...args], {
    encoding: "utf8",
    env: { ...process.env, OMP_NUM_THREADS: "1" },
  });
  if (r.status !== 0) throw new Error(`nnunet_reference.py ${args[0]} failed: ${r.stderr}`);
}

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "ssl3d-parity-"));
  runPython("import nnunetv2.preprocessing.resampling.default_resampling");
  runHelper([
    "make-aniso",
    join(TEMPLATES, "ch2.nii.gz"),
    join(work, "ch2-aniso.nii.gz"),
    "--axis",
    "0",
    "--factor",
    "4",
  ]);
});
after(() => {
  rmSync(work, { recursive: true, force: true });
});

export function pearson(a: Float32Array, b: Float32Array): number {
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < a.length; i++) {
    sa += a[i]!;
    sb += b[i]!;
  }
  const ma = sa / a.length;
  const mb = sb / b.length;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]! - ma;
    const y = b[i]! - mb;
    num += x * y;
    da += x * x;
    db += y * y;
  }
  return num / Math.sqrt(da * db);
}

const cases = [
  { name: "ch2 (1 mm)", file: join(TEMPLATES, "ch2.nii.gz") },
  { name: "inia19-t1-brain (0.5 mm)", file: join(TEMPLATES, "inia19-t1-brain.nii.gz") },
  { name: "ch2 anisotropic (4 x 1 x 1 mm)", file: "ch2-aniso.nii.gz" },
];

for (const c of cases) {
  test(`onemmiso parity with nnU-Net v2: ${c.name}`, async () => {
    const input = c.file.startsWith("/") ? c.file : join(work, c.file);
    assert.ok(existsSync(input), input);
    const out = join(work, c.name.replace(/\W+/g, "_"));
    // Plan for a one-image dataset: the transpose comes from this image's spacing (as upstream's planner).
    // Our side reads the NIfTI with our reader; the plan is made from our spacing (as our planner would)
    const ours = toCaseInput(await readVolume(input));
    const plan = planExperiment("Dataset999_Parity", [[...ours.spacing]]);
    const maskFile = join(work, `${c.name.replace(/\W+/g, "_")}-mask.nii.gz`);
    runHelper(["make-mask", input, maskFile, "--percentile", "50"]);
    runHelper([
      "preprocess",
      input,
      out,
      "--target",
      "1,1,1",
      "--transpose",
      plan.transpose_forward.join(","),
      "--mask",
      maskFile,
    ]);
    const meta = JSON.parse(readFileSync(join(out, "meta.json"), "utf8")) as {
      input_shape: number[];
      spacing: [number, number, number];
      output_shape: number[];
      bbox: number[][];
    };
    const ref = readF32(join(out, "output.raw"));
    const raw = readF32(join(out, "input.raw"));
    assert.deepEqual([1, ...ours.shape], meta.input_shape, "array view (C, z, y, x) as SimpleITK");
    assert.deepEqual([...ours.spacing], meta.spacing.map(Math.fround), "array-axis spacing");
    let voxelMismatch = 0;
    for (let i = 0; i < raw.length; i++) if (ours.data[i] !== raw[i]) voxelMismatch++;
    assert.equal(voxelMismatch, 0, "voxels as nibabel reads them");
    const cfg = plan.configurations.onemmiso!;
    const mask = toCaseInput(await readVolume(maskFile));
    const res = preprocessCase(ours, { anat: mask }, plan, cfg);
    assert.deepEqual([res.channels, ...res.shape], meta.output_shape, "output shape");
    assert.deepEqual(res.properties.bbox_used_for_cropping, meta.bbox, "crop bbox");
    let maxAbs = 0;
    for (let i = 0; i < ref.length; i++) maxAbs = Math.max(maxAbs, Math.abs(ref[i]! - res.data[i]!));
    const r = pearson(ref, res.data);
    process.stdout.write(
      `# parity ${c.name}: shape ${meta.output_shape.join("x")}, pearson ${r.toFixed(9)}, max abs diff ${maxAbs.toExponential(3)}\n`,
    );
    assert.ok(r > 0.999, `pearson ${r}`);
    // the mask through nnssl's path: crop with the image's box (0 outside -> -1), order-1 per-label resampling
    const refMask = readF32(join(out, "mask_output.raw"));
    assert.equal(res.anat!.length, refMask.length);
    let agree = 0;
    for (let i = 0; i < refMask.length; i++) if (res.anat![i] === refMask[i]) agree++;
    const frac = agree / refMask.length;
    process.stdout.write(`# mask parity ${c.name}: ${(100 * frac).toFixed(4)} % of voxels identical\n`);
    assert.ok(frac > 0.999, `mask agreement ${frac}`);
  });
}
