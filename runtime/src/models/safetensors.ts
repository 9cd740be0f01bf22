/**
 * safetensors read/write in pure TypeScript (https://github.com/huggingface/safetensors format):
 * u64 little-endian header length N, N bytes of JSON header (space-padded to a multiple of 8),
 * then the raw little-endian tensor bytes. Header entries: `{dtype, shape, data_offsets: [begin, end]}` relative
 * to the data section, plus an optional `__metadata__` string→string map.
 *
 * Decoding is bounded like upstream's reader (docs/limits-and-safety.md): the header is at most 100 MB, tensors may
 * not overlap (so no file decodes to more than 4x its data bytes), and the float32 output is charged to
 * `SSL3D_CHECKPOINT_MAX_BYTES` before it is allocated.
 */
import { open } from "node:fs/promises";
import { formatBytes, limit } from "../config/limits.js";
import { DataError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { readRegularFile } from "../io/regular-file.js";

export type SafeDtype =
  "F32" | "F64" | "I32" | "I64" | "F16" | "BF16" | "U8" | "I8" | "BOOL" | "I16" | "U16" | "U32" | "U64";

export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

const DTYPE_BYTES: Record<SafeDtype, number> = {
  F32: 4,
  F64: 8,
  I32: 4,
  I64: 8,
  F16: 2,
  BF16: 2,
  U8: 1,
  I8: 1,
  BOOL: 1,
  I16: 2,
  U16: 2,
  U32: 4,
  U64: 8,
};

export function encodeSafetensors(
  tensors: ReadonlyMap<string, NamedTensor>,
  metadata: Readonly<Record<string, string>> = {},
): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let off = 0;
  for (const [name, t] of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new Error(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape.join(",")}]`);
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [off, off + 4 * n] };
    off += 4 * n;
  }
  let json = JSON.stringify(header);
  while (Buffer.byteLength(json) % 8 !== 0) json += " ";
  const hb = Buffer.from(json, "utf8");
  const out = Buffer.allocUnsafe(8 + hb.length + off);
  out.writeBigUInt64LE(BigInt(hb.length), 0);
  hb.copy(out, 8);
  let pos = 8 + hb.length;
  for (const t of tensors.values()) {
    const src = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    src.copy(out, pos);
    pos += src.length;
  }
  return out;
}

export interface DecodedSafetensors {
  readonly tensors: Map<string, NamedTensor>;
  readonly metadata: Record<string, string>;
}

export interface DecodeOptions {
  /** Bytes the decoded float32 tensors may take (default: `limit("checkpointBytes")`). */
  readonly maxBytes?: number;
}

interface HeaderEntry {
  readonly name: string;
  readonly dtype: SafeDtype;
  readonly shape: number[];
  readonly begin: number;
  readonly end: number;
}

function headerEntry(name: string, v: unknown, dataLen: number, file: string): HeaderEntry {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new DataError("tensor entry must be an object {dtype, shape, data_offsets}", { file, field: name });
  const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e.dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, e.dtype))
    throw new DataError(`unsupported dtype ${JSON.stringify(e.dtype)}`, { file, field: `${name}.dtype` });
  const dtype = e.dtype as SafeDtype;
  if (
    !Array.isArray(e.shape) ||
    e.shape.length > 16 ||
    !e.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
  )
    throw new DataError("shape must be a list of at most 16 non-negative integers", { file, field: `${name}.shape` });
  const shape = e.shape as number[];
  const offs = e.data_offsets;
  let count = 1;
  for (const d of shape) count = Math.min(count * d, Number.MAX_SAFE_INTEGER);
  const ok =
    Array.isArray(offs) &&
    offs.length === 2 &&
    offs.every((o) => Number.isSafeInteger(o)) &&
    (offs[0] as number) >= 0 &&
    (offs[1] as number) <= dataLen &&
    (offs[1] as number) - (offs[0] as number) === count * DTYPE_BYTES[dtype];
  if (!ok)
    throw new DataError(
      `data_offsets ${JSON.stringify(offs)} do not match shape [${shape.join(",")}] ${dtype} within ${dataLen} data bytes`,
      { file, field: `${name}.data_offsets` },
    );
  return { name, dtype, shape, begin: (offs as number[])[0]!, end: (offs as number[])[1]! };
}

/** Decode; F32 tensors are returned as-is, F64/F16/BF16/I32/I64 are converted to Float32. */
export function decodeSafetensors(buf: Buffer, file = "<buffer>", opts: DecodeOptions = {}): DecodedSafetensors {
  if (buf.length < 8) throw new DataError("not a safetensors file (shorter than 8 bytes)", { file });
  const n = Number(buf.readBigUInt64LE(0));
  if (n <= 0 || 8 + n > buf.length || n > 100_000_000)
    throw new DataError(`invalid header length ${n} (file has ${buf.length} bytes)`, { file, field: "header" });
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  } catch (err) {
    throw new DataError(`header is not valid JSON: ${(err as Error).message}`, { file, field: "header" });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw new DataError("header must be a JSON object", { file, field: "header" });
  const base = 8 + n;
  const dataLen = buf.length - base;
  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (
        typeof v !== "object" ||
        v === null ||
        Array.isArray(v) ||
        !Object.values(v as Record<string, unknown>).every((x) => typeof x === "string")
      )
        throw new DataError("__metadata__ must map strings to strings", { file, field: "__metadata__" });
      metadata = { ...(v as Record<string, string>) }; // spread defines own properties: a "__proto__" key stays data
      continue;
    }
    entries.push(headerEntry(name, v, dataLen, file));
  }
  // like upstream's reader: tensors may not overlap (each data byte decodes at most once)
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end)
      throw new DataError(`data_offsets overlap those of ${sorted[i - 1]!.name}`, {
        file,
        field: `${sorted[i]!.name}.data_offsets`,
      });
  }
  const outBytes = entries.reduce((a, e) => a + 4 * ((e.end - e.begin) / DTYPE_BYTES[e.dtype]), 0);
  const maxBytes = opts.maxBytes ?? limit("checkpointBytes");
  if (outBytes > maxBytes)
    throw new DataError(
      `decoding needs ${formatBytes(outBytes)}, beyond the limit of ${formatBytes(maxBytes)} (SSL3D_CHECKPOINT_MAX_BYTES)`,
      { file },
    );
  const tensors = new Map<string, NamedTensor>();
  for (const e of entries) {
    const count = (e.end - e.begin) / DTYPE_BYTES[e.dtype];
    tensors.set(e.name, {
      shape: e.shape,
      data: toFloat32(buf.subarray(base + e.begin, base + e.end), e.dtype, count),
    });
  }
  return { tensors, metadata };
}

function toFloat32(bytes: Buffer, dtype: SafeDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < count; i++) {
    switch (dtype) {
      case "F32":
        out[i] = dv.getFloat32(4 * i, true);
        break;
      case "F64":
        out[i] = dv.getFloat64(8 * i, true);
        break;
      case "I32":
        out[i] = dv.getInt32(4 * i, true);
        break;
      case "I64":
        out[i] = Number(dv.getBigInt64(8 * i, true));
        break;
      case "I16":
        out[i] = dv.getInt16(2 * i, true);
        break;
      case "U16":
        out[i] = dv.getUint16(2 * i, true);
        break;
      case "U32":
        out[i] = dv.getUint32(4 * i, true);
        break;
      case "U64":
        out[i] = Number(dv.getBigUint64(8 * i, true));
        break;
      case "U8":
      case "BOOL":
        out[i] = dv.getUint8(i);
        break;
      case "I8":
        out[i] = dv.getInt8(i);
        break;
      case "BF16":
        out[i] = new Float32Array(new Uint32Array([dv.getUint16(2 * i, true) << 16]).buffer)[0]!;
        break;
      case "F16":
        out[i] = halfToFloat(dv.getUint16(2 * i, true));
        break;
    }
  }
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f === 0 ? s * Infinity : NaN;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, NamedTensor>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

export async function readSafetensors(path: string): Promise<DecodedSafetensors> {
  const maxBytes = limit("checkpointBytes");
  return decodeSafetensors(
    await readRegularFile(path, {
      what: "safetensors file",
      maxBytes,
      maxBytesEnv: "SSL3D_CHECKPOINT_MAX_BYTES",
      error: DataError,
    }),
    path,
  );
}

/** The `__metadata__` of a file, reading only its header (checkpoints of large networks are hundreds of MB). */
export async function readSafetensorsMetadata(path: string): Promise<Record<string, string>> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await fh.read(head, 0, 8, 0);
    if (bytesRead < 8) throw new DataError("not a safetensors file (shorter than 8 bytes)", { file: path });
    const n = Number(head.readBigUInt64LE(0));
    const size = (await fh.stat()).size;
    if (n <= 0 || 8 + n > size || n > 100_000_000)
      throw new DataError(`invalid header length ${n} (file has ${size} bytes)`, { file: path, field: "header" });
    const buf = Buffer.alloc(n);
    await fh.read(buf, 0, n, 8);
    let header: { __metadata__?: Record<string, string> };
    try {
      header = JSON.parse(buf.toString("utf8")) as { __metadata__?: Record<string, string> };
    } catch (err) {
      throw new DataError(`header is not valid JSON: ${(err as Error).message}`, { file: path, field: "header" });
    }
    return header.__metadata__ ?? {};
  } finally {
    await fh.close();
  }
}
