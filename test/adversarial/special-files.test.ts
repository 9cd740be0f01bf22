/**
 * Adversarial tier, files that are not what they claim (docs/limits-and-safety.md, "Input sizes and structure"):
 * a named pipe, a device (`/dev/zero`) or an oversized file given as a collection, manifests, checkpoint or image is
 * refused by type and size on the opened descriptor (runtime/src/io/regular-file.ts) instead of blocking forever or
 * reading without end; `ssl3d inspect` on a plain .nii shorter than its header, a .nii whose data is cut short and a
 * truncated .nii.gz gives one line naming the file. Every CLI case runs in a child process: exit code, one error line
 * naming the file, bounded time and peak memory, sentinels outside the roots untouched.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { ConfigError, DataError } from "../../runtime/src/errors.js";
import { writeFileAtomic } from "../../runtime/src/io/atomic.js";
import { encodeNifti, readNifti, readNiftiHeader } from "../../runtime/src/io/nifti.js";
import { readManifests } from "../../runtime/src/local/manifests.js";
import { readRegularFile, readRegularFileSync } from "../../runtime/src/io/regular-file.js";
import { readCollection } from "../../runtime/src/io/collection-file.js";
import { makeTestDataset, type TestDataset } from "../helpers/preprocess-dataset.js";
import { assertFails, Sentinels, ssl3d, type CliResult } from "./helpers/cli.js";

const BOUNDS = { maxMs: 90_000, maxMiB: 512 };
const work = mkdtempSync(join(tmpdir(), "ssl3d-adv-special-"));
const fifo = join(work, "pipe.nii.gz");
const sentinels = new Sentinels();
let ds: TestDataset;

function nifti(shape: [number, number, number], channels = 1): Buffer {
  const data = new Float32Array(shape[0] * shape[1] * shape[2] * channels).map((_, i) => 1 + (i % 7));
  return Buffer.from(encodeNifti({ data, shape, channels, affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] }));
}

before(async () => {
  execFileSync("mkfifo", [fifo]);
  ds = await makeTestDataset(join(work, "root"), { images: 2, shape: [12, 12, 12] });
  sentinels.add(work, "x.json");
  sentinels.add(work, "x.zarr/");
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

/** `line` names `file` and matches every pattern. */
function names(line: string, file: string): void {
  assert.ok(line.includes(file), `the line names ${file}: ${line}`);
}

test("inspect: a plain .nii shorter than its header, a .nii with its data cut short and a truncated .nii.gz are one-line data errors", async () => {
  const whole = nifti([8, 8, 8]);
  // [file, bytes, message, run through the CLI child (else the reader in-process, same error)]
  const cases: [string, Buffer, RegExp, boolean][] = [
    ["short.nii", whole.subarray(0, 200), /file too short for a NIfTI header \(200 bytes, need at least 348\)/, true],
    [
      "cut-data.nii",
      whole.subarray(0, 1000),
      /data shorter than the header claims: file has 1000 bytes, header needs 2400/,
      true,
    ],
    ["cut.nii.gz", gzipSync(whole).subarray(0, 40), /truncated gzip stream/, true],
    ["magic-only.nii", whole.subarray(0, 4), /file too short for a NIfTI header/, false],
    [
      "cut-after-header.nii",
      whole.subarray(0, 350),
      /vox_offset 352 is beyond the end of the file \(350 bytes\)/,
      false,
    ],
    ["short-header.nii.gz", gzipSync(whole.subarray(0, 200)), /file too short for a NIfTI header/, false],
  ];
  const files = cases.map(([name, bytes]) => {
    const f = join(work, name);
    writeFileSync(f, bytes);
    return f;
  });
  const cli = cases.map((c, i) => [c, files[i]!] as const).filter(([c]) => c[3]);
  const results = await Promise.all(
    cli.map(([, f]) => ssl3d(["inspect", f], process.env, { timeoutMs: BOUNDS.maxMs })),
  );
  results.forEach((r, i) => {
    names(assertFails(r, 3, [cli[i]![0][2]], BOUNDS), cli[i]![1]);
  });
  for (const [i, c] of cases.entries()) {
    await assert.rejects(
      readNiftiHeader(files[i]!, { limits: false }).then(() => readNifti(files[i]!)),
      (e: unknown) => e instanceof DataError && c[2].test(e.message) && e.message.includes(files[i]!),
      c[0],
    );
  }
});

test("inspect describes a long 4-D series in a plain .nii from its header, without loading it", async () => {
  const f = join(work, "series.nii");
  writeFileSync(f, nifti([4, 4, 4], 300));
  const r = await ssl3d(["inspect", f, "--json"], process.env);
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { shape: number[]; note: string };
  assert.deepEqual(info.shape, [4, 4, 4, 300]);
  assert.match(info.note, /300 volumes in the 4th dimension: a series, not loaded/);
  assert.ok(r.peakMiB !== undefined && r.peakMiB < BOUNDS.maxMiB);
});

test("a FIFO or a device in place of a collection, manifests, checkpoint or image is refused at once, by its type", async () => {
  const imageLink = ds.imageFiles[0]!;
  rmSync(imageLink);
  symlinkSync(fifo, imageLink); // the dataset's first image is a link to a named pipe with no writer
  const cases: [string[], NodeJS.ProcessEnv, number, string, RegExp][] = [
    [
      ["collection-summary", fifo],
      process.env,
      2,
      fifo,
      /collection file is a named pipe \(FIFO\), expected a regular file/,
    ],
    [
      ["import", "/dev/zero", "--out", join(work, "x.safetensors")],
      process.env,
      3,
      "/dev/zero",
      /checkpoint is a character device/,
    ],
    [["fingerprint", "-d", "1", "-np", "1"], ds.env, 3, imageLink, /is a named pipe \(FIFO\)/],
  ];
  const results: CliResult[] = await Promise.all(
    cases.map(([args, env]) => ssl3d(args, env, { timeoutMs: BOUNDS.maxMs })),
  );
  results.forEach((r, i) => {
    const [, , code, file, pattern] = cases[i]!;
    names(assertFails(r, code, [pattern], BOUNDS), file);
  });
  // the same readers in-process: manifests, NIfTI, collection
  assert.throws(
    () => readManifests(fifo),
    (e: unknown) =>
      e instanceof ConfigError && /manifests file is a named pipe/.test(e.message) && e.message.includes(fifo),
  );
  await assert.rejects(
    readNiftiHeader(fifo),
    (e: unknown) =>
      e instanceof DataError && /is a named pipe \(FIFO\), expected a regular \.nii or \.nii\.gz file/.test(e.message),
  );
  await assert.rejects(
    readNiftiHeader("/dev/zero"),
    (e: unknown) => e instanceof DataError && /is a character device/.test(e.message),
  );
  await assert.rejects(
    readCollection("/dev/zero"),
    (e: unknown) => e instanceof ConfigError && /collection file is a character device/.test(e.message),
  );
  sentinels.check();
});

test("an output path that is a FIFO or a device is refused, not replaced by a regular file", async () => {
  await assert.rejects(
    writeFileAtomic(fifo, "x"),
    (e: unknown) =>
      e instanceof ConfigError &&
      /is a named pipe \(FIFO\), not a regular file: refusing to replace it/.test(e.message) &&
      e.message.includes(fifo),
  );
  assert.ok(statSync(fifo).isFIFO(), "the pipe is still a pipe");
  await assert.rejects(
    writeFileAtomic("/dev/null", "x"),
    (e: unknown) => e instanceof ConfigError && /character device/.test(e.message),
  );
  assert.ok(statSync("/dev/null").isCharacterDevice());
  const dir = join(work, "out-dir");
  mkdirSync(dir);
  await assert.rejects(
    writeFileAtomic(dir, "x"),
    (e: unknown) => e instanceof ConfigError && /is a directory/.test(e.message),
  );
  const ok = join(work, "out.json");
  await writeFileAtomic(ok, "1");
  await writeFileAtomic(ok, "2");
  assert.equal(readFileSync(ok, "utf8"), "2");
});

test("readRegularFile: type and size are checked on the opened descriptor; the document limit holds for collections", async () => {
  await assert.rejects(
    readRegularFile(fifo, { what: "x" }),
    (e: unknown) => e instanceof ConfigError && /named pipe/.test(e.message),
  );
  assert.throws(
    () => readRegularFileSync("/dev/zero", { what: "x", error: DataError }),
    (e: unknown) => e instanceof DataError && /character device/.test(e.message),
  );
  const f = join(work, "doc.json");
  writeFileSync(f, "x".repeat(5000));
  assert.throws(
    () => readRegularFileSync(f, { what: "doc", maxBytes: 4096, maxBytesEnv: "SSL3D_MAX_DOCUMENT_BYTES" }),
    /doc of 5000 bytes is beyond the limit of 4096 bytes \(SSL3D_MAX_DOCUMENT_BYTES\)/,
  );
  assert.equal(readRegularFileSync(f, { what: "doc", maxBytes: 5000 }).length, 5000);
  const collection = join(ds.rawDir, "pretrain_data.json");
  await assert.rejects(
    readCollection(collection, { env: { ...ds.env, SSL3D_MAX_DOCUMENT_BYTES: "100" } }),
    (e: unknown) =>
      e instanceof ConfigError && /collection file of \d+ bytes is beyond the limit of 100 bytes/.test(e.message),
  );
});
