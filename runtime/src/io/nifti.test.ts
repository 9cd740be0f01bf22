import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { after, test } from "node:test";
import { DataError } from "../errors.js";
import {
  affineToQuaternion,
  encodeNifti,
  orientationCode,
  parseNiftiHeader,
  readNifti,
  readNiftiHeader,
  writeNifti,
} from "./nifti.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-nifti-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A rotation about z by `deg`, spacing (sx,sy,sz), and an offset. */
function affine(deg: number, s: [number, number, number], t: [number, number, number], flipX = false): number[] {
  const c = Math.cos((deg * Math.PI) / 180),
    si = Math.sin((deg * Math.PI) / 180);
  const fx = flipX ? -1 : 1;
  return [c * s[0] * fx, -si * s[1], 0, t[0], si * s[0] * fx, c * s[1], 0, t[1], 0, 0, s[2], t[2], 0, 0, 0, 1];
}

function ramp(n: number, f: (i: number) => number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => f(i));
}

for (const ext of [".nii", ".nii.gz"]) {
  for (const dt of ["float32", "int16", "uint8"] as const) {
    test(`write -> read round trip preserves data and affine (${dt}, ${ext})`, async () => {
      const shape: [number, number, number] = [7, 5, 3];
      const data = ramp(105, (i) =>
        dt === "float32" ? Math.sin(i) * 1000.5 : dt === "int16" ? ((i * 611) % 60000) - 30000 : (i * 7) % 256,
      );
      const aff = affine(30, [0.9, 1.1, 2.5], [-90.25, 12.5, 40]);
      const f = join(tmp, `rt-${dt}${ext}`);
      await writeNifti(f, { data, shape, affine: aff }, dt);
      const v = await readNifti(f);
      assert.deepEqual(v.shape, shape);
      assert.equal(v.channels, 1);
      assert.equal(v.datatype, dt);
      assert.deepEqual(Array.from(v.data), Array.from(data));
      assert.deepEqual(
        v.affine,
        aff.map((x) => Math.fround(x)),
      );
      for (let i = 0; i < 3; i++) assert.ok(Math.abs(v.spacing[i]! - [0.9, 1.1, 2.5][i]!) < 1e-6);
      if (ext === ".nii.gz") assert.equal(readFileSync(f)[0], 0x1f);
    });
  }
}

test("4-D files: the 4th dimension becomes channels (channel slowest), capped", async () => {
  const f = join(tmp, "4d.nii");
  const data = ramp(2 * 3 * 4 * 2, (i) => i);
  await writeNifti(f, { data, shape: [2, 3, 4], channels: 2, affine: affine(0, [1, 1, 1], [0, 0, 0]) });
  const v = await readNifti(f);
  assert.equal(v.channels, 2);
  assert.deepEqual(Array.from(v.data), Array.from(data));
  await assert.rejects(readNifti(f, { maxChannels: 1 }), /dim\[4\]: dim\[4\] is 2: more than 1 volumes/);
});

test("the qform alone reproduces the affine (sform_code 0), including a flipped (qfac -1) affine", () => {
  for (const [deg, flip] of [
    [0, false],
    [37, false],
    [200, true],
    [90, true],
  ] as const) {
    const aff = affine(deg, [1.5, 2, 3], [1, 2, 3], flip);
    const bytes = encodeNifti({ data: new Float32Array(8), shape: [2, 2, 2], affine: aff });
    new DataView(bytes.buffer).setInt16(254, 0, true); // sform_code = 0
    const h = parseNiftiHeader(bytes, "q.nii");
    assert.equal(h.affineSource, "qform");
    // near-180° rotations lose precision in float32 quaternions (a = sqrt(1 - b²-c²-d²)); nibabel gives the same errors
    for (let i = 0; i < 16; i++)
      assert.ok(Math.abs(h.affine[i]! - aff[i]!) < 2e-3, `deg ${deg} flip ${flip} [${i}] ${h.affine[i]} vs ${aff[i]}`);
    assert.equal(affineToQuaternion(aff).qfac, flip ? -1 : 1);
  }
});

test("without sform and qform the affine is nibabel's base affine (x flipped, centred)", () => {
  const bytes = encodeNifti({
    data: new Float32Array(4 * 3 * 2),
    shape: [4, 3, 2],
    affine: affine(0, [2, 3, 4], [0, 0, 0]),
  });
  const dv = new DataView(bytes.buffer);
  dv.setInt16(252, 0, true);
  dv.setInt16(254, 0, true);
  const h = parseNiftiHeader(bytes, "b.nii");
  assert.equal(h.affineSource, "base");
  assert.deepEqual(h.affine, [-2, 0, 0, 3, 0, 3, 0, -3, 0, 0, 4, -2, 0, 0, 0, 1]);
});

test("scl_slope/scl_inter are applied; slope 0 means no scaling", () => {
  const bytes = encodeNifti(
    { data: Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), shape: [2, 2, 2], affine: affine(0, [1, 1, 1], [0, 0, 0]) },
    "int16",
  );
  const dv = new DataView(bytes.buffer);
  dv.setFloat32(112, 2, true);
  dv.setFloat32(116, -1, true);
  assert.deepEqual(parseNiftiHeader(bytes, "s.nii").scaling, { slope: 2, inter: -1 });
  dv.setFloat32(112, 0, true);
  assert.equal(parseNiftiHeader(bytes, "s.nii").scaling, undefined);
  dv.setFloat32(112, 1, true);
  dv.setFloat32(116, Number.NaN, true);
  assert.throws(() => parseNiftiHeader(bytes, "s.nii"), /scl_inter/);
});

test("scaled int16 voxels read back scaled", async () => {
  const bytes = encodeNifti(
    { data: Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), shape: [2, 2, 2], affine: affine(0, [1, 1, 1], [0, 0, 0]) },
    "int16",
  );
  new DataView(bytes.buffer).setFloat32(112, 0.5, true);
  new DataView(bytes.buffer).setFloat32(116, 10, true);
  const f = join(tmp, "scaled.nii.gz");
  writeFileSync(f, gzipSync(bytes));
  assert.deepEqual(Array.from((await readNifti(f)).data), [10, 10.5, 11, 11.5, 12, 12.5, 13, 13.5]);
});

test("integer writers refuse values that do not fit instead of clipping", () => {
  assert.throws(
    () =>
      encodeNifti(
        { data: Float32Array.from([300]), shape: [1, 1, 1], affine: affine(0, [1, 1, 1], [0, 0, 0]) },
        "uint8",
      ),
    /does not fit uint8/,
  );
});

test("readNiftiHeader of a .nii.gz only needs the start of the stream", async () => {
  const bytes = encodeNifti({
    data: new Float32Array(64 * 64 * 64),
    shape: [64, 64, 64],
    affine: affine(0, [1, 1, 1], [0, 0, 0]),
  });
  const gz = gzipSync(bytes);
  const f = join(tmp, "cut.nii.gz");
  writeFileSync(f, gz.subarray(0, 200)); // truncated far into the data, header intact
  const h = await readNiftiHeader(f);
  assert.deepEqual(h.shape, [64, 64, 64]);
  await assert.rejects(
    readNifti(f),
    (e: unknown) => e instanceof DataError && /cut\.nii\.gz: truncated gzip stream/.test(e.message),
  );
});

test("orientation codes like nibabel's aff2axcodes", () => {
  assert.equal(orientationCode(affine(0, [1, 1, 1], [0, 0, 0])), "RAS");
  assert.equal(orientationCode(affine(0, [1, 1, 1], [0, 0, 0], true)), "LAS");
  assert.equal(orientationCode([-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), "LPS");
  assert.equal(orientationCode([0, 0, 1, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 1]), "PIR");
  assert.equal(orientationCode(affine(30, [1, 1, 1], [0, 0, 0])), "RAS");
  assert.equal(orientationCode(affine(60, [1, 1, 1], [0, 0, 0])), "ALS");
});
