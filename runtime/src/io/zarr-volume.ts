/**
 * Preprocessed volumes as Zarr v3 arrays (written here, read with zarrita).
 *
 * Layout: one array directory per volume, float32, C-order shape (C, X, Y, Z). The whole array is ONE shard
 * (`sharding_indexed` codec, index at the end with crc32c), holding inner chunks of (1, 32, 32, 32) voxels
 * compressed with Blosc (zstd level 3, no shuffle). Why: a 160^3 training patch touches at most 6^3 inner chunks of
 * 128 KiB (about 1.7x the patch decompressed, against about 4x with 64^3 chunks), while the dataset stays at two
 * files per volume (`zarr.json` + `c/0/0/0/0`) instead of hundreds — which matters at 100k images. See
 * docs/preprocessing.md for the measurements behind the choice.
 *
 * Writing is atomic (a temporary directory renamed into place); the function returns a content checksum of
 * the files it wrote, which the caller records in the properties JSON (the completion marker).
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import BloscModule from "numcodecs/blosc";
import * as zarr from "zarrita";
import { DataError, fileSystemError } from "../errors.js";
import { prepareDirAtomic } from "./atomic.js";

export const DEFAULT_INNER_CHUNK = [32, 32, 32] as const;
/** zstd level 3 without byte shuffle: see docs/preprocessing.md (Storage) for the measurements. */
export const DEFAULT_CLEVEL = 3;
export const DEFAULT_SHUFFLE: BloscShuffle = "noshuffle";
export type BloscShuffle = "noshuffle" | "shuffle";
const SHARD_KEY = "c/0/0/0/0";
const EMPTY = 0xffffffffffffffffn;

export interface ZarrWriteOptions {
  /** Spatial inner-chunk shape (X, Y, Z); the channel axis is chunked by 1. */
  readonly innerChunk?: readonly [number, number, number];
  /** zstd level inside Blosc (1..9). */
  readonly clevel?: number;
  readonly shuffle?: BloscShuffle;
  readonly attributes?: Record<string, unknown>;
  /** The output root the array must lie below (io/safe-path.ts). */
  readonly root?: string;
}

export interface ZarrWriteResult {
  /** `sha256:<hex>` over the array's files (see `checksumZarrVolume`). */
  readonly checksum: string;
  readonly bytes: number;
}

// CRC-32C (Castagnoli), as required by the sharding index codec `crc32c`.
interface BytesCodec {
  encode(data: Uint8Array): Promise<Uint8Array>;
  decode(data: Uint8Array): Promise<Uint8Array>;
}
interface BloscFactory {
  fromConfig(c: { cname: string; clevel: number; shuffle: number; blocksize: number }): BytesCodec;
}
const Blosc = BloscModule as unknown as BloscFactory;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function arrayMetadata(
  shape: readonly number[],
  shardShape: number[],
  inner: number[],
  clevel: number,
  shuffle: BloscShuffle,
  attributes: Record<string, unknown>,
): Record<string, unknown> {
  return {
    zarr_format: 3,
    node_type: "array",
    shape,
    data_type: "float32",
    chunk_grid: { name: "regular", configuration: { chunk_shape: shardShape } },
    chunk_key_encoding: { name: "default", configuration: { separator: "/" } },
    fill_value: 0,
    codecs: [
      {
        name: "sharding_indexed",
        configuration: {
          chunk_shape: inner,
          codecs: [
            { name: "bytes", configuration: { endian: "little" } },
            { name: "blosc", configuration: { cname: "zstd", clevel, shuffle, typesize: 4, blocksize: 0 } },
          ],
          index_codecs: [{ name: "bytes", configuration: { endian: "little" } }, { name: "crc32c" }],
          index_location: "end",
        },
      },
    ],
    attributes,
    dimension_names: ["c", "x", "y", "z"],
  };
}

/** Files of a volume directory in checksum order. */
const FILES = ["zarr.json", SHARD_KEY];

function hashFiles(parts: readonly Uint8Array[]): string {
  const h = createHash("sha256");
  FILES.forEach((name, i) => {
    h.update(name);
    h.update("\0");
    h.update(parts[i]!);
  });
  return `sha256:${h.digest("hex")}`;
}

/**
 * Encode a C-order float32 (C, X, Y, Z) array into the shard bytes. Inner chunks are always full-size (edge
 * chunks zero-filled, as Zarr requires); all-zero chunks are left out of the shard (the fill value).
 */
export async function encodeShard(
  data: Float32Array,
  shape: readonly number[],
  inner: readonly number[],
  clevel: number,
  shuffle: BloscShuffle,
): Promise<Uint8Array> {
  const [C, X, Y, Z] = shape as [number, number, number, number];
  const [cx, cy, cz] = inner as [number, number, number];
  const nx = Math.ceil(X / cx);
  const ny = Math.ceil(Y / cy);
  const nz = Math.ceil(Z / cz);
  const codec = Blosc.fromConfig({ cname: "zstd", clevel, shuffle: shuffle === "shuffle" ? 1 : 0, blocksize: 0 });
  const index = new BigUint64Array(C * nx * ny * nz * 2).fill(EMPTY);
  const pieces: Uint8Array[] = [];
  let offset = 0;
  const buf = new Float32Array(cx * cy * cz);
  const bytes = new Uint8Array(buf.buffer);
  let ci = 0;
  for (let c = 0; c < C; c++)
    for (let i = 0; i < nx; i++)
      for (let j = 0; j < ny; j++)
        for (let k = 0; k < nz; k++, ci++) {
          buf.fill(0);
          let any = false;
          const x0 = i * cx;
          const y0 = j * cy;
          const z0 = k * cz;
          const xe = Math.min(X, x0 + cx);
          const ye = Math.min(Y, y0 + cy);
          const ze = Math.min(Z, z0 + cz);
          for (let x = x0; x < xe; x++)
            for (let y = y0; y < ye; y++) {
              const src = ((c * X + x) * Y + y) * Z;
              const dst = ((x - x0) * cy + (y - y0)) * cz;
              for (let z = z0; z < ze; z++) {
                const v = data[src + z]!;
                if (v !== 0 || Object.is(v, -0)) any = true;
                buf[dst + z - z0] = v;
              }
            }
          if (!any) continue;
          const enc = await codec.encode(bytes);
          const piece = new Uint8Array(enc); // copy: the codec's buffer is reused
          pieces.push(piece);
          index[2 * ci] = BigInt(offset);
          index[2 * ci + 1] = BigInt(piece.length);
          offset += piece.length;
        }
  const indexBytes = new Uint8Array(index.buffer);
  const out = new Uint8Array(offset + indexBytes.length + 4);
  let p = 0;
  for (const piece of pieces) {
    out.set(piece, p);
    p += piece.length;
  }
  out.set(indexBytes, p);
  new DataView(out.buffer).setUint32(p + indexBytes.length, crc32c(indexBytes), true);
  return out;
}

/** Write `data` (C-order, `shape` = (C, X, Y, Z)) as a Zarr v3 array directory at `dir`, atomically. */
export async function writeZarrVolume(
  dir: string,
  data: Float32Array,
  shape: readonly number[],
  opts: ZarrWriteOptions = {},
): Promise<ZarrWriteResult> {
  if (shape.length !== 4)
    throw new RangeError(`writeZarrVolume: shape must be (C, X, Y, Z), got [${shape.join(", ")}]`);
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new RangeError(`writeZarrVolume: ${data.length} values for shape [${shape.join(", ")}]`);
  const inner = opts.innerChunk ?? DEFAULT_INNER_CHUNK;
  const clevel = opts.clevel ?? DEFAULT_CLEVEL;
  const shuffle = opts.shuffle ?? DEFAULT_SHUFFLE;
  const innerShape = [1, Math.min(inner[0], shape[1]!), Math.min(inner[1], shape[2]!), Math.min(inner[2], shape[3]!)];
  const shardShape = shape.map((s, i) => Math.ceil(s / innerShape[i]!) * innerShape[i]!);
  const meta = new TextEncoder().encode(
    JSON.stringify(arrayMetadata(shape, shardShape, innerShape, clevel, shuffle, opts.attributes ?? {}), null, 2) +
      "\n",
  );
  const shard = await encodeShard(data, shape, innerShape.slice(1), clevel, shuffle);
  const tx = await prepareDirAtomic(dir, opts.root === undefined ? {} : { root: opts.root });
  try {
    await fs.writeFile(path.join(tx.tmpDir, "zarr.json"), meta);
    await fs.mkdir(path.join(tx.tmpDir, path.dirname(SHARD_KEY)), { recursive: true });
    const fh = await fs.open(path.join(tx.tmpDir, SHARD_KEY), "w");
    try {
      await fh.writeFile(shard);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await tx.commit();
  } catch (err) {
    await tx.abort();
    throw fileSystemError(err, dir) ?? err;
  }
  return { checksum: hashFiles([meta, shard]), bytes: meta.length + shard.length };
}

/** Recompute the checksum of a written volume from its files; `null` if a file is missing. */
export async function checksumZarrVolume(dir: string): Promise<string | null> {
  try {
    const parts = await Promise.all(FILES.map((f) => fs.readFile(path.join(dir, f))));
    return hashFiles(parts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** A read-only zarrita store over one directory (files opened per read: an open volume holds no descriptor). */
class DirStore implements zarr.AsyncReadable {
  constructor(private readonly root: string) {}
  private file(key: string): string {
    return path.join(this.root, key.replace(/^\//, ""));
  }
  async get(key: zarr.AbsolutePath): Promise<Uint8Array | undefined> {
    try {
      return await fs.readFile(this.file(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }
  async getRange(key: zarr.AbsolutePath, range: zarr.RangeQuery): Promise<Uint8Array | undefined> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.file(key), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    try {
      if ("suffixLength" in range) {
        const size = (await fh.stat()).size;
        const b = new Uint8Array(range.suffixLength);
        await fh.read(b, 0, range.suffixLength, size - range.suffixLength);
        return b;
      }
      const b = new Uint8Array(range.length);
      await fh.read(b, 0, range.length, range.offset);
      return b;
    } finally {
      await fh.close();
    }
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export interface ZarrVolume {
  /** (C, X, Y, Z). */
  readonly shape: readonly number[];
  readonly attributes: Record<string, unknown>;
  /**
   * Read the box `[start, start + size)` as a C-order Float32Array; voxels outside the array are 0. `start`/`size`
   * have 4 entries (C, X, Y, Z) or 3 (X, Y, Z; all channels).
   */
  readRegion(start: readonly number[], size: readonly number[]): Promise<Float32Array>;
  /** The whole array. */
  readAll(): Promise<Float32Array>;
  /** `readRegion` through zarrita's generic reader (reference path; slower). */
  readRegionZarrita(start: readonly number[], size: readonly number[]): Promise<Float32Array>;
  /** True when this module's own single-shard layout is read directly. */
  readonly fastPath: boolean;
  /** Nothing to release today (files are opened per read); kept so callers can be explicit. */
  close(): Promise<void>;
}

interface ShardLayout {
  readonly inner: number[]; // (1, cx, cy, cz)
  readonly grid: number[]; // inner chunks per axis
  readonly index: BigUint64Array;
  /** The shard file; opened per read, so an open volume holds no file descriptor. */
  readonly file: string;
}

/**
 * The layout this module writes (one shard, Blosc inner chunks, crc32c index at the end) is read directly: the
 * index is read once (its crc32c checked) and each needed inner chunk is one pread + one decode, about 2-3x faster
 * than zarrita's generic path. Anything else (other writers, other codecs) is read through zarrita.
 */
async function openShardLayout(
  dir: string,
  meta: Record<string, unknown>,
  shape: readonly number[],
): Promise<ShardLayout | undefined> {
  type Codec = { name?: string; configuration?: Record<string, unknown> };
  const codecs = meta.codecs as Codec[] | undefined;
  const grid = (meta.chunk_grid as { configuration?: { chunk_shape?: number[] } } | undefined)?.configuration
    ?.chunk_shape;
  const keyEnc = meta.chunk_key_encoding as { name?: string; configuration?: { separator?: string } } | undefined;
  if (codecs?.length !== 1 || codecs[0]!.name !== "sharding_indexed" || grid === undefined) return undefined;
  if (keyEnc?.name !== "default" || keyEnc.configuration?.separator !== "/") return undefined;
  if (grid.some((g, i) => g < shape[i]!)) return undefined; // more than one shard
  const cfg = codecs[0]!.configuration as
    { chunk_shape?: number[]; codecs?: Codec[]; index_codecs?: Codec[]; index_location?: string } | undefined;
  const inner = cfg?.chunk_shape;
  const ic = cfg?.codecs ?? [];
  const xc = cfg?.index_codecs ?? [];
  const littleBytes = (c: Codec | undefined): boolean => c?.name === "bytes" && c.configuration?.endian === "little";
  if (inner?.length !== 4 || (cfg?.index_location ?? "end") !== "end") return undefined;
  if (ic.length !== 2 || !littleBytes(ic[0]) || ic[1]!.name !== "blosc") return undefined;
  if (xc.length !== 2 || !littleBytes(xc[0]) || xc[1]!.name !== "crc32c") return undefined;
  const chunksPerShard = grid.map((g, i) => g / inner[i]!);
  if (chunksPerShard.some((n) => !Number.isInteger(n))) return undefined;
  const n = chunksPerShard.reduce((a, b) => a * b, 1);
  const file = path.join(dir, SHARD_KEY);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new DataError("shard file missing", { file, cause: err });
    throw err;
  }
  const idxBytes = new Uint8Array(n * 16 + 4);
  try {
    const size = (await fh.stat()).size;
    if (size < idxBytes.length) throw new DataError("shard file shorter than its index", { file });
    await fh.read(idxBytes, 0, idxBytes.length, size - idxBytes.length);
  } finally {
    await fh.close();
  }
  const body = idxBytes.subarray(0, n * 16);
  if (crc32c(body) !== new DataView(idxBytes.buffer).getUint32(n * 16, true)) {
    throw new DataError("shard index checksum (crc32c) mismatch: the file is damaged", { file });
  }
  return { inner, grid: chunksPerShard, index: new BigUint64Array(idxBytes.buffer.slice(0, n * 16)), file };
}

async function readRegionSharded(
  L: ShardLayout,
  shape: readonly number[],
  start: number[],
  size: number[],
  out: Float32Array,
): Promise<void> {
  const decoder = Blosc.fromConfig({ cname: "zstd", clevel: 1, shuffle: 0, blocksize: 0 }); // decoding reads the header
  const lo = start.map((s) => Math.max(0, s));
  const hi = start.map((s, i) => Math.min(shape[i]!, s + size[i]!));
  if (lo.some((l, i) => l >= hi[i]!)) return;
  const [ic, ix, iy, iz] = L.inner as [number, number, number, number];
  const [, gx, gy, gz] = L.grid as [number, number, number, number];
  const cLo = lo.map((l, i) => Math.floor(l / L.inner[i]!));
  const cHi = hi.map((h, i) => Math.ceil(h / L.inner[i]!));
  let buf = new Uint8Array(0);
  const fh = await fs.open(L.file, "r");
  try {
    for (let c0 = cLo[0]!; c0 < cHi[0]!; c0++)
      for (let c1 = cLo[1]!; c1 < cHi[1]!; c1++)
        for (let c2 = cLo[2]!; c2 < cHi[2]!; c2++)
          for (let c3 = cLo[3]!; c3 < cHi[3]!; c3++) {
            const ci = ((c0 * gx + c1) * gy + c2) * gz + c3;
            const off = L.index[2 * ci]!;
            const len = L.index[2 * ci + 1]!;
            if (off === EMPTY && len === EMPTY) continue; // fill value 0: `out` is already zero
            const nbytes = Number(len);
            if (buf.length < nbytes) buf = new Uint8Array(nbytes);
            const view = buf.subarray(0, nbytes);
            await fh.read(view, 0, nbytes, Number(off));
            const raw = await decoder.decode(view);
            const chunk = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
            const base = [c0 * ic, c1 * ix, c2 * iy, c3 * iz];
            const a = base.map((b, i) => Math.max(b, lo[i]!));
            const e = base.map((b, i) => Math.min(b + L.inner[i]!, hi[i]!));
            const run = e[3]! - a[3]!;
            for (let p = a[0]!; p < e[0]!; p++)
              for (let x = a[1]!; x < e[1]!; x++)
                for (let y = a[2]!; y < e[2]!; y++) {
                  const src = (((p - base[0]!) * ix + (x - base[1]!)) * iy + (y - base[2]!)) * iz + (a[3]! - base[3]!);
                  const dst =
                    (((p - start[0]!) * size[1]! + (x - start[1]!)) * size[2]! + (y - start[2]!)) * size[3]! +
                    (a[3]! - start[3]!);
                  out.set(chunk.subarray(src, src + run), dst);
                }
          }
  } finally {
    await fh.close();
  }
}

/** Copy the box [lo, hi) of a strided source (origin at lo) into `out` (C-order `size`, origin at `start`). */
function copyBox(
  src: Float32Array,
  stride: readonly number[],
  lo: readonly number[],
  hi: readonly number[],
  start: readonly number[],
  size: readonly number[],
  out: Float32Array,
): void {
  const [e0, e1, e2, e3] = hi.map((h, i) => h - lo[i]!) as [number, number, number, number];
  const [s0, s1, s2, s3] = stride as [number, number, number, number];
  const o = lo.map((l, i) => l - start[i]!);
  for (let c = 0; c < e0; c++)
    for (let x = 0; x < e1; x++)
      for (let y = 0; y < e2; y++) {
        const srcBase = c * s0 + x * s1 + y * s2;
        const dstBase = (((c + o[0]!) * size[1]! + x + o[1]!) * size[2]! + y + o[2]!) * size[3]! + o[3]!;
        if (s3 === 1) out.set(src.subarray(srcBase, srcBase + e3), dstBase);
        else for (let z = 0; z < e3; z++) out[dstBase + z] = src[srcBase + z * s3]!;
      }
}

export async function openZarrVolume(dir: string): Promise<ZarrVolume> {
  const store = new DirStore(dir);
  let arr: zarr.Array<zarr.DataType, DirStore>;
  try {
    arr = await zarr.open(zarr.root(store), { kind: "array" });
  } catch (err) {
    throw new DataError(`not a readable Zarr v3 array: ${(err as Error).message}`, { file: dir, cause: err });
  }
  if (!arr.is("float32") || arr.shape.length !== 4) {
    throw new DataError(`expected a float32 (C, X, Y, Z) array, found ${arr.dtype} [${arr.shape.join(", ")}]`, {
      file: dir,
    });
  }
  const f32 = arr;
  const shape = f32.shape;
  const meta = JSON.parse(await fs.readFile(path.join(dir, "zarr.json"), "utf8")) as Record<string, unknown>;
  const layout = await openShardLayout(dir, meta, shape);
  const readRegion = async (start0: readonly number[], size0: readonly number[]): Promise<Float32Array> => {
    const start = start0.length === 3 ? [0, ...start0] : [...start0];
    const size = size0.length === 3 ? [shape[0]!, ...size0] : [...size0];
    if (start.length !== 4 || size.length !== 4) throw new RangeError("readRegion: start/size need 3 or 4 entries");
    const out = new Float32Array(size.reduce((a, b) => a * b, 1));
    if (layout !== undefined) {
      await readRegionSharded(layout, shape, start, size, out);
      return out;
    }
    const lo = start.map((s) => Math.max(0, s));
    const hi = start.map((s, i) => Math.min(shape[i]!, s + size[i]!));
    if (lo.some((l, i) => l >= hi[i]!)) return out;
    const chunk = await zarr.get(
      f32,
      lo.map((l, i) => zarr.slice(l, hi[i] as number)),
    );
    copyBox(chunk.data, chunk.stride, lo, hi, start, size, out);
    return out;
  };
  return {
    shape,
    attributes: f32.attrs,
    readRegion,
    readAll: () => readRegion([0, 0, 0, 0], shape),
    readRegionZarrita: async (start: readonly number[], size: readonly number[]) => {
      const out = new Float32Array(size.reduce((a, b) => a * b, 1));
      const lo = start.map((s) => Math.max(0, s));
      const hi = start.map((s, i) => Math.min(shape[i]!, s + size[i]!));
      if (lo.some((l, i) => l >= hi[i]!)) return out;
      const chunk = await zarr.get(
        f32,
        lo.map((l, i) => zarr.slice(l, hi[i] as number)),
      );
      copyBox(chunk.data, chunk.stride, lo, hi, start, size, out);
      return out;
    },
    fastPath: layout !== undefined,
    close: () => store.close(),
  };
}
