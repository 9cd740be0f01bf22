/**
 * Builders for hostile inputs of the adversarial tier (checkpoints, pickles, zip archives, NIfTI headers) and a
 * CLI runner that measures the child's peak memory. Everything is built byte by byte here, so each case says
 * exactly what it attacks.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { crc32 } from "../../runtime/src/models/torch-zip.js";

export const ROOT = join(import.meta.dirname, "..", "..");

// ---- pickle opcodes ----------------------------------------------------------------------------------------------

export const op = {
  proto: Buffer.from([0x80, 0x02]),
  stop: Buffer.from([0x2e]),
  mark: Buffer.from([0x28]),
  emptyDict: Buffer.from([0x7d]),
  emptyList: Buffer.from([0x5d]),
  emptyTuple: Buffer.from([0x29]),
  tuple: Buffer.from([0x74]),
  setitems: Buffer.from([0x75]),
  appends: Buffer.from([0x65]),
  append: Buffer.from([0x61]),
  reduce: Buffer.from([0x52]),
  binpersid: Buffer.from([0x51]),
  newfalse: Buffer.from([0x89]),
  put: (i: number): Buffer => Buffer.from([0x72, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, (i >>> 24) & 0xff]), // LONG_BINPUT
  get: (i: number): Buffer => Buffer.from([0x6a, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, (i >>> 24) & 0xff]), // LONG_BINGET
  global: (mod: string, name: string): Buffer => Buffer.from(`c${mod}\n${name}\n`, "latin1"),
  str: (s: string): Buffer => {
    const b = Buffer.from(s, "utf8");
    const h = Buffer.alloc(5);
    h[0] = 0x58;
    h.writeUInt32LE(b.length, 1);
    return Buffer.concat([h, b]);
  },
  int: (n: number): Buffer => {
    if (n >= -(2 ** 31) && n < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a;
      b.writeInt32LE(n, 1);
      return b;
    }
    const b = Buffer.alloc(10);
    b[0] = 0x8a;
    b[1] = 8;
    b.writeBigInt64LE(BigInt(n), 2);
    return b;
  },
  tupleOf: (items: readonly Buffer[]): Buffer => Buffer.concat([op.mark, ...items, op.tuple]),
};

export interface TensorSpec {
  readonly name: string;
  /** Storage record key (`data/<key>`). */
  readonly key: string;
  readonly numel: number;
  readonly shape: readonly number[];
  readonly stride?: readonly number[];
  readonly offset?: number;
  readonly storageType?: string;
}

function contiguous(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

export function tensorOps(t: TensorSpec): Buffer {
  const pid = op.tupleOf([
    op.str("storage"),
    op.global("torch", t.storageType ?? "FloatStorage"),
    op.str(t.key),
    op.str("cpu"),
    op.int(t.numel),
  ]);
  return Buffer.concat([
    op.global("torch._utils", "_rebuild_tensor_v2"),
    op.mark,
    pid,
    op.binpersid,
    op.int(t.offset ?? 0),
    op.tupleOf(t.shape.map(op.int)),
    op.tupleOf((t.stride ?? contiguous(t.shape)).map(op.int)),
    op.newfalse,
    op.global("collections", "OrderedDict"),
    op.emptyTuple,
    op.reduce,
    op.tuple,
    op.reduce,
  ]);
}

/** `{network_weights: OrderedDict(tensors), <extra key>: <raw ops>...}` as a complete pickle. */
export function checkpointPickle(
  tensors: readonly TensorSpec[],
  extra: Readonly<Record<string, Buffer>> = {},
  keyOps?: (t: TensorSpec) => Buffer,
): Buffer {
  const weights = Buffer.concat([
    op.global("collections", "OrderedDict"),
    op.emptyTuple,
    op.reduce,
    op.mark,
    ...tensors.flatMap((t) => [keyOps?.(t) ?? op.str(t.name), tensorOps(t)]),
    op.setitems,
  ]);
  const items = [op.str("network_weights"), weights, ...Object.entries(extra).flatMap(([k, v]) => [op.str(k), v])];
  return Buffer.concat([op.proto, op.emptyDict, op.mark, ...items, op.setitems, op.stop]);
}

/**
 * A value of `levels` nested lists, each holding `fanout` references (memo GETs) to the level below: a few bytes
 * per level, fanout^levels leaves when expanded. Memo slots `memoBase..memoBase+levels` (< 256: 1-byte BINGET).
 */
export function billionLaughs(levels: number, fanout = 10, memoBase = 10): Buffer {
  const binput = (i: number): Buffer => Buffer.from([0x71, i]);
  const binget = (i: number): Buffer => Buffer.from([0x68, i]);
  const pop = Buffer.from([0x30]);
  const parts: Buffer[] = [op.emptyList, op.mark];
  for (let i = 0; i < fanout; i++) parts.push(Buffer.from([0x4b, 1])); // BININT1 1
  parts.push(op.appends, binput(memoBase), pop);
  for (let l = 1; l <= levels; l++) {
    parts.push(op.emptyList, op.mark);
    for (let i = 0; i < fanout; i++) parts.push(binget(memoBase + l - 1));
    parts.push(op.appends, binput(memoBase + l), pop);
  }
  parts.push(binget(memoBase + levels));
  return Buffer.concat(parts);
}

/** A dict nested `depth` levels deep ({"a": {"a": ...}}), built without recursion in the pickle. */
export function deepDict(depth: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < depth; i++) parts.push(op.emptyDict, op.str("a"));
  parts.push(op.int(1));
  for (let i = 0; i < depth; i++) parts.push(Buffer.from([0x73])); // SETITEM
  return Buffer.concat(parts);
}

// ---- zip archives ------------------------------------------------------------------------------------------------

export interface ZipEntrySpec {
  readonly name: string;
  readonly data: Uint8Array;
  /** 0 stored (default), 8 deflated. */
  readonly method?: 0 | 8;
  /** Uncompressed size written to the directory (default: the real size). */
  readonly declaredSize?: number;
}

export function zipArchive(entries: readonly ZipEntrySpec[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, "utf8");
    const body = e.method === 8 ? deflateRawSync(e.data, { level: 9 }) : Buffer.from(e.data);
    const size = e.declaredSize ?? e.data.length;
    const crc = crc32(e.data);
    const local = Buffer.alloc(30 + name.length);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(e.method ?? 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size >>> 0, 22);
    local.writeUInt16LE(name.length, 26);
    name.copy(local, 30);
    const cd = Buffer.alloc(46 + name.length);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(e.method ?? 0, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(size >>> 0, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt32LE(offset, 42);
    name.copy(cd, 46);
    central.push(cd);
    parts.push(local, body);
    offset += local.length + body.length;
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

/** A torch.save-style archive: `archive/data.pkl`, `archive/byteorder`, the storage records. */
export function torchArchive(pkl: Buffer, storages: readonly ZipEntrySpec[]): Buffer {
  return zipArchive([
    { name: "archive/data.pkl", data: pkl },
    { name: "archive/byteorder", data: Buffer.from("little") },
    ...storages.map((s) => ({ ...s, name: `archive/data/${s.name}` })),
    { name: "archive/version", data: Buffer.from("3\n") },
  ]);
}

export function floats(n: number, f: (i: number) => number = (i) => i): Buffer {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return Buffer.from(a.buffer);
}

// ---- running the CLI ---------------------------------------------------------------------------------------------

export interface CliRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Peak resident set size of the child, MiB (process.resourceUsage().maxRSS at exit). */
  readonly peakMiB: number;
  readonly seconds: number;
}

/**
 * `node bin/ssl3d.mjs ...args` in a child process with a time bound; its peak RSS is written by a preload
 * (test/adversarial/peak-rss.mjs) when it exits.
 */
export function runCli(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): CliRun {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-peak-"));
  const peakFile = join(dir, "peak");
  const t0 = process.hrtime.bigint();
  const r = spawnSync(
    process.execPath,
    ["--import", join(ROOT, "test", "adversarial", "peak-rss.mjs"), join(ROOT, "bin", "ssl3d.mjs"), ...args],
    {
      encoding: "utf8",
      cwd: opts.cwd ?? ROOT,
      timeout: opts.timeoutMs ?? 120_000,
      env: { ...process.env, SSL3D_LOG_LEVEL: "warn", SSL3D_PEAK_RSS_FILE: peakFile, SSL3D_REEXEC: "1", ...opts.env },
    },
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let peakMiB = Number.NaN;
  try {
    peakMiB = Number(readFileSync(peakFile, "utf8")) / 1024;
  } catch {
    // killed before exiting normally: no measurement
  }
  rmSync(dir, { recursive: true, force: true });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, peakMiB, seconds };
}

/** The error line the CLI printed (`ssl3d: error: ...` or the last stderr line). */
export function errorLine(r: CliRun): string {
  const lines = r.stderr
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "");
  return lines.find((l) => /error/i.test(l)) ?? lines[lines.length - 1] ?? "";
}
