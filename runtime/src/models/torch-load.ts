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
 *
 * Hostile archives are bounded (docs/limits-and-safety.md): everything the reader allocates (inflated records,
 * decoded tensors) is charged to one byte budget (`SSL3D_CHECKPOINT_MAX_BYTES`) before it is allocated; a storage
 * record must have exactly the size its persistent id declares; a record inflates to at most its declared size and
 * is inflated once however many tensors share it; a tensor view must lie inside its storage and address no more
 * elements than the storage holds (no stride-0 broadcast views); traversals of the unpickled value (`toPlain`,
 * `pyRepr`) count every node they visit, memo references included, so a "billion laughs" pickle of shared
 * references fails after `SSL3D_PICKLE_MAX_NODES` nodes instead of expanding.
 */
import { inflateRawSync } from "node:zlib";
import { formatBytes, limit } from "../config/limits.js";
import { DataError, Ssl3dError } from "../errors.js";

export type TorchDtype =
  "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

const STORAGE_DTYPES: Record<string, TorchDtype> = {
  FloatStorage: "float32",
  DoubleStorage: "float64",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};
const DTYPE_BYTES: Record<TorchDtype, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** A global the pickle referenced (`module.name`), unresolved. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get path(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An object of a class we do not interpret: what its pickle said, never executed. */
export class PyObject {
  state: unknown = undefined;
  constructor(
    readonly cls: PyGlobal,
    readonly args: readonly unknown[],
  ) {}
}

export class TorchStorageRef {
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly numel: number,
  ) {}
}

export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
  get dtype(): TorchDtype {
    return this.storage.dtype;
  }
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

/** A pickled dict; keys are kept as given (strings, numbers, tuples as arrays). Insertion order is preserved. */
export type PyDict = Map<unknown, unknown>;

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function readZipDirectory(buf: Buffer, file: string): Map<string, ZipEntry> {
  // End of central directory: last 22..65557 bytes
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0)
    throw new DataError(
      "not a zip archive (no end-of-central-directory record): torch.save files since PyTorch 1.6 are zip archives; older formats are not supported",
      { file },
    );
  let count = buf.readUInt16LE(eocd + 10);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20;
    if (loc < 0 || buf.readUInt32LE(loc) !== 0x07064b50)
      throw new DataError("zip64 archive without zip64 locator", { file });
    const z64 = Number(buf.readBigUInt64LE(loc + 8));
    if (z64 + 56 > buf.length || buf.readUInt32LE(z64) !== 0x06064b50)
      throw new DataError("zip64 end-of-central-directory record not found", { file });
    count = Number(buf.readBigUInt64LE(z64 + 32));
    cdOffset = Number(buf.readBigUInt64LE(z64 + 48));
  }
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50)
      throw new DataError(`corrupt zip central directory (entry ${i})`, { file });
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
        if (size === 0xffffffff) {
          size = Number(buf.readBigUInt64LE(q));
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = Number(buf.readBigUInt64LE(q));
          q += 8;
        }
        if (localOffset === 0xffffffff) {
          localOffset = Number(buf.readBigUInt64LE(q));
        }
      }
      e += 4 + len;
    }
    if (localOffset + 30 > buf.length || localOffset + compressedSize > buf.length)
      throw new DataError(
        `zip entry lies beyond the end of the file (offset ${localOffset}, ${compressedSize} bytes; file has ${buf.length})`,
        { file, field: name },
      );
    entries.set(name, { name, method, compressedSize, size, localOffset });
    p = eEnd + commentLen;
  }
  return entries;
}

/** What the reader may still allocate; `take` fails before an allocation that would exceed it. */
export class ByteBudget {
  private used = 0;
  constructor(
    readonly max: number,
    private readonly file: string,
  ) {}

  take(bytes: number, what: string, field?: string): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || this.used + bytes > this.max) {
      throw new DataError(
        `${what} needs ${formatBytes(bytes)}, beyond the checkpoint reader's limit of ${formatBytes(this.max)} (${formatBytes(this.used)} already used; raise SSL3D_CHECKPOINT_MAX_BYTES if the file is trusted)`,
        { file: this.file, field },
      );
    }
    this.used += bytes;
  }
}

function zipEntryData(buf: Buffer, e: ZipEntry, file: string, budget: ByteBudget): Buffer {
  const h = e.localOffset;
  if (h + 30 > buf.length || buf.readUInt32LE(h) !== 0x04034b50)
    throw new DataError("corrupt zip local header", { file, field: e.name });
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  if (start + e.compressedSize > buf.length)
    throw new DataError("zip entry extends past the end of the file (truncated?)", { file, field: e.name });
  const raw = buf.subarray(start, start + e.compressedSize);
  if (e.method === 0) {
    if (e.size !== e.compressedSize)
      throw new DataError(`stored zip entry declares ${e.size} bytes but holds ${e.compressedSize}`, {
        file,
        field: e.name,
      });
    return raw;
  }
  if (e.method !== 8) throw new DataError(`unsupported zip compression method ${e.method}`, { file, field: e.name });
  // the declared size is charged before inflating, and inflating stops one byte past it
  budget.take(e.size, `inflating ${e.name}`, e.name);
  let out: Buffer;
  try {
    out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size + 1) });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ERR_BUFFER_TOO_LARGE")
      throw new DataError(`deflated entry inflates to more than the ${e.size} bytes it declares (zip bomb?)`, {
        file,
        field: e.name,
      });
    throw new DataError(`corrupt deflate data (${(err as Error).message})`, { file, field: e.name });
  }
  if (out.length !== e.size)
    throw new DataError(`deflated entry inflates to ${out.length} bytes, it declares ${e.size}`, {
      file,
      field: e.name,
    });
  return out;
}

class Unpickler {
  private readonly stack: unknown[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, unknown>();
  private p = 0;

  constructor(
    private readonly data: Buffer,
    private readonly file: string,
    private readonly entry: string,
    private readonly persistent: (pid: unknown) => unknown,
  ) {}

  private fail(msg: string): never {
    throw new DataError(`pickle: ${msg} (at byte ${this.p})`, { file: this.file, field: this.entry });
  }

  private need(n: number): void {
    if (this.p + n > this.data.length) this.fail("truncated");
  }

  private u8(): number {
    this.need(1);
    return this.data[this.p++]!;
  }
  private u16(): number {
    this.need(2);
    const v = this.data.readUInt16LE(this.p);
    this.p += 2;
    return v;
  }
  private i32(): number {
    this.need(4);
    const v = this.data.readInt32LE(this.p);
    this.p += 4;
    return v;
  }
  private u32(): number {
    this.need(4);
    const v = this.data.readUInt32LE(this.p);
    this.p += 4;
    return v;
  }
  private u64(): number {
    this.need(8);
    const v = Number(this.data.readBigUInt64LE(this.p));
    this.p += 8;
    return v;
  }
  private bytes(n: number): Buffer {
    // a negative length (BINSTRING's is signed) would move the reader backwards: an endless loop
    if (!Number.isSafeInteger(n) || n < 0) this.fail(`invalid length ${n}`);
    this.need(n);
    const b = this.data.subarray(this.p, this.p + n);
    this.p += n;
    return b;
  }
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
        return new Map(
          Array.isArray(args[0]) ? (args[0] as unknown[][]).map((kv) => [kv[0], kv[1]] as [unknown, unknown]) : [],
        );
      case "builtins.set":
      case "__builtin__.set":
      case "builtins.frozenset":
        return new Set(Array.isArray(args[0]) ? (args[0] as unknown[]) : []);
      case "builtins.list":
        return Array.isArray(args[0]) ? [...(args[0] as unknown[])] : [];
      case "_codecs.encode":
        if (typeof args[0] !== "string") this.fail("_codecs.encode needs a string");
        return Buffer.from(args[0], "latin1");
      case "torch._utils._rebuild_tensor_v2":
      case "torch._utils._rebuild_tensor": {
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof TorchStorageRef)) this.fail(`${g.path}: first argument is not a storage`);
        const shape = Array.isArray(size) ? size : [];
        const strides = Array.isArray(stride) ? stride : contiguousStrides(shape as number[]);
        // views are checked (against their storage) before any read: readFloat32 → checkView
        return new TorchTensorRef(storage, offset as number, shape as number[], strides as number[]);
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
      if (op === 0x2e) return this.pop(); // STOP
      const handled =
        this.frameOp(op) ||
        this.containerOp(op) ||
        this.memoOp(op) ||
        this.scalarOp(op) ||
        this.textOp(op) ||
        this.objectOp(op);
      if (!handled) this.fail(`unsupported opcode 0x${op.toString(16)}`);
    }
  }

  /** Framing and stack bookkeeping: PROTO, FRAME, MARK, POP, POP_MARK, DUP. */
  private frameOp(op: number): boolean {
    switch (op) {
      case 0x80:
        this.u8();
        return true; // PROTO
      case 0x95:
        this.u64();
        return true; // FRAME
      case 0x28:
        this.marks.push(this.stack.length);
        return true; // MARK
      case 0x30:
        this.pop();
        return true; // POP
      case 0x31:
        this.popMark();
        return true; // POP_MARK
      case 0x32:
        this.stack.push(this.top());
        return true; // DUP
      default:
        return false;
    }
  }

  /** Lists, tuples, dicts and sets. */
  private containerOp(op: number): boolean {
    switch (op) {
      case 0x7d:
        this.stack.push(new Map());
        return true; // EMPTY_DICT
      case 0x5d:
        this.stack.push([]);
        return true; // EMPTY_LIST
      case 0x29:
        this.stack.push([]);
        return true; // EMPTY_TUPLE
      case 0x8f:
        this.stack.push(new Set());
        return true; // EMPTY_SET
      case 0x74:
        this.stack.push(this.popMark());
        return true; // TUPLE
      case 0x85:
        this.stack.push([this.pop()]);
        return true; // TUPLE1
      case 0x86: {
        const b = this.pop();
        const a = this.pop();
        this.stack.push([a, b]);
        return true;
      } // TUPLE2
      case 0x87: {
        const c = this.pop();
        const b = this.pop();
        const a = this.pop();
        this.stack.push([a, b, c]);
        return true;
      } // TUPLE3
      case 0x6c:
        this.stack.push(this.popMark());
        return true; // LIST
      case 0x64: {
        // DICT
        const items = this.popMark();
        const d = new Map<unknown, unknown>();
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
        this.stack.push(d);
        return true;
      }
      case 0x91:
        this.stack.push(new Set(this.popMark()));
        return true; // FROZENSET
      case 0x90: {
        const items = this.popMark();
        const s = this.top();
        if (s instanceof Set) for (const i of items) s.add(i);
        return true;
      } // ADDITEMS
      case 0x73: {
        const v = this.pop();
        const k = this.pop();
        this.setItem(this.top(), k, v);
        return true;
      } // SETITEM
      case 0x75: {
        // SETITEMS
        const items = this.popMark();
        const d = this.top();
        for (let i = 0; i + 1 < items.length; i += 2) this.setItem(d, items[i], items[i + 1]);
        return true;
      }
      case 0x61: {
        const v = this.pop();
        const l = this.top();
        if (Array.isArray(l)) l.push(v);
        else this.fail("APPEND to a non-list");
        return true;
      } // APPEND
      case 0x65: {
        const items = this.popMark();
        const l = this.top();
        if (Array.isArray(l)) for (const i of items) l.push(i);
        else this.fail("APPENDS to a non-list");
        return true;
      } // APPENDS
      default:
        return false;
    }
  }

  /** The memo: PUT/BINPUT/LONG_BINPUT/MEMOIZE and GET/BINGET/LONG_BINGET. */
  private memoOp(op: number): boolean {
    switch (op) {
      case 0x71:
        this.memo.set(this.u8(), this.top());
        return true; // BINPUT
      case 0x72:
        this.memo.set(this.u32(), this.top());
        return true; // LONG_BINPUT
      case 0x70:
        this.memo.set(Number(this.line()), this.top());
        return true; // PUT
      case 0x94:
        this.memo.set(this.memo.size, this.top());
        return true; // MEMOIZE
      case 0x68:
        this.stack.push(this.memoGet(this.u8()));
        return true; // BINGET
      case 0x6a:
        this.stack.push(this.memoGet(this.u32()));
        return true; // LONG_BINGET
      case 0x67:
        this.stack.push(this.memoGet(Number(this.line())));
        return true; // GET
      default:
        return false;
    }
  }

  /** Numbers, booleans and None. */
  private scalarOp(op: number): boolean {
    switch (op) {
      case 0x4a:
        this.stack.push(this.i32());
        return true; // BININT
      case 0x4b:
        this.stack.push(this.u8());
        return true; // BININT1
      case 0x4d:
        this.stack.push(this.u16());
        return true; // BININT2
      case 0x8a: {
        // LONG1
        const n = this.u8();
        const b = this.bytes(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (n > 0 && (b[n - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * n);
        this.stack.push(Number(v));
        return true;
      }
      case 0x49: {
        const s = this.line();
        this.stack.push(s === "00" ? false : s === "01" ? true : Number(s));
        return true;
      } // INT
      case 0x4c:
        this.stack.push(Number(this.line().replace(/L$/, "")));
        return true; // LONG
      case 0x47: {
        this.need(8);
        this.stack.push(this.data.readDoubleBE(this.p));
        this.p += 8;
        return true;
      } // BINFLOAT
      case 0x46:
        this.stack.push(Number(this.line()));
        return true; // FLOAT
      case 0x4e:
        this.stack.push(null);
        return true; // NONE
      case 0x88:
        this.stack.push(true);
        return true; // NEWTRUE
      case 0x89:
        this.stack.push(false);
        return true; // NEWFALSE
      default:
        return false;
    }
  }

  /** Strings and bytes. */
  private textOp(op: number): boolean {
    switch (op) {
      case 0x58:
        this.stack.push(this.bytes(this.u32()).toString("utf8"));
        return true; // BINUNICODE
      case 0x8c:
        this.stack.push(this.bytes(this.u8()).toString("utf8"));
        return true; // SHORT_BINUNICODE
      case 0x8d:
        this.stack.push(this.bytes(this.u64()).toString("utf8"));
        return true; // BINUNICODE8
      case 0x56:
        this.stack.push(this.line());
        return true; // UNICODE (raw-unicode-escape; ASCII in practice)
      case 0x54:
        this.stack.push(this.bytes(this.i32()).toString("latin1"));
        return true; // BINSTRING
      case 0x55:
        this.stack.push(this.bytes(this.u8()).toString("latin1"));
        return true; // SHORT_BINSTRING
      case 0x42:
        this.stack.push(Buffer.from(this.bytes(this.u32())));
        return true; // BINBYTES
      case 0x43:
        this.stack.push(Buffer.from(this.bytes(this.u8())));
        return true; // SHORT_BINBYTES
      case 0x8e:
        this.stack.push(Buffer.from(this.bytes(this.u64())));
        return true; // BINBYTES8
      case 0x96:
        this.stack.push(Buffer.from(this.bytes(this.u64())));
        return true; // BYTEARRAY8
      default:
        return false;
    }
  }

  /** Globals, calls (REDUCE, NEWOBJ), BUILD and persistent ids (the tensors' storages). */
  private objectOp(op: number): boolean {
    switch (op) {
      case 0x63: {
        const module = this.line();
        const name = this.line();
        this.stack.push(new PyGlobal(module, name));
        return true;
      } // GLOBAL
      case 0x93: {
        const name = this.pop();
        const module = this.pop();
        if (typeof name !== "string" || typeof module !== "string") this.fail("STACK_GLOBAL needs two strings");
        this.stack.push(new PyGlobal(module, name));
        return true;
      } // STACK_GLOBAL
      case 0x52: {
        const args = this.pop();
        const fn = this.pop();
        this.stack.push(this.callGlobal(fn, Array.isArray(args) ? args : []));
        return true;
      } // REDUCE
      case 0x81: {
        const args = this.pop();
        const cls = this.pop();
        this.stack.push(this.callGlobal(cls, Array.isArray(args) ? args : []));
        return true;
      } // NEWOBJ
      case 0x92: {
        this.pop();
        const args = this.pop();
        const cls = this.pop();
        this.stack.push(this.callGlobal(cls, Array.isArray(args) ? args : []));
        return true;
      } // NEWOBJ_EX
      case 0x62: {
        const state = this.pop();
        const obj = this.top();
        if (obj instanceof PyObject) obj.state = state;
        return true;
      } // BUILD (state of plain containers, e.g. OrderedDict._metadata, is dropped)
      case 0x51:
        this.stack.push(this.persistent(this.pop()));
        return true; // BINPERSID
      case 0x50:
        this.stack.push(this.persistent(this.line()));
        return true; // PERSID
      default:
        return false;
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

export interface TorchReadOptions {
  /** Bytes the reader may allocate in all (default: `limit("checkpointBytes")`). */
  readonly maxBytes?: number;
}

/** An opened torch.save archive: the unpickled root object and lazy access to its storages. */
export class TorchArchive {
  /** Inflated storage records by name: shared storage is inflated once. */
  private readonly records = new Map<string, Buffer>();
  /** Decoded views by (storage, offset, shape, stride): aliases of one tensor share one Float32Array. */
  private readonly decoded = new Map<string, Float32Array>();

  private constructor(
    readonly file: string,
    readonly root: unknown,
    private readonly buf: Buffer,
    private readonly entries: Map<string, ZipEntry>,
    private readonly prefix: string,
    private readonly budget: ByteBudget,
  ) {}

  static open(buf: Buffer, file: string, opts: TorchReadOptions = {}): TorchArchive {
    const budget = new ByteBudget(opts.maxBytes ?? limit("checkpointBytes"), file);
    try {
      return TorchArchive.parse(buf, file, budget);
    } catch (err) {
      if (err instanceof Ssl3dError) throw err;
      // a read outside the buffer (Node's ERR_OUT_OF_RANGE) from offsets the checks above did not cover
      throw new DataError(`corrupt torch archive (${(err as Error).message})`, { file, cause: err });
    }
  }

  private static parse(buf: Buffer, file: string, budget: ByteBudget): TorchArchive {
    const entries = readZipDirectory(buf, file);
    const pkl = [...entries.keys()].find((n) => n === "data.pkl" || n.endsWith("/data.pkl"));
    if (pkl === undefined) throw new DataError("zip archive has no data.pkl: not a torch.save file", { file });
    const prefix = pkl.slice(0, pkl.length - "data.pkl".length);
    const byteorder = entries.get(`${prefix}byteorder`);
    if (byteorder !== undefined && zipEntryData(buf, byteorder, file, budget).toString("latin1").trim() !== "little") {
      throw new DataError("big-endian torch archives are not supported", { file, field: `${prefix}byteorder` });
    }
    const persistent = (pid: unknown): unknown => {
      // ('storage', storage_type, key, location, numel)
      if (!Array.isArray(pid) || pid[0] !== "storage")
        throw new DataError(`unknown persistent id ${pyRepr(pid)}`, { file, field: pkl });
      const [, type, key, , numel] = pid as unknown[];
      const typeName = type instanceof PyGlobal ? type.name : typeof type === "string" ? type : pyRepr(type);
      if (typeof key !== "string")
        throw new DataError(`storage key must be a string, got ${pyRepr(key)}`, { file, field: pkl });
      const record = `${prefix}data/${key}`;
      const dtype = STORAGE_DTYPES[typeName];
      if (dtype === undefined)
        throw new DataError(`unsupported storage type ${type instanceof PyGlobal ? type.path : typeName}`, {
          file,
          field: record,
        });
      if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0)
        throw new DataError(`storage size ${pyRepr(numel)} is not a non-negative integer`, { file, field: record });
      const e = entries.get(record);
      if (e === undefined && numel > 0)
        throw new DataError("storage record missing from the archive", { file, field: record });
      // the declared element count must match the record's real size (torch writes exactly numel × element bytes)
      if (e !== undefined && e.size !== numel * DTYPE_BYTES[dtype])
        throw new DataError(
          `storage declares ${numel} ${dtype} elements (${numel * DTYPE_BYTES[dtype]} bytes) but the record holds ${e.size} bytes`,
          { file, field: record },
        );
      return new TorchStorageRef(key, dtype, numel);
    };
    const root = new Unpickler(zipEntryData(buf, entries.get(pkl)!, file, budget), file, pkl, persistent).run();
    return new TorchArchive(file, root, buf, entries, prefix, budget);
  }

  private record(name: string, field: string): Buffer {
    const cached = this.records.get(name);
    if (cached !== undefined) return cached;
    const e = this.entries.get(name);
    if (e === undefined)
      throw new DataError(`storage record ${name} missing from the archive`, { file: this.file, field });
    const raw = zipEntryData(this.buf, e, this.file, this.budget);
    this.records.set(name, raw);
    return raw;
  }

  /** Shape, stride and offset are integers, the view lies inside its storage and is no larger than it. */
  private checkView(t: TorchTensorRef, field: string): void {
    const bad = (msg: string): never => {
      throw new DataError(`tensor view: ${msg}`, { file: this.file, field });
    };
    const ints = (v: readonly unknown[]): boolean =>
      v.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0);
    if (t.shape.length > 16) bad(`${t.shape.length} dimensions (at most 16)`);
    if (!ints(t.shape)) bad(`shape ${pyRepr(t.shape)} is not a list of non-negative integers`);
    if (t.stride.length !== t.shape.length || !ints(t.stride))
      bad(`stride ${pyRepr(t.stride)} does not match shape [${t.shape.join(",")}]`);
    if (typeof t.offset !== "number" || !Number.isSafeInteger(t.offset) || t.offset < 0)
      bad(`storage offset ${pyRepr(t.offset)} is not a non-negative integer`);
    let size = 1;
    for (const d of t.shape) size = Math.min(size * d, Number.MAX_SAFE_INTEGER);
    if (size === 0) return;
    const numel = t.storage.numel;
    if (size > numel)
      bad(`${size} elements over a storage of ${numel} (broadcast/stride-0 views are not supported in checkpoints)`);
    let maxIndex = t.offset;
    for (let d = 0; d < t.shape.length; d++) maxIndex += (t.shape[d]! - 1) * t.stride[d]!;
    if (maxIndex >= numel) bad(`exceeds its storage (${maxIndex + 1} > ${numel} elements)`);
  }

  /** The tensor's values as float32 (converted from its storage dtype, strides applied, C order). */
  readFloat32(t: TorchTensorRef, field = ""): Float32Array {
    const name = `${this.prefix}data/${t.storage.key}`;
    const where = field || name;
    this.checkView(t, where);
    const key = `${t.storage.key}|${t.offset}|${t.shape.join(",")}|${t.stride.join(",")}`;
    const cached = this.decoded.get(key);
    if (cached !== undefined) return cached;
    if (t.size === 0) return new Float32Array(0);
    const raw = this.record(name, where);
    this.budget.take(4 * t.size, `decoding ${where} (${t.size} elements)`, where);
    const out = new Float32Array(t.size);
    this.decoded.set(key, out);
    const shape = t.shape;
    const stride = t.stride;
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
    case "float32":
      return (i) => raw.readFloatLE(4 * i);
    case "float64":
      return (i) => raw.readDoubleLE(8 * i);
    case "float16":
      return (i) => halfToFloat(raw.readUInt16LE(2 * i));
    case "bfloat16": {
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      return (i) => {
        u[0] = raw.readUInt16LE(2 * i) << 16;
        return f[0]!;
      };
    }
    case "int64":
      return (i) => Number(raw.readBigInt64LE(8 * i));
    case "int32":
      return (i) => raw.readInt32LE(4 * i);
    case "int16":
      return (i) => raw.readInt16LE(2 * i);
    case "int8":
      return (i) => raw.readInt8(i);
    case "uint8":
    case "bool":
      return (i) => raw[i]!;
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

/** Counts the nodes a traversal visits and the depth it reaches; fails past the pickle limits. */
class Walk {
  private nodes = 0;
  private readonly path = new Set<unknown>();
  constructor(
    private readonly maxNodes = limit("pickleNodes"),
    private readonly maxDepth = limit("pickleDepth"),
  ) {}

  enter(v: unknown): void {
    if (++this.nodes > this.maxNodes)
      throw new DataError(
        `pickled value has more than ${this.maxNodes} nodes counting shared references (a "billion laughs" pickle?; limit SSL3D_PICKLE_MAX_NODES)`,
      );
    if (this.path.size >= this.maxDepth)
      throw new DataError(`pickled value nested deeper than ${this.maxDepth} levels (limit SSL3D_PICKLE_MAX_DEPTH)`);
    if (typeof v === "object" && v !== null) {
      if (this.path.has(v)) throw new DataError("pickled value contains itself (a reference cycle)");
      this.path.add(v);
    }
  }

  leave(v: unknown): void {
    this.path.delete(v);
  }
}

/**
 * Plain JSON-like view of an unpickled value (Maps → objects, tensors → descriptions), for adaptation plans etc.
 * Bounded: a DataError (without file; callers add it) past `SSL3D_PICKLE_MAX_NODES` visited nodes, past
 * `SSL3D_PICKLE_MAX_DEPTH` levels, or on a cycle.
 */
export function toPlain(v: unknown, walk = new Walk()): unknown {
  walk.enter(v);
  try {
    if (v instanceof Map) {
      const o: Record<string, unknown> = {};
      for (const [k, x] of v) {
        const key =
          typeof k === "string" || typeof k === "number" || typeof k === "boolean" || k === null
            ? String(k)
            : pyRepr(k, 200);
        // a "__proto__" key must stay data, never become the object's prototype
        Object.defineProperty(o, key, {
          value: toPlain(x, walk),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return o;
    }
    if (Array.isArray(v)) return v.map((x) => toPlain(x, walk));
    if (v instanceof Set) return [...v].map((x) => toPlain(x, walk));
    if (v instanceof TorchTensorRef)
      return { tensor: v.dtype, shape: [...v.shape].map((d) => (typeof d === "number" ? d : null)) };
    if (v instanceof PyObject)
      return { object: v.cls.path, args: v.args.map((x) => toPlain(x, walk)), state: toPlain(v.state, walk) };
    if (v instanceof PyGlobal) return { global: v.path };
    if (Buffer.isBuffer(v)) return { bytes: v.length };
    return v;
  } finally {
    walk.leave(v);
  }
}

/** A short description of an unpickled value for error messages: at most `max` characters, bounded work. */
export function pyRepr(v: unknown, max = 120): string {
  let out = "";
  let budget = 4 * max;
  const emit = (s: string): boolean => {
    out += s;
    return out.length < max && --budget > 0;
  };
  const walk = (x: unknown, depth: number): boolean => {
    if (depth > 8) return emit("…");
    if (typeof x === "string") return emit(JSON.stringify(x.length > max ? `${x.slice(0, max)}…` : x));
    if (typeof x === "number" || typeof x === "boolean" || x === null || x === undefined) return emit(String(x));
    if (Array.isArray(x) || x instanceof Set) {
      if (!emit("[")) return false;
      let i = 0;
      for (const y of x as Iterable<unknown>) {
        if ((i++ > 0 && !emit(", ")) || !walk(y, depth + 1)) return false;
      }
      return emit("]");
    }
    if (x instanceof Map) return emit(`{dict of ${x.size}}`);
    if (x instanceof PyGlobal) return emit(x.path);
    if (x instanceof PyObject) return emit(`<${x.cls.path}>`);
    if (x instanceof TorchTensorRef) return emit(`<tensor ${x.dtype}>`);
    if (Buffer.isBuffer(x)) return emit(`<${x.length} bytes>`);
    return emit(typeof x);
  };
  walk(v, 0);
  return out.length > max ? `${out.slice(0, max)}…` : out;
}
