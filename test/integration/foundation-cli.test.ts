/**
 * Acceptance tests of issue #2 through the real CLI (`node_modules/.bin/node bin/ssl3d.mjs ...` as a subprocess):
 * (a) real scans: Debian's mricron T1 templates converted into a collection and read back equal nibabel's shape,
 *     spacing, affine (and intensity statistics);
 * (b) round trips: collection read -> write -> read, NIfTI write -> read (also in the unit tests);
 * (c) a table of malformed inputs: each gives its specific error, a non-zero exit code, one line on stderr without
 *     a stack trace (the stack only with --verbose), and no partial output.
 * Plus the nnssl alias, the collection summary contract and the demo.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { after, test } from "node:test";
import { flattenCollection } from "../../runtime/src/config/collection.js";
import { convert } from "../../runtime/src/conversion/convert.js";
import { generatePhantom, writePhantomBids } from "../../runtime/src/data/phantom.js";
import { DataError, Ssl3dError } from "../../runtime/src/errors.js";
import { collectionJson, readCollection, writeCollection } from "../../runtime/src/io/collection-file.js";
import { encodeNifti, readNifti } from "../../runtime/src/io/nifti.js";
import { nibabelDescribe } from "../helpers/nibabel.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const NODE = join(ROOT, "node_modules", ".bin", "node");
const BIN = join(ROOT, "bin", "ssl3d.mjs");
const TEMPLATES = "/usr/share/mricron/templates";
const T1_TEMPLATES = ["ch2", "ch2bet", "ch2better", "inia19-t1-brain"];

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-cli-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI as a subprocess (an nnssl alias when `script` is a symlink named like one). */
function cli(args: readonly string[], env: Record<string, string | undefined> = {}, script = BIN): Promise<Run> {
  const fullEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, SSL3D_LOG_LEVEL: "warn", ...env }))
    if (typeof v === "string") fullEnv[k] = v;
  return new Promise((res, rej) => {
    const p = spawn(NODE, [script, ...args], { env: fullEnv, cwd: tmp });
    let stdout = "",
      stderr = "";
    p.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    p.on("error", rej);
    p.on("close", (code) => {
      res({ code: code ?? -1, stdout, stderr });
    });
  });
}

function close(a: readonly number[], b: readonly number[], tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

// ---------------------------------------------------------------------------------------------------------------
// (a) real scans

test("mricron T1 templates: convert, read back, equal nibabel (shape, spacing, affine, intensities); inspect --json agrees", async () => {
  const src = join(tmp, "mricron-t1");
  mkdirSync(src);
  for (const t of T1_TEMPLATES) symlinkSync(join(TEMPLATES, `${t}.nii.gz`), join(src, `${t}.nii.gz`));
  const raw = join(tmp, "raw-a");
  const env = { nnssl_raw: raw, nnssl_preprocessed: join(tmp, "pre-a") };
  const r = await cli(["convert", "folder", src, "-d", "1", "-n", "MricronT1", "--modality", "T1w"], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Dataset001_MricronT1: 1 dataset\(s\), 4 subject\(s\), 4 session\(s\), 4 image\(s\)/);
  assert.match(r.stdout, /images per modality: T1w 4/);
  const c = await readCollection(join(raw, "Dataset001_MricronT1", "pretrain_data.json"), { env });
  const images = flattenCollection(c);
  assert.deepEqual(images.map((i) => i.image_name).sort(), T1_TEMPLATES.map((t) => `${t}.nii.gz`).sort());
  const ref = nibabelDescribe(
    images.map((i) => i.image_path),
    true,
  );
  for (const [k, img] of images.entries()) {
    const v = await readNifti(img.image_path);
    const nib = ref[k]!;
    assert.deepEqual([...v.shape], nib.shape, img.image_name);
    close(v.spacing, nib.zooms, 1e-6, `${img.image_name} spacing`);
    close(v.affine, nib.affine, 1e-6, `${img.image_name} affine`);
    let min = Infinity,
      max = -Infinity,
      sum = 0;
    for (const x of v.data) {
      if (x < min) min = x;
      if (x > max) max = x;
      sum += x;
    }
    assert.equal(min, nib.min);
    assert.equal(max, nib.max);
    assert.ok(
      Math.abs(sum / v.data.length - nib.mean!) < 1e-4 * Math.max(1, Math.abs(nib.mean!)),
      `${img.image_name} mean`,
    );
  }
  const ins = await cli(["inspect", join(TEMPLATES, "ch2.nii.gz"), "--json"]);
  assert.equal(ins.code, 0, ins.stderr);
  const lines = ins.stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const j = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(j).sort(), [
    "affine",
    "datatype",
    "max",
    "mean",
    "min",
    "orientation",
    "shape",
    "spacing",
  ]);
  const ch2 = ref[images.findIndex((i) => i.image_name === "ch2.nii.gz")]!;
  assert.deepEqual(j.shape, ch2.shape);
  assert.deepEqual((j.affine as number[][]).flat(), ch2.affine);
  assert.equal(j.orientation, ch2.orientation);
  assert.equal(j.datatype, "uint8");
  assert.equal(j.min, ch2.min);
  assert.equal(j.max, ch2.max);
});

// ---------------------------------------------------------------------------------------------------------------
// (b) round trips

test("round trips: collection read -> write -> read identical (byte-identical file); NIfTI write -> read identical", async () => {
  const raw = join(tmp, "raw-b");
  const env = { nnssl_raw: raw, nnssl_preprocessed: join(tmp, "pre-b") };
  const src = join(raw, "Dataset002_Rt", "bids");
  await writePhantomBids(src, {
    seed: 8,
    subjects: 2,
    sessions: 2,
    modalities: ["T1w", "FLAIR"],
    masks: true,
    sizeRange: [8, 10],
  });
  const rep = await convert({ kind: "bids", src, datasetId: 2, name: "Rt", onError: "fail", env });
  const c1 = await readCollection(rep.output, { env });
  const again = join(tmp, "again.json");
  await writeCollection(again, c1, { env });
  const c2 = await readCollection(again, { env });
  assert.deepEqual(c2, c1);
  assert.equal(readFileSync(again, "utf8"), readFileSync(rep.output, "utf8"));
  assert.equal(collectionJson(c2, env), readFileSync(rep.output, "utf8"));
  for (const img of flattenCollection(c1)) {
    const v = await readNifti(img.image_path);
    const f = join(tmp, "rt.nii.gz");
    const { writeNifti } = await import("../../runtime/src/io/nifti.js");
    await writeNifti(f, v, "int16");
    const w = await readNifti(f);
    assert.deepEqual(Array.from(w.data), Array.from(v.data));
    assert.deepEqual(w.affine, v.affine);
    assert.deepEqual(w.shape, v.shape);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// (c) malformed inputs

function validNifti(): Uint8Array {
  return encodeNifti(generatePhantom({ seed: 1, shape: [6, 5, 4] }).volume, "int16");
}
function patched(f: (dv: DataView, bytes: Uint8Array) => void, bytes = validNifti()): Uint8Array {
  f(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), bytes);
  return bytes;
}
function nifti2Absurd(): Uint8Array {
  const b = new Uint8Array(560);
  const dv = new DataView(b.buffer);
  dv.setInt32(0, 540, true);
  b.set([0x6e, 0x2b, 0x32, 0, 0x0d, 0x0a, 0x1a, 0x0a], 4);
  dv.setInt16(12, 16, true);
  dv.setInt16(14, 32, true);
  [3, 1e4, 1e4, 1e4, 1, 1, 1, 1].forEach((v, i) => {
    dv.setBigInt64(16 + 8 * i, BigInt(v), true);
  });
  [1, 1, 1, 1, 1, 1, 1, 1].forEach((v, i) => {
    dv.setFloat64(104 + 8 * i, v, true);
  });
  dv.setBigInt64(168, 544n, true);
  return b;
}

const COLLECTION_OK = (imagePath: unknown): unknown => ({
  collection_index: 1,
  collection_name: "Dataset003_Bad",
  datasets: {
    ds1: {
      dataset_index: "ds1",
      subjects: {
        "sub-01": {
          subject_id: "sub-01",
          sessions: {
            "ses-1": {
              session_id: "ses-1",
              images: [{ name: "a.nii.gz", image_path: imagePath, modality: "T1w", associated_masks: null }],
            },
          },
        },
      },
    },
  },
});

interface Case {
  readonly name: string;
  /** File name and content (bytes, text, or absent for a missing file). */
  readonly file: string;
  readonly content?: Uint8Array | string;
  readonly extra?: Record<string, Uint8Array>;
  readonly command: "inspect" | "collection-summary";
  /** A NIfTI header `inspect` describes without loading; only the loading paths (the converter) must refuse it. */
  readonly loadOnly?: true;
  readonly exit: number;
  readonly error: RegExp;
}

const CASES: Case[] = [
  {
    name: "truncated .nii.gz",
    file: "trunc.nii.gz",
    content: gzipSync(validNifti()).subarray(0, 200),
    command: "inspect",
    exit: 3,
    error: /trunc\.nii\.gz: truncated gzip stream/,
  },
  {
    name: "corrupt gzip",
    file: "corrupt.nii.gz",
    content: patched((_dv, b) => {
      b.fill(0x55, 20, 60);
    }, gzipSync(validNifti())),
    command: "inspect",
    exit: 3,
    error: /corrupt\.nii\.gz: corrupt gzip stream|incorrect|invalid/,
  },
  {
    name: "bad magic",
    file: "magic.nii",
    content: patched((_dv, b) => {
      b.set([0x78, 0x79, 0x7a, 0], 344);
    }),
    command: "inspect",
    exit: 3,
    error: /magic\.nii: magic: bad magic "xyz\\u0000", expected "n\+1\\0"/,
  },
  {
    name: "dim[0]=0",
    file: "dim0.nii",
    content: patched((dv) => {
      dv.setInt16(40, 0, true);
    }),
    command: "inspect",
    exit: 3,
    error: /dim0\.nii: dim\[0\]: dim\[0\] is 0, must be 1\.\.7/,
  },
  {
    name: "negative dim",
    file: "neg.nii",
    content: patched((dv) => {
      dv.setInt16(44, -5, true);
    }),
    command: "inspect",
    exit: 3,
    error: /neg\.nii: dim\[2\]: dim\[2\] is -5, dimensions must be positive/,
  },
  {
    name: "absurd dims (10^12 voxels, NIfTI-1)",
    file: "huge.nii",
    content: patched((dv) => {
      dv.setInt16(42, 10000, true);
      dv.setInt16(44, 10000, true);
      dv.setInt16(46, 10000, true);
    }),
    command: "inspect",
    loadOnly: true,
    exit: 3,
    error: /huge\.nii: dim: header claims 10000x10000x10000 = 1\.00e\+12 voxels, above the limit/,
  },
  {
    name: "absurd dims (10^12 voxels, NIfTI-2 .nii.gz)",
    file: "huge2.nii.gz",
    content: gzipSync(nifti2Absurd()),
    command: "inspect",
    loadOnly: true,
    exit: 3,
    error: /huge2\.nii\.gz: dim: header claims 10000x10000x10000 = 1\.00e\+12 voxels/,
  },
  {
    name: "NaN pixdim",
    file: "nan.nii",
    content: patched((dv) => {
      dv.setFloat32(80, Number.NaN, true);
    }),
    command: "inspect",
    exit: 3,
    error: /nan\.nii: pixdim\[1\]: pixdim\[1\] is NaN/,
  },
  {
    name: "unknown datatype",
    file: "dtype.nii",
    content: patched((dv) => {
      dv.setInt16(70, 99, true);
    }),
    command: "inspect",
    exit: 3,
    error: /dtype\.nii: datatype: unknown datatype code 99/,
  },
  {
    name: "complex datatype",
    file: "complex.nii",
    content: patched((dv) => {
      dv.setInt16(70, 32, true);
    }),
    command: "inspect",
    exit: 3,
    error: /complex\.nii: datatype: datatype complex64 \(code 32\) is not supported/,
  },
  {
    name: "RGB datatype",
    file: "rgb.nii",
    content: patched((dv) => {
      dv.setInt16(70, 128, true);
    }),
    command: "inspect",
    exit: 3,
    error: /rgb\.nii: datatype: datatype RGB24/,
  },
  {
    name: "Analyze .hdr/.img pair",
    file: "pair.hdr",
    content: patched((_dv, b) => {
      b.set([0x6e, 0x69, 0x31, 0], 344);
    }).subarray(0, 348),
    extra: { "pair.img": new Uint8Array(240) },
    command: "inspect",
    exit: 3,
    error: /pair\.hdr: Analyze-style \.hdr\/\.img pairs are not supported/,
  },
  {
    name: "ni1 magic in a .nii",
    file: "ni1.nii",
    content: patched((_dv, b) => {
      b.set([0x6e, 0x69, 0x31, 0], 344);
    }),
    command: "inspect",
    exit: 3,
    error: /ni1\.nii: magic: header of an Analyze-style \.hdr\/\.img pair/,
  },
  {
    name: "empty file",
    file: "empty.nii.gz",
    content: new Uint8Array(0),
    command: "inspect",
    exit: 3,
    error: /empty\.nii\.gz: empty file \(0 bytes\)/,
  },
  {
    name: "missing file",
    file: "missing.nii.gz",
    command: "inspect",
    exit: 3,
    error: /missing\.nii\.gz: file not found/,
  },
  {
    name: "data shorter than header",
    file: "short.nii",
    content: validNifti().subarray(0, 352 + 100),
    command: "inspect",
    exit: 3,
    error: /short\.nii: data shorter than the header claims: file has 452 bytes, header needs 592/,
  },
  {
    name: "vox_offset beyond file",
    file: "voxoff.nii",
    content: patched((dv) => {
      dv.setFloat32(108, 1e6, true);
    }),
    command: "inspect",
    exit: 3,
    error: /voxoff\.nii: vox_offset: vox_offset 1000000 is beyond the end of the file/,
  },
  {
    name: "too short for a header",
    file: "tiny.nii",
    content: "hello",
    command: "inspect",
    exit: 3,
    error: /tiny\.nii: file too short for a NIfTI header \(5 bytes/,
  },
  {
    name: "wrong JSON types",
    file: "types.json",
    content: JSON.stringify(COLLECTION_OK(42)),
    command: "collection-summary",
    exit: 2,
    error:
      /types\.json: datasets\.ds1\.subjects\.sub-01\.sessions\.ses-1\.images\[0\]\.image_path: expected string, received number/,
  },
  {
    name: "path escaping its root",
    file: "escape.json",
    content: JSON.stringify(COLLECTION_OK("$nnssl_raw/../../etc/passwd")),
    command: "collection-summary",
    exit: 2,
    error:
      /escape\.json: datasets\.ds1\.subjects\.sub-01\.sessions\.ses-1\.images\[0\]\.image_path: path "\$nnssl_raw\/\.\.\/\.\.\/etc\/passwd" escapes the root \$nnssl_raw/,
  },
  {
    name: "unset variable",
    file: "unset.json",
    content: JSON.stringify(COLLECTION_OK("$nnssl_nope/x.nii.gz")),
    command: "collection-summary",
    exit: 2,
    error:
      /unset\.json: .*images\[0\]\.image_path: path "\$nnssl_nope\/x\.nii\.gz" needs environment variable nnssl_nope, which is not set/,
  },
  {
    name: "invalid JSON",
    file: "syntax.json",
    content: '{"collection_index": 1,',
    command: "collection-summary",
    exit: 2,
    error: /syntax\.json: invalid JSON/,
  },
  {
    name: "referenced image missing",
    file: "ref.json",
    content: JSON.stringify(COLLECTION_OK("$nnssl_raw/none.nii.gz")),
    command: "collection-summary",
    exit: 3,
    error: /none\.nii\.gz: file referenced by the collection not found/,
  },
];

async function pool<T>(items: readonly T[], width: number, f: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await f(items[next++]!);
    }),
  );
}

test(`malformed inputs (${CASES.length} cases): specific error, non-zero exit, one line without stack, no partial output`, async () => {
  assert.ok(CASES.length >= 12);
  const dir = join(tmp, "malformed");
  const raw = join(tmp, "raw-c");
  mkdirSync(dir);
  mkdirSync(raw);
  // loadOnly: headers `inspect` describes without loading (issue 13: any valid header, over the caps too); their
  // caps are checked where the voxels are loaded, by the converter below
  await pool(
    CASES.filter((c) => c.loadOnly !== true),
    3,
    async (c) => {
      const file = join(dir, c.file);
      if (c.content !== undefined) writeFileSync(file, c.content);
      for (const [n, b] of Object.entries(c.extra ?? {})) writeFileSync(join(dir, n), b);
      const termLog = join(dir, `${c.file}.termination-log`);
      const args = c.command === "inspect" ? ["inspect", file, "--json"] : ["collection-summary", file, "--json"];
      const r = await cli(args, { nnssl_raw: raw, SSL3D_TERMINATION_LOG: termLog });
      assert.equal(r.code, c.exit, `${c.name}: exit code (stderr: ${r.stderr})`);
      assert.equal(r.stdout, "", `${c.name}: no (partial) output on stdout`);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, `${c.name}: one line, got:\n${r.stderr}`);
      assert.match(lines[0]!, /^ssl3d: error: /, c.name);
      assert.match(lines[0]!, c.error, c.name);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.name}: no stack trace`);
      const written = JSON.parse(readFileSync(termLog, "utf8")) as {
        exitCode: number;
        reason: string;
        message: string;
      };
      assert.deepEqual(
        [written.exitCode, written.message],
        [c.exit, lines[0]!.replace(/^ssl3d: error: /, "")],
        `${c.name}: termination log (api/termination.ts)`,
      );
    },
  );
  // NIfTI cases also through the converter: the conversion fails naming the file and writes nothing
  for (const c of CASES.filter((x) => x.command === "inspect" && x.content !== undefined)) {
    const src = join(tmp, "malformed-src", c.file.replace(/\W/g, "_"));
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, c.file), c.content!);
    const id = 100 + CASES.indexOf(c);
    const err = await convert({
      kind: "folder",
      src,
      datasetId: id,
      name: "Bad",
      onError: "fail",
      env: { nnssl_raw: raw },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof DataError || err instanceof Ssl3dError, `${c.name}: convert must fail`);
    assert.match(
      (err as Error).message,
      c.file.endsWith(".hdr") ? /no usable NIfTI images|unusable/ : /unusable file\(s\) \(first: .*: /,
      c.name,
    );
  }
  assert.deepEqual(readdirSync(raw), [], "no partial output under nnssl_raw");
  // --verbose adds the stack
  const v = await cli(["inspect", join(dir, "dim0.nii"), "--verbose"]);
  assert.equal(v.code, 3);
  assert.match(v.stderr, /^ssl3d: error: .*dim\[0\] is 0/);
  assert.match(v.stderr, /\n\s+at /);
  // the convert CLI lists every unusable file, then fails with one error line, writing nothing
  const srcAll = join(tmp, "malformed-all");
  mkdirSync(srcAll);
  for (const c of CASES.filter((x) => x.command === "inspect" && x.content !== undefined && !x.file.endsWith(".hdr")))
    writeFileSync(join(srcAll, c.file), c.content!);
  const conv = await cli(["convert", "folder", srcAll, "-d", "5", "-n", "Bad"], { nnssl_raw: raw });
  assert.equal(conv.code, 3);
  const errLines = conv.stderr.trimEnd().split("\n");
  assert.equal(errLines.filter((l) => l.startsWith("ssl3d: error: ")).length, 1);
  assert.match(errLines.at(-1)!, /conversion failed: \d+ unusable file\(s\) \(listed above\); nothing written/);
  assert.ok(errLines.some((l) => /^ssl3d: unusable: .*huge\.nii: dim: header claims/.test(l)));
  assert.doesNotMatch(conv.stderr, /\n\s+at /);
  assert.equal(existsSync(join(raw, "Dataset005_Bad")), false);
});

// ---------------------------------------------------------------------------------------------------------------

test("collection-summary -d ID --json: contract keys, termination log, hash stable across roots", async () => {
  const raw = join(tmp, "raw-d");
  const env = { nnssl_raw: raw };
  await writePhantomBids(join(raw, "Dataset004_Sum", "src"), {
    seed: 9,
    subjects: 2,
    sessions: 1,
    modalities: ["T1w", "T2w"],
    masks: true,
    sizeRange: [8, 9],
  });
  const conv = await cli(["convert", "bids", join(raw, "Dataset004_Sum", "src"), "-d", "4", "-n", "Sum"], env);
  assert.equal(conv.code, 0, conv.stderr);
  const log = join(tmp, "summary.log");
  const r = await cli(["collection-summary", "-d", "4", "--json"], { ...env, SSL3D_TERMINATION_LOG: log });
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(s), [
    "datasets",
    "subjects",
    "sessions",
    "images",
    "modalities",
    "bytes",
    "contentHash",
  ]);
  assert.deepEqual(
    { ...s, bytes: 0, contentHash: "" },
    { datasets: 1, subjects: 2, sessions: 2, images: 4, modalities: { T1w: 2, T2w: 2 }, bytes: 0, contentHash: "" },
  );
  assert.match(s.contentHash as string, /^sha256:[0-9a-f]{64}$/);
  assert.ok((s.bytes as number) > 4 * 352);
  assert.deepEqual(JSON.parse(readFileSync(log, "utf8")), s);
  // the same data under another root hashes the same
  const moved = join(tmp, "raw-d-moved");
  const { cpSync } = await import("node:fs");
  cpSync(raw, moved, { recursive: true });
  const r2 = await cli(["collection-summary", join(moved, "Dataset004_Sum", "pretrain_data.json"), "--json"], {
    nnssl_raw: moved,
  });
  assert.deepEqual(JSON.parse(r2.stdout), s);
});

test("nnssl_convert_openmind alias with --openmind_root_dir writes Dataset745_OpenMind", async () => {
  const root = join(tmp, "om");
  const om = join(root, "OpenMind");
  const { writeNifti } = await import("../../runtime/src/io/nifti.js");
  await writeNifti(
    join(om, "ds000001/sub-01/anat/sub-01_T1w.nii.gz"),
    generatePhantom({ seed: 3, shape: [5, 5, 5] }).volume,
  );
  writeFileSync(
    join(root, "openneuro_metadata.csv"),
    "image_path,modality,image_quality_score\nds000001/sub-01/anat/sub-01_T1w.nii.gz,T1w,1.5\n",
  );
  const alias = join(tmp, "nnssl_convert_openmind");
  symlinkSync(BIN, alias);
  const raw = join(tmp, "raw-om");
  const r = await cli(["--openmind_root_dir", root], { nnssl_raw: raw }, alias);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Dataset745_OpenMind: 1 dataset\(s\), 1 subject\(s\), 1 session\(s\), 1 image\(s\)/);
  const c = await readCollection(join(raw, "Dataset745_OpenMind", "pretrain_data.json"), { env: { nnssl_raw: raw } });
  assert.deepEqual(c.datasets.ds000001!.dataset_info, {
    image_quality_score: [{ modality: "T1w", derived_from: null, image_quality_score: 1.5 }],
  });
});

test("demo --quick builds a collection from phantoms under --out, inspects and preprocesses it", async () => {
  const out = join(tmp, "demo");
  const r = await cli(["demo", "--quick", "--out", out], {
    nnssl_raw: undefined,
    nnssl_preprocessed: undefined,
    nnssl_results: undefined,
  });
  assert.equal(r.code, 0, r.stderr);
  const file = join(out, "nnssl_raw", "Dataset990_Demo", "pretrain_data.json");
  assert.ok(existsSync(file));
  assert.match(r.stdout, /Dataset990_Demo: 1 dataset\(s\), 2 subject\(s\), 2 session\(s\), 4 image\(s\)/);
  assert.match(r.stdout, /content hash: sha256:[0-9a-f]{64}/);
  assert.match(r.stdout, /orientation: [RLAPSI]{3}/);
  const c = await readCollection(file, { env: { nnssl_raw: join(out, "nnssl_raw") } });
  assert.equal(flattenCollection(c).length, 4);
  assert.match(readFileSync(file, "utf8"), /"\$nnssl_raw\/Dataset990_Demo\/ds-phantom\//);
  // the demo also fingerprints, plans and preprocesses the collection
  assert.match(r.stdout, /preprocessed 4\/4 image\(s\)/);
  const pre = join(out, "nnssl_preprocessed", "Dataset990_Demo");
  assert.ok(existsSync(join(pre, "nnsslPlans.json")) && existsSync(join(pre, "valid_imgs.json")));
});
