/**
 * NIfTI-1 / NIfTI-2 input and NIfTI-1 output (`.nii` and `.nii.gz`). See docs/nifti.md for the policies.
 *
 * Reading is defensive: the header is parsed (with nifti-reader-js) and sanity-checked before anything is
 * allocated for the voxel data; `.nii.gz` is decompressed with node:zlib as a stream that stops at the size the
 * validated header implies, so a header claiming 10^12 voxels or a gzip bomb fails with a clear error instead of
 * exhausting memory. Every failure is a `DataError` naming the file and (where there is one) the header field.
 *
 * The affine follows nibabel (`Nifti1Header.get_best_affine`): sform when `sform_code > 0`, else the qform
 * (quaternion, qfac from pixdim[0]) when `qform_code > 0`, else nibabel's base affine (pixdim diagonal with the
 * x axis flipped and the origin at the volume centre).
 */
import { createReadStream, promises as fs } from "node:fs";
import { gzipSync, createGunzip } from "node:zlib";
import { NIFTI1, NIFTI2 } from "nifti-reader-js";
import { limit } from "../config/limits.js";
import { DataError } from "../errors.js";
import { writeFileAtomic } from "./atomic.js";
import { fileKind } from "./regular-file.js";
import type { Mat4, NiftiDatatypeName, Vec3, Volume } from "./volume.js";

export type { Volume } from "./volume.js";

interface DatatypeInfo {
  readonly name: NiftiDatatypeName;
  readonly bytes: number;
}

/** Supported NIfTI datatype codes. */
const DATATYPES: ReadonlyMap<number, DatatypeInfo> = new Map([
  [2, { name: "uint8", bytes: 1 }],
  [4, { name: "int16", bytes: 2 }],
  [8, { name: "int32", bytes: 4 }],
  [16, { name: "float32", bytes: 4 }],
  [64, { name: "float64", bytes: 8 }],
  [256, { name: "int8", bytes: 1 }],
  [512, { name: "uint16", bytes: 2 }],
  [768, { name: "uint32", bytes: 4 }],
]);

/** Known but unsupported datatype codes, for a precise error. */
const UNSUPPORTED: ReadonlyMap<number, string> = new Map([
  [1, "binary (1 bit)"],
  [32, "complex64"],
  [128, "RGB24"],
  [1024, "int64"],
  [1280, "uint64"],
  [1536, "float128"],
  [1792, "complex128"],
  [2048, "complex256"],
  [2304, "RGBA32"],
]);

const CODE_OF: Readonly<Record<NiftiDatatypeName, number>> = {
  uint8: 2,
  int16: 4,
  int32: 8,
  float32: 16,
  float64: 64,
  int8: 256,
  uint16: 512,
  uint32: 768,
};

/**
 * Caps on what a header may claim (docs/nifti.md, docs/limits-and-safety.md). Defaults: `SSL3D_MAX_VOXELS` (derived
 * from the machine's memory), `SSL3D_MAX_CHANNELS` (16), `SSL3D_MAX_VOX_OFFSET` (64 MiB); options override them.
 * `limits: false` skips the three caps (header-only use such as `inspect`, which allocates nothing per voxel).
 */
export interface NiftiReadOptions {
  readonly maxVoxels?: number;
  readonly maxChannels?: number;
  readonly maxVoxOffset?: number;
  readonly limits?: boolean;
}

/** Smallest accepted voxel spacing (`abs(pixdim[1..3])`, mm): below it the header is degenerate. */
export const MIN_SPACING = 1e-4;

/** The validated header: everything needed to interpret the voxel bytes. */
export interface NiftiHeader {
  readonly version: 1 | 2;
  readonly littleEndian: boolean;
  /** `dim[0..7]` as stored. */
  readonly dim: readonly number[];
  readonly shape: Vec3;
  readonly channels: number;
  readonly datatype: NiftiDatatypeName;
  readonly bytesPerVoxel: number;
  readonly spacing: Vec3;
  readonly affine: Mat4;
  readonly affineSource: "sform" | "qform" | "base";
  readonly voxOffset: number;
  /** undefined when no scaling applies (slope 0 or not finite). */
  readonly scaling: { readonly slope: number; readonly inter: number } | undefined;
  /** Bytes of voxel data the header implies. */
  readonly dataBytes: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Header parsing and validation (pure; operates on the first bytes of the decompressed file)

const N1_SIZE = 348;
const N2_SIZE = 540;

type Fail = (msg: string, field?: string) => never;
type LibHeader = InstanceType<typeof NIFTI1> | InstanceType<typeof NIFTI2>;

/** Parse and sanity-check a header from the first (at least 352/544, or all) bytes of a decompressed file. */
export function parseNiftiHeader(bytes: Uint8Array, file: string, opts: NiftiReadOptions = {}): NiftiHeader {
  const fail: Fail = (msg, field) => {
    throw new DataError(msg, { file, field });
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { version, le } = detectVersion(bytes, dv, fail);
  checkMagic(bytes, version, fail);
  const h = readLibHeader(bytes, version, fail);
  const checkLimits = opts.limits !== false;
  const { dim, ndim, shape, channels } = checkDims(h, opts, checkLimits, fail);
  const { name: datatype, bytes: bytesPerVoxel } = datatypeOf(h.datatypeCode, fail);
  const pixdim = h.pixDims.slice(0, 8).map(Number);
  const spacing = spacingOf(pixdim, ndim, fail);
  const voxOffset = checkVoxOffset(h.vox_offset, version, opts, checkLimits, fail);
  const scaling = scalingOf(h.scl_slope, h.scl_inter, fail);
  const { affine, source } = bestAffine(dv, le, version, h, shape, spacing, pixdim, ndim, file);
  return {
    version,
    littleEndian: le,
    dim,
    shape,
    channels,
    datatype,
    bytesPerVoxel,
    spacing,
    affine,
    affineSource: source,
    voxOffset,
    scaling,
    dataBytes: dim.slice(1, ndim + 1).reduce((a, b) => a * b, 1) * bytesPerVoxel,
  };
}

/** NIfTI-1 or -2 and the byte order, from `sizeof_hdr`. */
function detectVersion(bytes: Uint8Array, dv: DataView, fail: Fail): { version: 1 | 2; le: boolean } {
  if (bytes.byteLength < N1_SIZE)
    fail(`file too short for a NIfTI header (${bytes.byteLength} bytes, need at least ${N1_SIZE})`);
  const sizeLE = dv.getInt32(0, true);
  const sizeBE = dv.getInt32(0, false);
  if (sizeLE === N1_SIZE || sizeBE === N1_SIZE) return { version: 1, le: sizeLE === N1_SIZE };
  if (sizeLE !== N2_SIZE && sizeBE !== N2_SIZE)
    fail(`not a NIfTI file: sizeof_hdr is ${sizeLE}, expected 348 (NIfTI-1) or 540 (NIfTI-2)`, "sizeof_hdr");
  if (bytes.byteLength < N2_SIZE)
    fail(`file too short for a NIfTI-2 header (${bytes.byteLength} bytes, need ${N2_SIZE})`);
  return { version: 2, le: sizeLE === N2_SIZE };
}

function checkMagic(bytes: Uint8Array, version: 1 | 2, fail: Fail): void {
  const magicAt = version === 1 ? 344 : 4;
  const magic = String.fromCharCode(bytes[magicAt]!, bytes[magicAt + 1]!, bytes[magicAt + 2]!);
  const want = version === 1 ? "n+1" : "n+2";
  if (magic === "ni1" || magic === "ni2") {
    fail(
      `header of an Analyze-style .hdr/.img pair (magic "${magic}"); only single-file .nii/.nii.gz is supported — convert it first (e.g. nibabel: nib.save(nib.load(f), "x.nii.gz"))`,
      "magic",
    );
  }
  if (magic !== want || bytes[magicAt + 3] !== 0) {
    const shown = JSON.stringify(String.fromCharCode(...bytes.subarray(magicAt, magicAt + 4)));
    fail(
      `bad magic ${shown}, expected "${want}\\0"${version === 1 && magic.trim() === "" ? " (an Analyze 7.5 header? not supported)" : ""}`,
      "magic",
    );
  }
}

/** Field extraction with nifti-reader-js (it needs an ArrayBuffer holding just the header). */
function readLibHeader(bytes: Uint8Array, version: 1 | 2, fail: Fail): LibHeader {
  const hdrBytes = version === 1 ? 352 : 544;
  const ab = new ArrayBuffer(hdrBytes);
  new Uint8Array(ab).set(bytes.subarray(0, Math.min(hdrBytes - 4, bytes.byteLength)));
  // the 4 extension-flag bytes stay zero: extensions are not needed and the library would try to parse them
  const h = version === 1 ? new NIFTI1() : new NIFTI2();
  try {
    h.readHeader(ab);
  } catch (err) {
    fail(`unreadable NIfTI-${version} header (${(err as Error).message})`);
  }
  return h;
}

function checkDims(
  h: LibHeader,
  opts: NiftiReadOptions,
  checkLimits: boolean,
  fail: Fail,
): { dim: number[]; ndim: number; shape: Vec3; channels: number } {
  const dim = h.dims.slice(0, 8).map(Number);
  const ndim = dim[0]!;
  if (!Number.isInteger(ndim) || ndim < 1 || ndim > 7) fail(`dim[0] is ${ndim}, must be 1..7`, "dim[0]");
  for (let i = 1; i <= ndim; i++) {
    const d = dim[i]!;
    if (!Number.isSafeInteger(d) || d < 1) fail(`dim[${i}] is ${d}, dimensions must be positive`, `dim[${i}]`);
  }
  for (let i = 5; i <= ndim && checkLimits; i++) {
    if (dim[i]! > 1)
      fail(`dim[${i}] is ${dim[i]}: 5-D and higher images are not supported (see docs/nifti.md)`, `dim[${i}]`);
  }
  const size = (i: number): number => (i <= ndim ? dim[i]! : 1);
  const shape: Vec3 = [size(1), size(2), size(3)];
  const channels = size(4);
  if (checkLimits) checkSizeLimits(dim, ndim, shape, channels, opts, fail);
  return { dim, ndim, shape, channels };
}

function checkSizeLimits(
  dim: number[],
  ndim: number,
  shape: Vec3,
  channels: number,
  opts: NiftiReadOptions,
  fail: Fail,
) {
  const voxels = shape[0] * shape[1] * shape[2] * channels;
  const maxChannels = opts.maxChannels ?? limit("channels");
  if (channels > maxChannels)
    fail(
      `dim[4] is ${channels}: more than ${maxChannels} volumes in the 4th dimension (limit SSL3D_MAX_CHANNELS; split the series first)`,
      "dim[4]",
    );
  const maxVoxels = opts.maxVoxels ?? limit("voxels");
  if (voxels > maxVoxels) {
    fail(
      `header claims ${dim.slice(1, ndim + 1).join("x")} = ${voxels.toExponential(2)} voxels, above the limit of ${maxVoxels} (SSL3D_MAX_VOXELS)`,
      "dim",
    );
  }
}

function datatypeOf(code: number, fail: Fail): DatatypeInfo {
  const dt = DATATYPES.get(code);
  if (dt !== undefined) return dt;
  const known = UNSUPPORTED.get(code);
  return fail(
    known !== undefined
      ? `datatype ${known} (code ${code}) is not supported; supported: ${[...DATATYPES.values()].map((d) => d.name).join(", ")}`
      : `unknown datatype code ${code}`,
    "datatype",
  );
}

function spacingOf(pixdim: readonly number[], ndim: number, fail: Fail): Vec3 {
  for (let i = 1; i <= 3; i++) {
    const p = pixdim[i]!;
    if (!Number.isFinite(p)) fail(`pixdim[${i}] is ${p}`, `pixdim[${i}]`);
    if (p === 0 && i <= ndim) fail(`pixdim[${i}] is 0 (voxel spacing must be non-zero)`, `pixdim[${i}]`);
    if (p !== 0 && Math.abs(p) < MIN_SPACING)
      fail(
        `pixdim[${i}] is ${p}: near-zero voxel spacing (below ${MIN_SPACING} mm; resampling would give an empty image)`,
        `pixdim[${i}]`,
      );
  }
  const zoom = (i: number): number => (pixdim[i] === 0 ? 1 : Math.abs(pixdim[i]!));
  return [zoom(1), zoom(2), zoom(3)];
}

function checkVoxOffset(voxOffset: number, version: 1 | 2, opts: NiftiReadOptions, checkLimits: boolean, fail: Fail) {
  const minOffset = version === 1 ? N1_SIZE : N2_SIZE;
  if (!Number.isFinite(voxOffset) || !Number.isInteger(voxOffset) || voxOffset < minOffset) {
    fail(`vox_offset is ${voxOffset}, must be an integer >= ${minOffset}`, "vox_offset");
  }
  if (checkLimits) {
    const maxVoxOffset = opts.maxVoxOffset ?? limit("voxOffset");
    if (voxOffset > maxVoxOffset)
      fail(
        `vox_offset is ${voxOffset}: more than ${maxVoxOffset} bytes of header and extensions before the voxel data (limit SSL3D_MAX_VOX_OFFSET)`,
        "vox_offset",
      );
  }
  return voxOffset;
}

function scalingOf(slope: number, inter: number, fail: Fail): NiftiHeader["scaling"] {
  if (!Number.isFinite(slope) || slope === 0) return undefined;
  if (!Number.isFinite(inter)) fail(`scl_inter is ${inter} with a valid scl_slope ${slope}`, "scl_inter");
  return slope !== 1 || inter !== 0 ? { slope, inter } : undefined;
}

function bestAffine(
  dv: DataView,
  le: boolean,
  version: 1 | 2,
  h: NIFTI1 | NIFTI2,
  shape: Vec3,
  spacing: Vec3,
  pixdim: readonly number[],
  ndim: number,
  file: string,
): { affine: Mat4; source: NiftiHeader["affineSource"] } {
  const sformCode = h.sform_code,
    qformCode = h.qform_code;
  if (sformCode > 0) {
    const a: number[] = [];
    for (let i = 0; i < 12; i++)
      a.push(version === 1 ? dv.getFloat32(280 + 4 * i, le) : dv.getFloat64(400 + 8 * i, le));
    a.push(0, 0, 0, 1);
    const bad = a.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0)
      throw new DataError(`srow_${"xyz"[Math.floor(bad / 4)]}[${bad % 4}] is ${a[bad]} (sform_code ${sformCode})`, {
        file,
        field: "srow",
      });
    return { affine: a, source: "sform" };
  }
  if (qformCode > 0) {
    const b = h.quatern_b,
      c = h.quatern_c,
      d = h.quatern_d;
    const qx = h.qoffset_x,
      qy = h.qoffset_y;
    const qz = h.qoffset_z;
    const vals = [b, c, d, qx, qy, qz];
    if (vals.some((v) => !Number.isFinite(v)))
      throw new DataError(`non-finite quaternion or qoffset (qform_code ${qformCode})`, { file, field: "quatern" });
    let w2 = 1 - (b * b + c * c + d * d);
    // nibabel's tolerance for float32 round-off: -3 * eps(float32)
    if (w2 < 0) {
      if (w2 < -3 * 1.1920929e-7)
        throw new DataError(`invalid qform quaternion (b²+c²+d² = ${(1 - w2).toFixed(6)} > 1)`, {
          file,
          field: "quatern",
        });
      w2 = 0;
    }
    const a = Math.sqrt(w2);
    const qfac = pixdim[0] === -1 ? -1 : 1;
    const R = [
      [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    const z = [spacing[0], spacing[1], spacing[2] * qfac];
    const off = [qx, qy, qz];
    const out: number[] = [];
    for (let r = 0; r < 3; r++) out.push(R[r]![0]! * z[0]!, R[r]![1]! * z[1]!, R[r]![2]! * z[2]!, off[r]!);
    out.push(0, 0, 0, 1);
    return { affine: out, source: "qform" };
  }
  // nibabel shape_zoom_affine(shape[:ndim], pixdim[1:ndim+1], x_flip=True)
  const n = Math.min(ndim, 3);
  const sh = [0, 1, 2].map((i) => (i < n ? shape[i]! : 1));
  const zo = [0, 1, 2].map((i) => (i < n ? pixdim[i + 1]! : 1));
  zo[0] = -zo[0]!;
  const o = sh.map((s) => (s - 1) / 2);
  return {
    affine: [zo[0], 0, 0, -o[0]! * zo[0], 0, zo[1]!, 0, -o[1]! * zo[1]!, 0, 0, zo[2]!, -o[2]! * zo[2]!, 0, 0, 0, 1],
    source: "base",
  };
}

// ---------------------------------------------------------------------------------------------------------------
// File access

const HEADER_PREFIX = 544; // enough for either header version (+4 extension bytes of NIfTI-1)

function checkName(file: string): void {
  if (/\.(hdr|img)(\.gz)?$/i.test(file)) {
    throw new DataError(
      'Analyze-style .hdr/.img pairs are not supported; convert to a single .nii/.nii.gz (e.g. nibabel: nib.save(nib.load(f), "x.nii.gz"))',
      { file },
    );
  }
}

async function statFile(file: string): Promise<number> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataError(code === "ENOENT" ? "file not found" : `cannot read file (${code ?? String(err)})`, {
      file,
      cause: err,
    });
  }
  if (st.isDirectory()) throw new DataError("is a directory, expected a .nii or .nii.gz file", { file });
  // a FIFO or a device would block or never end (/dev/zero reports size 0, a pipe blocks its reader)
  if (!st.isFile()) throw new DataError(`is ${fileKind(st)}, expected a regular .nii or .nii.gz file`, { file });
  if (st.size === 0) throw new DataError("empty file (0 bytes)", { file });
  return st.size;
}

async function isGzip(file: string): Promise<boolean> {
  const fh = await fs.open(file, "r");
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    return bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

interface RawNifti {
  readonly header: NiftiHeader;
  /** Exactly `header.dataBytes` bytes of voxel data (only when data was requested). */
  readonly data?: Uint8Array;
}

function gzipError(err: unknown, file: string): DataError {
  const e = err as NodeJS.ErrnoException;
  const truncated = e.code === "Z_BUF_ERROR" || /unexpected end of file/i.test(e.message);
  return new DataError(
    truncated
      ? "truncated gzip stream (file ends before the compressed data does)"
      : `corrupt gzip stream (${e.message})`,
    { file, cause: err },
  );
}

function shortData(file: string, h: NiftiHeader, have: number, what: string): DataError {
  return new DataError(
    `data shorter than the header claims: ${what} has ${have} bytes, header needs ${h.voxOffset + h.dataBytes} (vox_offset ${h.voxOffset} + ${h.dataBytes} data bytes)`,
    { file },
  );
}

/** DEFLATE expands at most ~1032:1; a gzip file cannot decompress to more than this many bytes. */
function maxInflated(compressedBytes: number): number {
  return 1032 * compressedBytes + 1024;
}

async function readGzip(file: string, size: number, opts: NiftiReadOptions, wantData: boolean): Promise<RawNifti> {
  const prefix: Buffer[] = [];
  let prefixLen = 0;
  let header: NiftiHeader | undefined;
  let out: Buffer | undefined;
  let need = 0;
  /** Decompressed bytes seen so far (stream position) and voxel bytes collected. */
  let pos = 0;
  let filled = 0;
  /** Copy the part of a chunk at stream position `at` that falls into [vox_offset, vox_offset + dataBytes). */
  const collect = (chunk: Buffer, at: number): void => {
    const from = Math.max(header!.voxOffset, at);
    const to = Math.min(need, at + chunk.length);
    if (to > from) {
      chunk.copy(out!, from - header!.voxOffset, from - at, to - at);
      filled += to - from;
    }
  };
  /** Take one decompressed chunk; true when everything needed has arrived. */
  const consume = (chunk: Buffer): boolean => {
    const at = pos;
    pos += chunk.length;
    if (header === undefined) {
      prefix.push(chunk);
      prefixLen += chunk.length;
      if (prefixLen < HEADER_PREFIX) return false;
      header = parseNiftiHeader(Buffer.concat(prefix, prefixLen), file, opts);
      if (!wantData) return true;
      need = header.voxOffset + header.dataBytes;
      // a header claiming more than the compressed file can hold is truncated for sure: fail before allocating
      if (need > maxInflated(size))
        throw new DataError(
          `truncated gzip stream: a ${size}-byte file inflates to at most ${maxInflated(size)} bytes, the header needs ${need} (vox_offset ${header.voxOffset} + ${header.dataBytes} data bytes)`,
          { file },
        );
      // only the voxel data is buffered, after the header passed validation: the bytes up to vox_offset are skipped
      out = Buffer.allocUnsafe(header.dataBytes);
      let p = 0;
      for (const c of prefix) {
        collect(c, p);
        p += c.length;
      }
      prefix.length = 0;
    } else {
      collect(chunk, at);
    }
    return pos >= need;
  };
  const src = createReadStream(file);
  const gunzip = createGunzip();
  const outcome = await new Promise<{ error?: unknown }>((resolve) => {
    let settled = false;
    const finish = (v: { error?: unknown }): void => {
      if (settled) return;
      settled = true;
      resolve(v);
    };
    gunzip.on("data", (chunk: Buffer) => {
      if (settled) return;
      try {
        if (consume(chunk)) finish({});
      } catch (error) {
        finish({ error });
      }
    });
    gunzip.on("end", () => {
      finish({});
    });
    gunzip.on("error", (error) => {
      finish({ error });
    });
    src.on("error", (error) => {
      finish({ error });
    });
    src.pipe(gunzip);
  });
  src.destroy();
  gunzip.destroy();
  if (outcome.error !== undefined) {
    if (outcome.error instanceof DataError) throw outcome.error;
    // a gzip error after everything the header needs has arrived (e.g. trailing garbage) is harmless
    const complete = header !== undefined && (!wantData || pos >= need);
    if (!complete) throw gzipError(outcome.error, file);
  }
  if (header === undefined) {
    // the whole decompressed file is shorter than HEADER_PREFIX
    const all = Buffer.concat(prefix, prefixLen);
    header = parseNiftiHeader(all, file, opts);
    if (!wantData) return { header };
    need = header.voxOffset + header.dataBytes;
    if (prefixLen < need) throw shortData(file, header, prefixLen, "decompressed stream");
    return { header, data: all.subarray(header.voxOffset, need) };
  }
  if (!wantData) return { header };
  if (pos < need) throw shortData(file, header, pos, "decompressed stream");
  return { header, data: out!.subarray(0, filled) };
}

async function readPlain(file: string, size: number, opts: NiftiReadOptions, wantData: boolean): Promise<RawNifti> {
  const fh = await fs.open(file, "r");
  try {
    const pre = Buffer.alloc(Math.min(size, HEADER_PREFIX));
    await fh.read(pre, 0, pre.length, 0);
    const header = parseNiftiHeader(pre, file, opts);
    if (header.voxOffset > size)
      throw new DataError(`vox_offset ${header.voxOffset} is beyond the end of the file (${size} bytes)`, {
        file,
        field: "vox_offset",
      });
    if (header.voxOffset + header.dataBytes > size) throw shortData(file, header, size, "file");
    if (!wantData) return { header };
    const data = Buffer.allocUnsafe(header.dataBytes);
    let off = 0;
    while (off < data.length) {
      const { bytesRead } = await fh.read(data, off, data.length - off, header.voxOffset + off);
      if (bytesRead === 0) throw shortData(file, header, header.voxOffset + off, "file");
      off += bytesRead;
    }
    return { header, data };
  } finally {
    await fh.close();
  }
}

async function readRaw(file: string, opts: NiftiReadOptions, wantData: boolean): Promise<RawNifti> {
  checkName(file);
  const size = await statFile(file);
  return (await isGzip(file)) ? readGzip(file, size, opts, wantData) : readPlain(file, size, opts, wantData);
}

/** Read and validate only the header (for `.nii.gz`, decompresses just the first bytes). */
export async function readNiftiHeader(file: string, opts: NiftiReadOptions = {}): Promise<NiftiHeader> {
  return (await readRaw(file, opts, false)).header;
}

// ---------------------------------------------------------------------------------------------------------------
// Voxel conversion

function toFloat32(h: NiftiHeader, bytes: Uint8Array): Float32Array {
  const n = h.dataBytes / h.bytesPerVoxel;
  const out = new Float32Array(n);
  const nativeLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  if (h.littleEndian === nativeLE && bytes.byteOffset % h.bytesPerVoxel === 0) {
    const buf = bytes.buffer;
    const o = bytes.byteOffset;
    switch (h.datatype) {
      case "uint8":
        out.set(new Uint8Array(buf, o, n));
        break;
      case "int8":
        out.set(new Int8Array(buf, o, n));
        break;
      case "int16":
        out.set(new Int16Array(buf, o, n));
        break;
      case "uint16":
        out.set(new Uint16Array(buf, o, n));
        break;
      case "int32":
        out.set(new Int32Array(buf, o, n));
        break;
      case "uint32":
        out.set(new Uint32Array(buf, o, n));
        break;
      case "float32":
        out.set(new Float32Array(buf, o, n));
        break;
      case "float64":
        out.set(new Float64Array(buf, o, n));
        break;
    }
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const le = h.littleEndian;
    const get: (i: number) => number = (() => {
      switch (h.datatype) {
        case "uint8":
          return (i: number) => dv.getUint8(i);
        case "int8":
          return (i: number) => dv.getInt8(i);
        case "int16":
          return (i: number) => dv.getInt16(2 * i, le);
        case "uint16":
          return (i: number) => dv.getUint16(2 * i, le);
        case "int32":
          return (i: number) => dv.getInt32(4 * i, le);
        case "uint32":
          return (i: number) => dv.getUint32(4 * i, le);
        case "float32":
          return (i: number) => dv.getFloat32(4 * i, le);
        case "float64":
          return (i: number) => dv.getFloat64(8 * i, le);
      }
    })();
    for (let i = 0; i < n; i++) out[i] = get(i);
  }
  if (h.scaling !== undefined) {
    const { slope, inter } = h.scaling;
    for (let i = 0; i < n; i++) out[i] = out[i]! * slope + inter;
  }
  return out;
}

/** Read a `.nii` / `.nii.gz` file into a Volume (float32, scaling applied). */
export async function readNifti(file: string, opts: NiftiReadOptions = {}): Promise<Volume> {
  const { header: h, data } = await readRaw(file, opts, true);
  return {
    data: toFloat32(h, data!),
    shape: h.shape,
    channels: h.channels,
    spacing: h.spacing,
    affine: h.affine,
    datatype: h.datatype,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Orientation

const AXIS_LABELS = [
  ["L", "R"],
  ["P", "A"],
  ["I", "S"],
] as const;

/**
 * Axis codes of a voxel-to-RAS affine like nibabel's `aff2axcodes` (e.g. "RAS", "LPS"): for each voxel axis in
 * turn, the world axis its (normalised) direction is most aligned with, excluding world axes already taken.
 */
export function orientationCode(affine: Mat4): string {
  const cols = [0, 1, 2].map((j) => [0, 1, 2].map((i) => affine[4 * i + j]!));
  const R = cols.map((c) => {
    const norm = Math.hypot(c[0]!, c[1]!, c[2]!) || 1;
    return c.map((v) => v / norm);
  });
  const taken = new Set<number>();
  let code = "";
  for (const col of R) {
    let best = -1,
      bestAbs = -1;
    for (let i = 0; i < 3; i++) {
      if (taken.has(i)) continue;
      const a = Math.abs(col[i]!);
      if (a > bestAbs) {
        bestAbs = a;
        best = i;
      }
    }
    if (bestAbs <= 1e-12) {
      code += "?";
      continue;
    }
    taken.add(best);
    code += AXIS_LABELS[best as 0 | 1 | 2][col[best]! < 0 ? 0 : 1];
  }
  return code;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

export type NiftiWriteDatatype = "float32" | "int16" | "uint8";

export interface VolumeToWrite {
  readonly data: Float32Array | ArrayLike<number>;
  readonly shape: Vec3;
  readonly channels?: number;
  readonly affine: Mat4;
}

/** Unit quaternion (b, c, d) and qfac of the rotation part of an affine (nifti1_io `mat44_to_quatern`). */
export function affineToQuaternion(affine: Mat4): { b: number; c: number; d: number; qfac: 1 | -1; zooms: Vec3 } {
  const col = (j: number): number[] => [affine[j]!, affine[4 + j]!, affine[8 + j]!];
  const cols = [col(0), col(1), col(2)];
  const zooms = cols.map((c) => Math.hypot(c[0]!, c[1]!, c[2]!)) as unknown as [number, number, number];
  const r = cols.map((c, j) =>
    zooms[j]! > 0 ? c.map((v) => v / zooms[j]!) : [j === 0 ? 1 : 0, j === 1 ? 1 : 0, j === 2 ? 1 : 0],
  );
  for (let j = 0; j < 3; j++) if (zooms[j] === 0) zooms[j] = 1;
  // r[j] is column j; m(i,j) = r[j][i]
  const m = (i: number, j: number): number => r[j]![i]!;
  const det =
    m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1)) -
    m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0)) +
    m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
  let qfac: 1 | -1 = 1;
  if (det < 0) {
    qfac = -1;
    r[2] = r[2]!.map((v) => -v);
  }
  const r11 = m(0, 0),
    r12 = m(0, 1),
    r13 = m(0, 2),
    r21 = m(1, 0),
    r22 = m(1, 1),
    r23 = m(1, 2),
    r31 = m(2, 0),
    r32 = m(2, 1),
    r33 = m(2, 2);
  let a = r11 + r22 + r33 + 1,
    b: number,
    c: number,
    d: number;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = (0.25 * (r32 - r23)) / a;
    c = (0.25 * (r13 - r31)) / a;
    d = (0.25 * (r21 - r12)) / a;
  } else {
    const xd = 1 + r11 - (r22 + r33),
      yd = 1 + r22 - (r11 + r33),
      zd = 1 + r33 - (r11 + r22);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = (0.25 * (r12 + r21)) / b;
      d = (0.25 * (r13 + r31)) / b;
      a = (0.25 * (r32 - r23)) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = (0.25 * (r12 + r21)) / c;
      d = (0.25 * (r23 + r32)) / c;
      a = (0.25 * (r13 - r31)) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = (0.25 * (r13 + r31)) / d;
      c = (0.25 * (r23 + r32)) / d;
      a = (0.25 * (r21 - r12)) / d;
    }
    if (a < 0) {
      b = -b;
      c = -c;
      d = -d;
    }
  }
  return { b, c, d, qfac, zooms };
}

/** Encode a NIfTI-1 single file (little-endian, vox_offset 352, sform and qform code 1 from the affine). */
export function encodeNifti(
  vol: VolumeToWrite,
  datatype: NiftiWriteDatatype = "float32",
  file = "<memory>",
): Uint8Array {
  const channels = vol.channels ?? 1;
  const [nx, ny, nz] = vol.shape;
  const n = nx * ny * nz * channels;
  if (vol.data.length !== n)
    throw new DataError(`data has ${vol.data.length} values, shape ${nx}x${ny}x${nz}x${channels} needs ${n}`, { file });
  if (vol.affine.length !== 16 || vol.affine.some((v) => !Number.isFinite(v)))
    throw new DataError("affine must be 16 finite numbers", { file, field: "affine" });
  for (const d of [nx, ny, nz, channels])
    if (!Number.isInteger(d) || d < 1 || d > 32767)
      throw new DataError(`dimension ${d} cannot be stored in NIfTI-1 (1..32767)`, { file, field: "dim" });
  const code = CODE_OF[datatype];
  const bpv = datatype === "float32" ? 4 : datatype === "int16" ? 2 : 1;
  const voxOffset = 352;
  const buf = new Uint8Array(voxOffset + n * bpv);
  const dv = new DataView(buf.buffer);
  const le = true;
  dv.setInt32(0, N1_SIZE, le);
  const dims = [channels > 1 ? 4 : 3, nx, ny, nz, channels, 1, 1, 1];
  dims.forEach((v, i) => {
    dv.setInt16(40 + 2 * i, v, le);
  });
  dv.setInt16(70, code, le);
  dv.setInt16(72, bpv * 8, le);
  const q = affineToQuaternion(vol.affine);
  const pix = [q.qfac, q.zooms[0], q.zooms[1], q.zooms[2], 1, 1, 1, 1];
  pix.forEach((v, i) => {
    dv.setFloat32(76 + 4 * i, v, le);
  });
  dv.setFloat32(108, voxOffset, le);
  dv.setFloat32(112, 1, le); // scl_slope
  dv.setFloat32(116, 0, le); // scl_inter
  dv.setUint8(123, 2); // xyzt_units: mm
  new TextEncoder().encodeInto("ssl3d", buf.subarray(148, 228));
  dv.setInt16(252, 1, le); // qform_code: scanner
  dv.setInt16(254, 1, le); // sform_code: scanner
  dv.setFloat32(256, q.b, le);
  dv.setFloat32(260, q.c, le);
  dv.setFloat32(264, q.d, le);
  dv.setFloat32(268, vol.affine[3]!, le);
  dv.setFloat32(272, vol.affine[7]!, le);
  dv.setFloat32(276, vol.affine[11]!, le);
  for (let i = 0; i < 12; i++) dv.setFloat32(280 + 4 * i, vol.affine[i]!, le);
  buf.set([0x6e, 0x2b, 0x31, 0], 344); // "n+1\0"
  const d = vol.data;
  if (datatype === "float32") {
    new Float32Array(buf.buffer, voxOffset, n).set(d);
  } else {
    const [lo, hi] = datatype === "int16" ? [-32768, 32767] : [0, 255];
    const out =
      datatype === "int16" ? new Int16Array(buf.buffer, voxOffset, n) : new Uint8Array(buf.buffer, voxOffset, n);
    for (let i = 0; i < n; i++) {
      const v = Math.round(d[i]!);
      if (!(v >= lo && v <= hi))
        throw new DataError(`value ${d[i]} at index ${i} does not fit ${datatype} (${lo}..${hi})`, { file });
      out[i] = v;
    }
  }
  return buf;
}

/** Write a Volume as NIfTI-1 (`.nii`, or gzip-compressed when the name ends in `.gz`), atomically. */
export async function writeNifti(
  file: string,
  vol: VolumeToWrite,
  datatype: NiftiWriteDatatype = "float32",
): Promise<void> {
  const raw = encodeNifti(vol, datatype, file);
  await writeFileAtomic(file, file.endsWith(".gz") ? gzipSync(raw, { level: 6 }) : raw);
}
