/**
 * The NIfTI reader against nibabel: files written by nibabel in every supported datatype, NIfTI-2, big-endian,
 * scaled, qform-only and no-form headers read to the same voxels, shape, spacing and affine; our writer's files
 * read the same in nibabel; every template shipped by Debian's mricron-data has nibabel's shape, spacing, affine.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { readNifti, readNiftiHeader, orientationCode, writeNifti } from "../../runtime/src/io/nifti.js";
import { nibabelDescribe, nibabelVoxels, runPythonJson } from "../helpers/nibabel.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-nib-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const TEMPLATES = "/usr/share/mricron/templates";

function close(a: readonly number[], b: readonly number[], tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

const MAKE = `
import json, sys
import numpy as np, nibabel as nib
req = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
out = []
for spec in req["specs"]:
    shape = tuple(spec["shape"])
    dt = np.dtype(spec["dtype"]).newbyteorder(">" if spec.get("be") else "<")
    info = np.iinfo(dt) if dt.kind in "iu" else None
    if info is not None:
        lo, hi = max(info.min, -40000), min(info.max, 70000)
        data = rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    else:
        data = (rng.standard_normal(shape) * 1000).astype(dt)
    th = np.deg2rad(spec.get("rot", 0))
    aff = np.array([[np.cos(th) * 0.8, -np.sin(th), 0, -10], [np.sin(th) * 0.8, np.cos(th), 0, 20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    cls = nib.Nifti2Image if spec.get("nifti2") else nib.Nifti1Image
    img = cls(data, aff)
    img.header.set_data_dtype(dt)
    if "slope" in spec:
        img.header.set_slope_inter(spec["slope"], spec["inter"])
    if spec.get("form") == "qform":
        img.set_sform(None, code=0); img.set_qform(aff, code=1)
    elif spec.get("form") == "none":
        img.set_sform(None, code=0); img.set_qform(None, code=0)
    f = spec["file"]
    nib.save(img, f)
    out.append(f)
print(json.dumps(out))
`;

const specs = [
  { dtype: "uint8" },
  { dtype: "int8" },
  { dtype: "int16" },
  { dtype: "uint16" },
  { dtype: "int32" },
  { dtype: "uint32" },
  { dtype: "float32" },
  { dtype: "float64" },
  { dtype: "int16", be: true, rot: 25 },
  { dtype: "float64", be: true },
  { dtype: "int16", nifti2: true, rot: -40 },
  { dtype: "float32", nifti2: true, be: true },
  { dtype: "int16", slope: 0.25, inter: -3 },
  { dtype: "uint8", form: "qform", rot: 70 },
  { dtype: "float32", form: "none" },
  { dtype: "float32", shape: [5, 4, 3, 2] },
].map((s, i) => ({
  shape: [6, 5, 4],
  ...s,
  file: join(tmp, `nib-${i}-${s.dtype}${i % 2 === 0 ? ".nii.gz" : ".nii"}`),
}));

test("files written by nibabel read to nibabel's voxels, shape, spacing and affine", async () => {
  runPythonJson(MAKE, { specs });
  const infos = nibabelDescribe(specs.map((s) => s.file));
  const voxels = nibabelVoxels(specs.map((s) => s.file));
  for (const [i, s] of specs.entries()) {
    const info = infos[i]!;
    const v = await readNifti(s.file);
    const what = JSON.stringify({ ...s, file: undefined });
    assert.deepEqual([...v.shape, ...(v.channels > 1 ? [v.channels] : [])], info.shape, what);
    close(v.spacing, info.zooms.slice(0, 3), 1e-6, `${what} spacing`);
    close(v.affine, info.affine, 1e-5, `${what} affine`);
    assert.equal(orientationCode(v.affine), info.orientation, what);
    assert.equal(v.datatype, info.dtype, what);
    assert.deepEqual(Array.from(v.data), voxels[i], `${what} voxels`);
  }
});

test("files written by ssl3d read the same in nibabel", async () => {
  const data = Float32Array.from({ length: 4 * 3 * 5 }, (_, i) => ((i * 37) % 101) - 50);
  const affine = [0, 0, 1.2, -5, -0.9, 0, 0, 7, 0, -2, 0, 11, 0, 0, 0, 1];
  const cases = [
    ["float32", ".nii.gz"],
    ["int16", ".nii"],
    ["uint8", ".nii.gz"],
  ] as const;
  const files = cases.map(([dt, ext]) => join(tmp, `ours-${dt}${ext}`));
  for (const [i, [dt]] of cases.entries())
    await writeNifti(
      files[i]!,
      { data: dt === "uint8" ? data.map((x) => x + 50) : data, shape: [4, 3, 5], affine },
      dt,
    );
  const infos = nibabelDescribe(files);
  const voxels = nibabelVoxels(files);
  for (const [i, [dt]] of cases.entries()) {
    const info = infos[i]!;
    assert.deepEqual(info.shape, [4, 3, 5]);
    assert.equal(info.dtype, dt);
    close(info.affine, affine, 1e-6, `${dt} affine`);
    close(info.zooms, [0.9, 2, 1.2], 1e-6, `${dt} zooms`);
    assert.equal(info.orientation, orientationCode(affine));
    assert.deepEqual(voxels[i], Array.from(dt === "uint8" ? data.map((x) => x + 50) : data));
  }
});

test("every mricron template: header shape, spacing, affine, orientation equal nibabel's", async () => {
  const files = readdirSync(TEMPLATES)
    .filter((n) => /\.nii(\.gz)?$/.test(n))
    .map((n) => join(TEMPLATES, n))
    .sort();
  assert.ok(files.length >= 10, `expected the mricron-data templates in ${TEMPLATES}`);
  const infos = nibabelDescribe(files);
  for (const [i, f] of files.entries()) {
    const h = await readNiftiHeader(f);
    const info = infos[i]!;
    assert.deepEqual([...h.shape], info.shape, f);
    close(h.spacing, info.zooms, 1e-6, `${f} spacing`);
    close(h.affine, info.affine, 1e-6, `${f} affine`);
    assert.equal(orientationCode(h.affine), info.orientation, f);
    assert.equal(h.datatype, info.dtype, f);
  }
});

test("phantoms in every generated orientation: nibabel agrees on affine and axis codes", async () => {
  const { generatePhantom } = await import("../../runtime/src/data/phantom.js");
  const codes = ["RAS", "LAS", "LPS", "RPI", "LIP", "ASR", "PIR", "SAL"];
  const files = codes.map((c) => join(tmp, `ph-${c}.nii.gz`));
  for (const [i, code] of codes.entries()) {
    const p = generatePhantom({ seed: 50 + i, orientation: code, rotationDeg: (i - 4) * 2.5, sizeRange: [6, 9] });
    await writeNifti(files[i]!, p.volume);
    assert.equal(p.orientation, code);
  }
  const infos = nibabelDescribe(files);
  for (const [i, f] of files.entries()) {
    const v = await readNifti(f);
    close(v.affine, infos[i]!.affine, 1e-6, `${codes[i]} affine`);
    assert.equal(infos[i]!.orientation, codes[i]);
    assert.equal(orientationCode(v.affine), codes[i]);
  }
});
