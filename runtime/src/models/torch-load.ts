/**
 * Reader for PyTorch's zip serialisation (`torch.save` since 1.6), for importing upstream checkpoints (nnssl's
 * `checkpoint_*.pth`, bare state dicts). It never executes anything: the pickle is interpreted by a small stack
 * machine that knows the opcodes of protocols 2–5 and builds plain values; `torch._utils._rebuild_tensor_v2` /
 * `_rebuild_parameter` and `collections.OrderedDict` are understood, every other global becomes an inert
 * `PyObject` (class path, constructor arguments, state) that callers may inspect or ignore.
 *
 * Tensors are returned as `TorchTensorRef`s (dtype, shape, stride, offset into a storage record) and read on demand
 * with `readFloat32` (float32/float64/float16/bfloat16 and integer storages converted to float32, any strides).
 * Errors are `DataError`s naming the file and, where it applies, the archive entry.
 */
import { inflateRawSync } from "node:zlib";
import { DataError } from "../errors.js";

export type TorchDtype = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

const STORAGE_DTYPES: Record<string, TorchDtype> = {
  FloatStorage: "float32", DoubleStorage: "float64", HalfStorage: "float16", BFloat16Storage: "bfloat16",
  LongStorage: "int64", IntStorage: "int32", ShortStorage: "int16", CharStorage: "int8", ByteStorage: "uint8", BoolStorage: "bool",
};
const DTYPE_BYTES: Record<TorchDtype, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };

/** A global the pickle referenced (`module.name`), unresolved. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get path(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An object of a class we do not interpret: what its pickle said, never executed. */
export class PyObject {
  state: unknown = undefined;
  constructor(readonly cls: PyGlobal, readonly args: readonly unknown[]) {}
}

export class TorchStorageRef {
  constructor(readonly key: string, readonly dtype: TorchDtype, readonly numel: number) {}
}

export class TorchTensorRef {
  constructor(readonly storage: TorchStorageRef, readonly offset: number, readonly shape: readonly number[], readonly stride: readonly number[]) {}
  get dtype(): TorchDtype {
    return this.storage.dtype;
  }
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

/** A pickled dict; keys are kept as given (strings, numbers, tuples as arrays). Insertion order is preserved. */
export type PyDict = Map<unknown, unknown>;

interface ZipEntry { name: string; method: number; compressedSize: number; size: number; localOffset: number }

function readZipDirectory(buf: Buffer, file: string): Map<string, ZipEntry> {
  // End of central directory: last 22..65557 bytes
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new DataError("not a zip archive (no end-of-central-directory record): torch.save files since PyTorch 1.6 are zip archives; older formats are not supported", { file });
  let count = buf.readUInt16LE(eocd + 10);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20;
    if (loc < 0 || buf.readUInt32LE(loc) !== 0x07064b50) throw new DataError("zip64 archive without zip64 locator", { file });
    const z64 = Number(buf.readBigUInt64LE(loc + 8));
    if (buf.readUInt32LE(z64) !== 0x06064b50) throw new DataError("zip64 end-of-central-directory record not found", { file });
    count = Number(buf.readBigUInt64LE(z64 + 32));
    cdOffset = Number(buf.readBigUInt64LE(z64 + 48));
  }
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) throw new DataError(`corrupt zip central directory (entry ${i})`, { file });
    const method = buf.readUInt16LE(p + 10);
    let compressedSize = buf.readUInt32LE(p + 20);
    let size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    let localOffset = buf.readUInt32LE(p + 42);
    const name = buf.toString("utf8", p + 46, p + 46 + nameLen);
    // zip64 extended information extra field (id 1): the 0xffffffff fields, in order
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = buf.readUInt16LE(e);
      const len = buf.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        if (size === 0xffffffff) { size = Number(buf.readBigUInt64LE(q)); q += 8; }
        if (compressedSize === 0xffffffff) { compressedSize = Number(buf.readBigUInt64LE(q)); q += 8; }
        if (localOffset === 0xffffffff) { localOffset = Number(buf.readBigUInt64LE(q)); }
      }
      e += 4 + len;
    }
    entries.set(name, { name, method, compressedSize, size, localOffset });
    p = eEnd + commentLen;
  }
  return entries;
}

function zipEntryData(buf: Buffer, e: ZipEntry, file: string): Buffer {
  const h = e.localOffset;
  if (h + 30 > buf.length || buf.readUInt32LE(h) !== 0x04034b50) throw new DataError("corrupt zip local header", { file, field: e.name });
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  if (start + e.compressedSize > buf.length) throw new DataError("zip entry extends past the end of the file (truncated?)", { file, field: e.name });
  const raw = buf.subarray(start, start + e.compressedSize);
  if (e.method === 0) return raw;
  if (e.method === 8) return inflateRawSync(raw);
  throw new DataError(`unsupported zip compression method ${e.method}`, { file, field: e.name });
}

class Unpickler {
  private readonly stack: unknown[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, unknown>();
  private p = 0;

  constructor(private readonly data: Buffer, private readonly file: string, private readonly entry: string, private readonly persistent: (pid: unknown) => unknown) {}

  private fail(msg: string): never {
    throw new DataError(`pickle: ${msg} (at byte ${this.p})`, { file: this.file, field: this.entry });
  }

  private need(n: number): void {
    if (this.p + n > this.data.length) this.fail("truncated");
  }

  private u8(): number { this.need(1); return this.data[this.p++]!; }
  private u16(): number { this.need(2); const v = this.data.readUInt16LE(this.p); this.p += 2; return v; }
  private i32(): number { this.need(4); const v = this.data.readInt32LE(this.p); this.p += 4; return v; }
  private u32(): number { this.need(4); const v = this.data.readUInt32LE(this.p); this.p += 4; return v; }
  private u64(): number { this.need(8); const v = Number(this.data.readBigUInt64LE(this.p)); this.p += 8; return v; }
  private bytes(n: number): Buffer { this.need(n); const b = this.data.subarray(this.p, this.p + n); this.p += n; return b; }
  private line(): string {
    const end = this.data.indexOf(0x0a, this.p);
    if (end < 0) this.fail("unterminated text line");
    const s = this.data.toString("latin1", this.p, end);
    this.p = end + 1;
    return s;
  }
  private pop(): unknown {
    if (this.stack.length === 0) this.fail("stack underflow");
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) this.fail("stack underflow");
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail("no mark");
    const items = this.stack.splice(m);
    return items;
  }

  private callGlobal(g: unknown, args: unknown[]): unknown {
    if (!(g instanceof PyGlobal)) return new PyObject(new PyGlobal("?", "?"), args);
    switch (g.path) {
      case "collections.OrderedDict":
      case "builtins.dict":
      case "__builtin__.dict":
        return new Map(Array.isArray(args[0]) ? (args[0] as unknown[][]).map((kv) => [kv[0], kv[1]] as [unknown, unknown]) : []);
      case "builtins.set":
      case "__builtin__.set":
      case "builtins.frozenset":
        return new Set(Array.isArray(args[0]) ? (args[0] as unknown[]) : []);
      case "builtins.list":
        return Array.isArray(args[0]) ? [...(args[0] as unknown[])] : [];
      case "_codecs.encode":
        return Buffer.from(String(args[0]), "latin1");
      case "torch._utils._rebuild_tensor_v2":
      case "torch._utils._rebuild_tensor": {
        const [storage, offset, size, stride] = args as [unknown, number, unknown, unknown];
        if (!(storage instanceof TorchStorageRef)) this.fail(`${g.path}: first argument is not a storage`);
        const shape = Array.isArray(size) ? (size as number[]) : [];
        const strides = Array.isArray(stride) ? (stride as number[]) : contiguousStrides(shape);
        return new TorchTensorRef(storage, offset, shape, strides);
      }
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        return args[0];
      case "torch._tensor._rebuild_from_type_v2": {
        const [fn, , inner] = args as [unknown, unknown, unknown[]];
        return this.callGlobal(fn, Array.isArray(inner) ? inner : []);
      }
      default:
        return new PyObject(g, args);
    }
  }

  run(): unknown {
    for (;;) {
      const op = this.u8();
      switch (op) {
        case 0x80: this.u8(); break; // PROTO
        case 0x95: this.u64(); break; // FRAME
        case 0x2e: return this.pop(); // STOP
        case 0x28: this.marks.push(this.stack.length); break; // MARK
        case 0x7d: this.stack.push(new Map()); break; // EMPTY_DICT
        case 0x5d: this.stack.push([]); break; // EMPTY_LIST
        case 0x29: this.stack.push([]); break; // EMPTY_TUPLE
        case 0x8f: this.stack.push(new Set()); break; // EMPTY_SET
        case 0x74: this.stack.push(this.popMark()); break; // TUPLE
        case 0x85: this.stack.push([this.pop()]); break; // TUPLE1
        case 0x86: { const b = this.pop(); const a = this.pop(); this.stack.push([a, b]); break; } // TUPLE2
        case 0x87: { const c = this.pop(); const b = this.pop(); const a = this.pop(); this.stack.push([a, b, c]); break; } // TUPLE3
        case 0x6c: this.stack.push(this.popMark()); break; // LIST
        case 0x64: { // DICT
          const items = this.popMark();
          const d = new Map<unknown, unknown>();
          for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
          this.stack.push(d);
          break;
        }
        case 0x91: this.stack.push(new Set(this.popMark())); break; // FROZENSET
        case 0x90: { const items = this.popMark(); const s = this.top(); if (s instanceof Set) for (const i of items) s.add(i); break; } // ADDITEMS
        case 0x73: { const v = this.pop(); const k = this.pop(); this.setItem(this.top(), k, v); break; } // SETITEM
        case 0x75: { // SETITEMS
          const items = this.popMark();
          const d = this.top();
          for (let i = 0; i + 1 < items.length; i += 2) this.setItem(d, items[i], items[i + 1]);
          break;
        }
        case 0x61: { const v = this.pop(); const l = this.top(); if (Array.isArray(l)) l.push(v); else this.fail("APPEND to a non-list"); break; } // APPEND
        case 0x65: { const items = this.popMark(); const l = this.top(); if (Array.isArray(l)) l.push(...items); else this.fail("APPENDS to a non-list"); break; } // APPENDS
        case 0x71: this.memo.set(this.u8(), this.top()); break; // BINPUT
        case 0x72: this.memo.set(this.u32(), this.top()); break; // LONG_BINPUT
        case 0x70: this.memo.set(Number(this.line()), this.top()); break; // PUT
        case 0x94: this.memo.set(this.memo.size, this.top()); break; // MEMOIZE
        case 0x68: this.stack.push(this.memoGet(this.u8())); break; // BINGET
        case 0x6a: this.stack.push(this.memoGet(this.u32())); break; // LONG_BINGET
        case 0x67: this.stack.push(this.memoGet(Number(this.line()))); break; // GET
        case 0x4a: this.stack.push(this.i32()); break; // BININT
        case 0x4b: this.stack.push(this.u8()); break; // BININT1
        case 0x4d: this.stack.push(this.u16()); break; // BININT2
        case 0x8a: { // LONG1
          const n = this.u8();
          const b = this.bytes(n);
          let v = 0n;
          for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
          if (n > 0 && (b[n - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * n);
          this.stack.push(Number(v));
          break;
        }
        case 0x49: { const s = this.line(); this.stack.push(s === "00" ? false : s === "01" ? true : Number(s)); break; } // INT
        case 0x4c: this.stack.push(Number(this.line().replace(/L$/, ""))); break; // LONG
        case 0x47: { this.need(8); this.stack.push(this.data.readDoubleBE(this.p)); this.p += 8; break; } // BINFLOAT
        case 0x46: this.stack.push(Number(this.line())); break; // FLOAT
        case 0x58: this.stack.push(this.bytes(this.u32()).toString("utf8")); break; // BINUNICODE
        case 0x8c: this.stack.push(this.bytes(this.u8()).toString("utf8")); break; // SHORT_BINUNICODE
        case 0x8d: this.stack.push(this.bytes(this.u64()).toString("utf8")); break; // BINUNICODE8
        case 0x56: this.stack.push(this.line()); break; // UNICODE (raw-unicode-escape; ASCII in practice)
        case 0x54: this.stack.push(this.bytes(this.i32()).toString("latin1")); break; // BINSTRING
        case 0x55: this.stack.push(this.bytes(this.u8()).toString("latin1")); break; // SHORT_BINSTRING
        case 0x42: this.stack.push(Buffer.from(this.bytes(this.u32()))); break; // BINBYTES
        case 0x43: this.stack.push(Buffer.from(this.bytes(this.u8()))); break; // SHORT_BINBYTES
        case 0x8e: this.stack.push(Buffer.from(this.bytes(this.u64()))); break; // BINBYTES8
        case 0x96: this.stack.push(Buffer.from(this.bytes(this.u64()))); break; // BYTEARRAY8
        case 0x4e: this.stack.push(null); break; // NONE
        case 0x88: this.stack.push(true); break; // NEWTRUE
        case 0x89: this.stack.push(false); break; // NEWFALSE
        case 0x63: { const module = this.line(); const name = this.line(); this.stack.push(new PyGlobal(module, name)); break; } // GLOBAL
        case 0x93: { const name = String(this.pop()); const module = String(this.pop()); this.stack.push(new PyGlobal(module, name)); break; } // STACK_GLOBAL
        case 0x52: { const args = this.pop(); const fn = this.pop(); this.stack.push(this.callGlobal(fn, Array.isArray(args) ? args : [])); break; } // REDUCE
        case 0x81: { const args = this.pop(); const cls = this.pop(); this.stack.push(this.callGlobal(cls, Array.isArray(args) ? args : [])); break; } // NEWOBJ
        case 0x92: { this.pop(); const args = this.pop(); const cls = this.pop(); this.stack.push(this.callGlobal(cls, Array.isArray(args) ? args : [])); break; } // NEWOBJ_EX
        case 0x62: { const state = this.pop(); const obj = this.top(); if (obj instanceof PyObject) obj.state = state; break; } // BUILD (state of plain containers, e.g. OrderedDict._metadata, is dropped)
        case 0x51: this.stack.push(this.persistent(this.pop())); break; // BINPERSID
        case 0x50: this.stack.push(this.persistent(this.line())); break; // PERSID
        case 0x30: this.pop(); break; // POP
        case 0x31: this.popMark(); break; // POP_MARK
        case 0x32: this.stack.push(this.top()); break; // DUP
        default: this.fail(`unsupported opcode 0x${op.toString(16)}`);
      }
    }
  }

  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) this.fail(`memo key ${i} not found`);
    return this.memo.get(i);
  }

  private setItem(d: unknown, k: unknown, v: unknown): void {
    if (d instanceof Map) d.set(k, v);
    else if (d instanceof PyObject) {
      // dict subclasses of unknown classes: keep the items as the state
      if (!(d.state instanceof Map)) d.state = new Map();
      (d.state as Map<unknown, unknown>).set(k, v);
    } else this.fail("SETITEM on a non-dict");
  }
}

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** An opened torch.save archive: the unpickled root object and lazy access to its storages. */
export class TorchArchive {
  private constructor(readonly file: string, readonly root: unknown, private readonly buf: Buffer, private readonly entries: Map<string, ZipEntry>, private readonly prefix: string) {}

  static open(buf: Buffer, file: string): TorchArchive {
    const entries = readZipDirectory(buf, file);
    const pkl = [...entries.keys()].find((n) => n === "data.pkl" || n.endsWith("/data.pkl"));
    if (pkl === undefined) throw new DataError("zip archive has no data.pkl: not a torch.save file", { file });
    const prefix = pkl.slice(0, pkl.length - "data.pkl".length);
    const byteorder = entries.get(`${prefix}byteorder`);
    if (byteorder !== undefined && zipEntryData(buf, byteorder, file).toString("latin1").trim() !== "little") {
      throw new DataError("big-endian torch archives are not supported", { file, field: `${prefix}byteorder` });
    }
    const persistent = (pid: unknown): unknown => {
      // ('storage', storage_type, key, location, numel)
      if (!Array.isArray(pid) || pid[0] !== "storage") throw new DataError(`unknown persistent id ${JSON.stringify(pid)}`, { file, field: pkl });
      const type = pid[1] as unknown;
      const typeName = type instanceof PyGlobal ? type.name : String(type);
      const dtype = STORAGE_DTYPES[typeName];
      if (dtype === undefined) throw new DataError(`unsupported storage type ${type instanceof PyGlobal ? type.path : typeName}`, { file, field: `${prefix}data/${String(pid[2])}` });
      return new TorchStorageRef(String(pid[2]), dtype, Number(pid[4]));
    };
    const root = new Unpickler(zipEntryData(buf, entries.get(pkl)!, file), file, pkl, persistent).run();
    return new TorchArchive(file, root, buf, entries, prefix);
  }

  /** The tensor's values as float32 (converted from its storage dtype, strides applied, C order). */
  readFloat32(t: TorchTensorRef, field = ""): Float32Array {
    const name = `${this.prefix}data/${t.storage.key}`;
    const e = this.entries.get(name);
    if (e === undefined) throw new DataError(`storage record ${name} missing from the archive`, { file: this.file, field: field || name });
    const raw = zipEntryData(this.buf, e, this.file);
    const bytes = DTYPE_BYTES[t.dtype];
    const numel = Math.floor(raw.length / bytes);
    const out = new Float32Array(t.size);
    const shape = t.shape;
    const stride = t.stride;
    let maxIndex = t.offset;
    for (let d = 0; d < shape.length; d++) if (shape[d]! > 0) maxIndex += (shape[d]! - 1) * stride[d]!;
    if (t.size > 0 && maxIndex >= numel) throw new DataError(`tensor view exceeds its storage (${maxIndex + 1} > ${numel} elements)`, { file: this.file, field: field || name });
    const read = elementReader(raw, t.dtype);
    const contiguous = stride.every((s, d) => s === contiguousStrides(shape)[d]);
    if (contiguous) {
      for (let i = 0; i < out.length; i++) out[i] = read(t.offset + i);
      return out;
    }
    const idx = new Array<number>(shape.length).fill(0);
    for (let i = 0; i < out.length; i++) {
      let src = t.offset;
      for (let d = 0; d < shape.length; d++) src += idx[d]! * stride[d]!;
      out[i] = read(src);
      for (let d = shape.length - 1; d >= 0; d--) {
        if (++idx[d]! < shape[d]!) break;
        idx[d] = 0;
      }
    }
    return out;
  }
}

function elementReader(raw: Buffer, dtype: TorchDtype): (i: number) => number {
  switch (dtype) {
    case "float32": return (i) => raw.readFloatLE(4 * i);
    case "float64": return (i) => raw.readDoubleLE(8 * i);
    case "float16": return (i) => halfToFloat(raw.readUInt16LE(2 * i));
    case "bfloat16": {
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      return (i) => {
        u[0] = raw.readUInt16LE(2 * i) << 16;
        return f[0]!;
      };
    }
    case "int64": return (i) => Number(raw.readBigInt64LE(8 * i));
    case "int32": return (i) => raw.readInt32LE(4 * i);
    case "int16": return (i) => raw.readInt16LE(2 * i);
    case "int8": return (i) => raw.readInt8(i);
    case "uint8":
    case "bool": return (i) => raw[i]!;
  }
}

function halfToFloat(h: number): number {
  const s = (h & 0x8000) !== 0 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Plain JSON-like view of an unpickled value (Maps → objects, tensors → descriptions), for adaptation plans etc. */
export function toPlain(v: unknown): unknown {
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v) o[String(k)] = toPlain(x);
    return o;
  }
  if (Array.isArray(v)) return v.map(toPlain);
  if (v instanceof Set) return [...v].map(toPlain);
  if (v instanceof TorchTensorRef) return { tensor: v.dtype, shape: v.shape };
  if (v instanceof PyObject) return { object: v.cls.path, args: v.args.map(toPlain), state: toPlain(v.state) };
  if (v instanceof PyGlobal) return { global: v.path };
  if (Buffer.isBuffer(v)) return { bytes: v.length };
  return v;
}
