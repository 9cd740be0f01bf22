/**
 * Adversarial tier, NIfTI (issue 13 point 3): memory caps that hold for `vox_offset` and for the resampled output,
 * `inspect` on headers beyond the load limits, and degenerate datasets (near-zero spacing, mixed channel counts,
 * all-zero images) failing early with the file named. CLI runs in child processes: exit code, one error line
 * naming the file and field, peak memory within a margin of a benign run of the same command, every file outside
 * the output root unchanged (bytes and mtime).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { LIMITS, limit } from "../../runtime/src/config/limits.js";
import { encodeNifti } from "../../runtime/src/io/nifti.js";
import { assertSameTree, snapshotTree } from "./helpers/cli.js";
import { errorLine, runCli, type CliRun } from "./hostile-files.js";

const MARGIN_MIB = 256;
let root: string;
let benignInspect: CliRun;

interface Img {
  readonly shape: [number, number, number];
  readonly spacing?: [number, number, number];
  readonly channels?: number;
  readonly value?: (i: number) => number;
}

function niftiBytes(img: Img): Uint8Array {
  const [x, y, z] = img.shape;
  const c = img.channels ?? 1;
  const s = img.spacing ?? [1, 1, 1];
  const data = new Float32Array(x * y * z * c);
  for (let i = 0; i < data.length; i++) data[i] = (img.value ?? ((k) => 1 + (k % 7)))(i);
  return encodeNifti({
    data,
    shape: img.shape,
    channels: c,
    affine: [s[0], 0, 0, 0, 0, s[1], 0, 0, 0, 0, s[2], 0, 0, 0, 0, 1],
  });
}

/** A raw dataset `Dataset990_Adv` under `<dir>/raw` with one image per entry; returns the env and the image files. */
function dataset(dir: string, images: readonly Img[]): { env: NodeJS.ProcessEnv; files: string[] } {
  const name = "Dataset990_Adv";
  const raw = join(dir, "raw");
  const ds = join(raw, name);
  mkdirSync(ds, { recursive: true });
  const subjects: Record<string, unknown> = {};
  const files: string[] = [];
  images.forEach((img, i) => {
    const sub = `sub-${i + 1}`;
    const file = join(ds, `${sub}.nii.gz`);
    writeFileSync(file, gzipSync(niftiBytes(img)));
    files.push(file);
    subjects[sub] = {
      subject_id: sub,
      subject_info: null,
      sessions: {
        ses: {
          session_id: "ses",
          session_info: null,
          images: [
            {
              name: `${sub}.nii.gz`,
              image_path: `$nnssl_raw/${name}/${sub}.nii.gz`,
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
    join(ds, "pretrain_data.json"),
    JSON.stringify({
      collection_index: 990,
      collection_name: name,
      datasets: { ds: { dataset_index: "ds", name: null, dataset_info: null, subjects } },
    }),
  );
  const env = { nnssl_raw: raw, nnssl_preprocessed: join(dir, "pre"), nnssl_results: join(dir, "res") };
  mkdirSync(env.nnssl_preprocessed, { recursive: true });
  return { env, files };
}

function expectDataError(r: CliRun, file: string, pattern: RegExp, baseline: CliRun): void {
  const line = errorLine(r);
  assert.equal(r.status, 3, `exit ${r.status} (${r.signal ?? ""}): ${r.stderr}`);
  assert.ok(line.includes(file), `names ${file}: ${line}`);
  assert.match(line, pattern);
  assert.ok(
    r.peakMiB < baseline.peakMiB + MARGIN_MIB,
    `peak ${r.peakMiB.toFixed(0)} MiB vs benign ${baseline.peakMiB.toFixed(0)} MiB`,
  );
}

before(() => {
  root = mkdtempSync(join(tmpdir(), "ssl3d-adv-nifti-"));
  const f = join(root, "benign.nii.gz");
  writeFileSync(f, gzipSync(niftiBytes({ shape: [16, 16, 16] })));
  benignInspect = runCli(["inspect", f]);
  assert.equal(benignInspect.status, 0, benignInspect.stderr);
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

/**
 * One-voxel .nii.gz whose voxel data starts at `voxOffset` (exact in float32): the gap after the header is
 * concatenated gzip members of zeros, ~1 KB per MiB.
 */
function hugeVoxOffset(file: string, voxOffset: number): void {
  const hdr = Buffer.from(niftiBytes({ shape: [1, 1, 1] }));
  const gap = voxOffset - 352;
  hdr.writeFloatLE(voxOffset, 108);
  const chunk = gzipSync(Buffer.alloc(2 ** 20));
  const members = [gzipSync(hdr.subarray(0, 352))];
  for (let left = gap; left > 0; left -= 2 ** 20) members.push(left >= 2 ** 20 ? chunk : gzipSync(Buffer.alloc(left)));
  members.push(gzipSync(hdr.subarray(352)));
  writeFileSync(file, Buffer.concat(members));
}

describe("vox_offset and the read caps", () => {
  test("a 1 MB one-voxel .nii.gz with a 1 GiB vox_offset is described, not read, by default", () => {
    const f = join(root, "offset.nii.gz");
    hugeVoxOffset(f, 2 ** 30);
    // inspect describes the header (exit 0) without reading the data
    const i = runCli(["inspect", f, "--json"]);
    assert.equal(i.status, 0, i.stderr);
    const info = JSON.parse(i.stdout) as { shape: number[]; min: number | null; note?: string };
    assert.deepEqual(info.shape, [1, 1, 1]);
    assert.equal(info.min, null);
    assert.match(info.note ?? "", /vox_offset 1073741824: not loaded.*SSL3D_MAX_VOX_OFFSET/);
    assert.ok(i.peakMiB < benignInspect.peakMiB + MARGIN_MIB);
  });

  test("with the vox_offset limit raised, the gap is skipped while decompressing, never buffered", () => {
    const f = join(root, "offset2.nii.gz");
    hugeVoxOffset(f, 2 ** 30);
    const r = runCli(["inspect", f, "--json"], { env: { SSL3D_MAX_VOX_OFFSET: String(2 ** 31) } });
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { min: number; max: number };
    assert.equal(info.min, 1); // the one voxel after the gap
    assert.ok(
      r.peakMiB < benignInspect.peakMiB + MARGIN_MIB,
      `peak ${r.peakMiB.toFixed(0)} MiB vs ${benignInspect.peakMiB.toFixed(0)} MiB (the gap is 1 GiB)`,
    );
  });

  test("fingerprinting a dataset whose image has a huge vox_offset fails with the file and field", () => {
    const dir = join(root, "fp-offset");
    const { env, files } = dataset(dir, [{ shape: [8, 8, 8] }]);
    hugeVoxOffset(files[0]!, 2 ** 27);
    const r = runCli(["fingerprint", "-d", "990", "-np", "1"], {
      env: { ...env, SSL3D_MAX_VOX_OFFSET: String(2 ** 20) },
    });
    expectDataError(
      r,
      files[0]!,
      /vox_offset: vox_offset is 134217728: more than 1048576 bytes .*SSL3D_MAX_VOX_OFFSET/,
      benignInspect,
    );
  });

  test("the default voxel cap is derived from the machine's memory", () => {
    assert.equal(LIMITS.voxels.env, "SSL3D_MAX_VOXELS");
    assert.equal(limit("voxels", {}), Math.max(2 ** 24, Math.min(2 ** 31, Math.floor(totalmem() / 64))));
    assert.equal(limit("voxels", { SSL3D_MAX_VOXELS: "1234" }), 1234);
    assert.throws(() => limit("voxels", { SSL3D_MAX_VOXELS: "lots" }), /SSL3D_MAX_VOXELS: must be a positive integer/);
  });
});

describe("resampling against the cap", () => {
  test("a 16³ image at 40 mm spacing (640³ after resampling to 1 mm) fails before resampling", () => {
    const dir = join(root, "resample");
    const { env, files } = dataset(dir, [{ shape: [16, 16, 16], spacing: [40, 40, 40] }]);
    // every file outside the preprocessed root, with its bytes and mtime
    const before = snapshotTree(dir, ["pre"]);
    const r = runCli(["plan-and-preprocess", "-d", "990", "-np", "1", "-npfp", "1", "-c", "onemmiso"], {
      env: { ...env, SSL3D_MAX_VOXELS: "100000" },
    });
    expectDataError(
      r,
      files[0]!,
      /pixdim: resampling \[16, 16, 16\] .* gives \[640, 640, 640\] x 1 channel\(s\) = 262144000 voxels, above the limit of 100000 \(SSL3D_MAX_VOXELS\)/,
      benignInspect,
    );
    // only the stage outputs under the preprocessed root were added: the raw data keeps its bytes and mtimes
    assertSameTree(before, snapshotTree(dir, ["pre"]), dir);
  });
});

describe("inspect on any valid header", () => {
  test("a long 4-D series (200 volumes) is described, not loaded as channels", () => {
    const f = join(root, "series.nii.gz");
    writeFileSync(f, gzipSync(niftiBytes({ shape: [4, 4, 4], channels: 200 })));
    const r = runCli(["inspect", f]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /shape: +4 x 4 x 4 x 200/);
    assert.match(r.stdout, /intensity: +not computed \(200 volumes in the 4th dimension: a series, not loaded/);
  });

  test("a header claiming 10^12 voxels in a small .nii is refused without allocating", () => {
    const bytes = Buffer.from(niftiBytes({ shape: [1, 1, 1] }));
    bytes.writeInt16LE(10000, 42);
    bytes.writeInt16LE(10000, 44);
    bytes.writeInt16LE(10000, 46);
    const f = join(root, "huge.nii");
    writeFileSync(f, bytes);
    expectDataError(runCli(["inspect", f, "--json"]), f, /data shorter than the header claims/, benignInspect);
    // compressed, only the header is decompressed: it is described
    const g = join(root, "huge.nii.gz");
    writeFileSync(g, gzipSync(bytes));
    const r = runCli(["inspect", g, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { shape: number[] }).shape, [10000, 10000, 10000]);
    assert.ok(r.peakMiB < benignInspect.peakMiB + MARGIN_MIB);
  });
});

describe("degenerate inputs", () => {
  test("near-zero spacing in the header is an error naming the file and pixdim", () => {
    const f = join(root, "tiny-spacing.nii.gz");
    writeFileSync(f, gzipSync(niftiBytes({ shape: [8, 8, 8], spacing: [1e-6, 1, 1] })));
    const r = runCli(["inspect", f]);
    expectDataError(r, f, /pixdim\[1\]: pixdim\[1\] is 9\.99.*e-7: near-zero voxel spacing/, benignInspect);
  });

  test("a spacing that resamples to an empty image fails at plan time, before preprocessing", () => {
    const dir = join(root, "empty-resample");
    const { env, files } = dataset(dir, [
      { shape: [8, 8, 8] },
      { shape: [8, 8, 8] },
      { shape: [8, 8, 8], spacing: [0.001, 1, 1] },
    ]);
    const r = runCli(["plan-and-preprocess", "-d", "990", "-np", "1", "-npfp", "1"], { env });
    expectDataError(
      r,
      files[2]!,
      /pixdim: configuration onemmiso resamples it .* shape \[[0-9, ]*\b0\b[0-9, ]*\] is empty/,
      benignInspect,
    );
    assert.ok(!existsSync(join(dir, "pre", "Dataset990_Adv", "nnsslPlans_onemmiso")), "nothing preprocessed");
  });

  test("mixed channel counts fail at plan time naming the odd image", () => {
    const dir = join(root, "channels");
    const { env, files } = dataset(dir, [
      { shape: [8, 8, 8] },
      { shape: [8, 8, 8], channels: 2 },
      { shape: [8, 8, 8] },
    ]);
    const r = runCli(["plan-and-preprocess", "-d", "990", "-np", "1", "-npfp", "1"], { env });
    expectDataError(
      r,
      files[1]!,
      /dim\[4\]: has 2 channel\(s\), the other images of dataset Dataset990_Adv have 1 \(2 with 1, 1 with 2\)/,
      benignInspect,
    );
    assert.ok(!existsSync(join(dir, "pre", "Dataset990_Adv", "nnsslPlans.json")), "no plan written");
  });

  test("an all-zero image fails at fingerprint time naming the file", () => {
    const dir = join(root, "zeros");
    const { env, files } = dataset(dir, [{ shape: [8, 8, 8] }, { shape: [8, 8, 8], value: () => 0 }]);
    const r = runCli(["fingerprint", "-d", "990", "-np", "1"], { env });
    expectDataError(r, files[1]!, /image is zero everywhere/, benignInspect);
  });
});
