import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, test } from "node:test";
import { orientationCode, readNifti } from "../io/nifti.js";
import { generatePhantom, mulberry32, writePhantomBids } from "./phantom.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-phantom-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function meanWhere(data: Float32Array, pred: (i: number) => boolean): number {
  let s = 0,
    n = 0;
  for (let i = 0; i < data.length; i++)
    if (pred(i)) {
      s += data[i]!;
      n++;
    }
  return s / n;
}

test("the PRNG is deterministic and uniform-ish", () => {
  const a = mulberry32(7),
    b = mulberry32(7);
  const xs = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(
    xs.slice(0, 5),
    Array.from({ length: 5 }, () => b()),
  );
  const mean = xs.reduce((p, q) => p + q, 0) / xs.length;
  assert.ok(mean > 0.45 && mean < 0.55);
});

test("phantoms are deterministic per seed and vary in shape, spacing and orientation across seeds", () => {
  const p1 = generatePhantom({ seed: 3 }),
    p2 = generatePhantom({ seed: 3 });
  assert.deepEqual(p1.volume.affine, p2.volume.affine);
  assert.deepEqual(Array.from(p1.volume.data), Array.from(p2.volume.data));
  const many = Array.from({ length: 8 }, (_, i) => generatePhantom({ seed: 100 + i, sizeRange: [12, 20] }));
  assert.ok(new Set(many.map((p) => p.volume.shape.join("x"))).size > 4);
  assert.ok(new Set(many.map((p) => p.volume.spacing.join("x"))).size > 4);
  assert.ok(new Set(many.map((p) => p.orientation)).size > 2);
  for (const p of many) assert.equal(p.orientation, orientationCode(p.volume.affine));
});

test("an explicit orientation is honoured", () => {
  for (const code of ["RAS", "LPS", "PIR"])
    assert.equal(generatePhantom({ seed: 1, orientation: code, shape: [10, 10, 10] }).orientation, code);
});

test("tissue contrast follows the modality; masks mark brain and defaced voxels", () => {
  const opts = {
    seed: 5,
    shape: [40, 40, 40] as const,
    spacing: [1, 1, 1] as const,
    orientation: "RAS",
    rotationDeg: 0,
    anatomyMask: true,
    anonymizationMask: true,
  };
  const t1 = generatePhantom({ ...opts, modality: "T1w" });
  const t2 = generatePhantom({ ...opts, modality: "T2w" });
  const anat = t1.anatomyMask!,
    anon = t1.anonymizationMask!;
  const brain = meanWhere(t1.volume.data, (i) => anat[i] === 1);
  const outside = meanWhere(t1.volume.data, (i) => anat[i] === 0 && anon[i] === 0);
  assert.ok(brain > outside, `T1 brain ${brain} > rest ${outside}`);
  // centre voxel is WM (ventricles are off-centre): bright in T1, darker than CSF-rich brain average in T2
  const c = 20 + 40 * 20 + 1600 * 20;
  assert.ok(t1.volume.data[c]! > 600, `T1 WM ${t1.volume.data[c]}`);
  assert.ok(t2.volume.data[c]! < 500, `T2 WM ${t2.volume.data[c]}`);
  assert.ok(anon.some((v) => v === 1));
  for (let i = 0; i < anon.length; i++)
    if (anon[i] === 1) assert.ok(t1.volume.data[i]! < 150, "defaced voxels hold only noise");
  // the face (anonymized voxels) is anterior: +y in RAS
  const ys: number[] = [];
  for (let i = 0; i < anon.length; i++) if (anon[i] === 1) ys.push(Math.floor(i / 40) % 40);
  assert.ok(ys.reduce((a, b) => a + b, 0) / ys.length > 28);
});

test("a phantom BIDS tree with sessions and masks reads back", async () => {
  const files = await writePhantomBids(tmp, {
    seed: 2,
    subjects: 2,
    sessions: 2,
    modalities: ["T1w", "FLAIR"],
    masks: true,
    sizeRange: [10, 14],
  });
  assert.equal(files.length, 8);
  assert.deepEqual(
    files.slice(0, 2).map((f) => relative(tmp, f)),
    ["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz"],
  );
  const a = await readNifti(files[0]!),
    b = await readNifti(files[1]!);
  assert.equal(a.datatype, "int16");
  assert.deepEqual(a.affine, b.affine);
  const m = await readNifti(files[0]!.replace(".nii.gz", "_desc-anatmask.nii.gz"));
  assert.equal(m.datatype, "uint8");
  assert.deepEqual(m.shape, a.shape);
});
