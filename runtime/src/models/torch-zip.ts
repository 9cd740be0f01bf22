/**
 * Writer for PyTorch's zip serialisation (`torch.save` format since 1.6) restricted to what
 * `torch.load(weights_only=True)` accepts: dicts, lists, tuples, str/int/float/bool/None, OrderedDict state dicts
 * of float32 tensors (`torch._utils._rebuild_tensor_v2` over `torch.FloatStorage` records).
 * Layout: `archive/data.pkl` (pickle protocol 2), `archive/data/<key>` (raw little-endian storage bytes, 64-byte
 * aligned like torch's own writer), `archive/byteorder`, `archive/version` ("3").
 * Tensors that share a storage (upstream's aliases) are written once and referenced twice, as torch does.
 */

/** A float32 tensor stored in record `data/<storageKey>`. */
export class TorchTensor {
  constructor(
    readonly storageKey: string,
    readonly shape: readonly number[],
  ) {}
}

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

/** Insertion-ordered dict pickled as collections.OrderedDict (what state_dict() returns). */
export class PyOrderedDict {
  constructor(readonly entries: ReadonlyMap<string, PyValue>) {}
}

export class PyFloat {
  constructor(readonly value: number) {}
}

export type PyValue =
  | null
  | boolean
  | number
  | string
  | PyFloat
  | PyTuple
  | PyOrderedDict
  | TorchTensor
  | readonly PyValue[]
  | { readonly [k: string]: PyValue };

class PickleWriter {
  private readonly chunks: Buffer[] = [];

  byte(...b: number[]): void {
    this.chunks.push(Buffer.from(b));
  }

  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    const h = Buffer.alloc(5);
    h[0] = 0x58; // BINUNICODE
    h.writeUInt32LE(b.length, 1);
    this.chunks.push(h, b);
  }

  global(mod: string, name: string): void {
    this.chunks.push(Buffer.from(`c${mod}\n${name}\n`, "latin1"));
  }

  int(n: number): void {
    if (n >= 0 && n < 256)
      this.byte(0x4b, n); // BININT1
    else if (n >= -(2 ** 31) && n < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a; // BININT
      b.writeInt32LE(n, 1);
      this.chunks.push(b);
    } else {
      // LONG1: little-endian two's complement
      let v = BigInt(n);
      const bytes: number[] = [];
      for (;;) {
        const low = Number(v & 0xffn);
        bytes.push(low);
        v >>= 8n;
        if ((v === 0n && (low & 0x80) === 0) || (v === -1n && (low & 0x80) !== 0)) break;
      }
      this.byte(0x8a, bytes.length, ...bytes);
    }
  }

  float(x: number): void {
    const b = Buffer.alloc(9);
    b[0] = 0x47; // BINFLOAT (big-endian double)
    b.writeDoubleBE(x, 1);
    this.chunks.push(b);
  }

  tuple(items: readonly PyValue[]): void {
    this.byte(0x28); // MARK
    for (const i of items) this.value(i);
    this.byte(0x74); // TUPLE
  }

  value(v: PyValue): void {
    if (v === null) this.byte(0x4e);
    else if (v === true) this.byte(0x88);
    else if (v === false) this.byte(0x89);
    else if (typeof v === "number") {
      if (Number.isInteger(v)) this.int(v);
      else this.float(v);
    } else if (typeof v === "string") this.str(v);
    else if (v instanceof PyFloat) this.float(v.value);
    else if (v instanceof PyTuple) this.tuple(v.items);
    else if (v instanceof TorchTensor) this.tensor(v);
    else if (v instanceof PyOrderedDict) {
      this.global("collections", "OrderedDict");
      this.byte(0x29, 0x52); // EMPTY_TUPLE, REDUCE
      this.items(v.entries);
    } else if (Array.isArray(v)) {
      this.byte(0x5d); // EMPTY_LIST
      if (v.length > 0) {
        this.byte(0x28);
        for (const i of v as readonly PyValue[]) this.value(i);
        this.byte(0x65); // APPENDS
      }
    } else {
      this.byte(0x7d); // EMPTY_DICT
      this.items(new Map(Object.entries(v as Record<string, PyValue>)));
    }
  }

  private items(m: ReadonlyMap<string, PyValue>): void {
    if (m.size === 0) return;
    this.byte(0x28);
    for (const [k, val] of m) {
      this.str(k);
      this.value(val);
    }
    this.byte(0x75); // SETITEMS
  }

  private tensor(t: TorchTensor): void {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const stride: number[] = [];
    let acc = 1;
    for (let i = t.shape.length - 1; i >= 0; i--) {
      stride.unshift(acc);
      acc *= t.shape[i]!;
    }
    this.global("torch._utils", "_rebuild_tensor_v2");
    this.byte(0x28); // MARK (args tuple)
    // persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
    this.byte(0x28);
    this.str("storage");
    this.global("torch", "FloatStorage");
    this.str(t.storageKey);
    this.str("cpu");
    this.int(numel);
    this.byte(0x74, 0x51); // TUPLE, BINPERSID
    this.int(0); // storage offset
    this.tuple(t.shape);
    this.tuple(stride);
    this.byte(0x89); // requires_grad False
    this.global("collections", "OrderedDict");
    this.byte(0x29, 0x52); // OrderedDict()
    this.byte(0x74, 0x52); // TUPLE, REDUCE
  }

  finish(): Buffer {
    return Buffer.concat([Buffer.from([0x80, 0x02]), ...this.chunks, Buffer.from([0x2e])]);
  }
}

export function pickle(v: PyValue): Buffer {
  const w = new PickleWriter();
  w.value(v);
  return w.finish();
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Minimal stored (uncompressed) zip with data aligned to 64 bytes via an extra field, as torch writes it. */
export function zipStored(entries: readonly { name: string; data: Uint8Array }[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, "utf8");
    const crc = crc32(e.data);
    const headerLen = 30 + name.length;
    let pad = (64 - ((offset + headerLen + 4) % 64)) % 64;
    const extraLen = 4 + pad;
    const local = Buffer.alloc(headerLen + extraLen);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(0, 8);
    local.writeUInt32LE(0, 10);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(e.data.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extraLen, 28);
    name.copy(local, 30);
    local.writeUInt16LE(0x4246, 30 + name.length); // "FB" padding field, as torch's writer
    local.writeUInt16LE(pad, 32 + name.length);
    pad = 0;
    if (offset + local.length + e.data.length > 0xffffffff)
      throw new Error("checkpoint larger than 4 GiB: zip64 is not supported");
    const cd = Buffer.alloc(46 + name.length);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(0, 8);
    cd.writeUInt16LE(0, 10);
    cd.writeUInt32LE(0, 12);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(e.data.length, 20);
    cd.writeUInt32LE(e.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt32LE(offset, 42);
    name.copy(cd, 46);
    central.push(cd);
    parts.push(local, Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength));
    offset += local.length + e.data.length;
  }
  const cdBuf = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdBuf.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBuf, end]);
}

/** Serialise `obj` (whose TorchTensors reference `storages` by key) as a torch.save zip archive. */
export function torchSave(obj: PyValue, storages: ReadonlyMap<string, Float32Array>, archiveName = "archive"): Buffer {
  const entries: { name: string; data: Uint8Array }[] = [{ name: `${archiveName}/data.pkl`, data: pickle(obj) }];
  entries.push({ name: `${archiveName}/byteorder`, data: Buffer.from("little") });
  for (const [key, data] of storages)
    entries.push({
      name: `${archiveName}/data/${key}`,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
  entries.push({ name: `${archiveName}/version`, data: Buffer.from("3\n") });
  return zipStored(entries);
}
