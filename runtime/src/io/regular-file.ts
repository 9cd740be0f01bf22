/**
 * Reading a file the user named (a collection, manifests, a checkpoint, a plans file): only a regular file, and no
 * more bytes than a limit, checked on the opened descriptor before anything is read (docs/limits-and-safety.md,
 * "Input sizes and structure"). A named pipe, a device (`/dev/zero`, `/dev/urandom`) or a socket in place of a file
 * would otherwise block `open`/`read` forever or be read without end until memory runs out.
 *
 * The file is opened with O_NONBLOCK, so opening a FIFO with no writer returns at once; the type and size come from
 * `fstat` of that descriptor (no window between the check and the read). Errors of `open` itself (ENOENT, EACCES,
 * EISDIR) are rethrown unchanged for the caller's own message.
 */
import { closeSync, constants, fstatSync, openSync, promises as fs, readSync, type Stats } from "node:fs";
import { formatBytes } from "../config/limits.js";
import { ConfigError, DataError } from "../errors.js";

export interface RegularFileOptions {
  /** What the file is, for messages ("collection file", "checkpoint"). */
  readonly what: string;
  /** At most this many bytes (with the variable that overrides it, for the message). */
  readonly maxBytes?: number;
  readonly maxBytesEnv?: string;
  /** The error class of the refusal: ConfigError (exit 2) for configuration files, DataError (exit 3) for data. */
  readonly error?: typeof ConfigError | typeof DataError;
}

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/** "a named pipe (FIFO)", "a character device", ...: what a non-regular file is. */
export function fileKind(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a named pipe (FIFO)";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** Refuse a descriptor that is not a regular file or is larger than the limit. */
export function checkRegular(file: string, st: Stats, o: RegularFileOptions): void {
  const Err = o.error ?? ConfigError;
  if (!st.isFile()) throw new Err(`${o.what} is ${fileKind(st)}, expected a regular file`, { file });
  if (o.maxBytes !== undefined && st.size > o.maxBytes) {
    throw new Err(
      `${o.what} of ${formatBytes(st.size)} is beyond the limit of ${formatBytes(o.maxBytes)}${o.maxBytesEnv === undefined ? "" : ` (${o.maxBytesEnv})`}`,
      { file },
    );
  }
}

/** The bytes of a regular file (synchronous). */
export function readRegularFileSync(file: string, o: RegularFileOptions): Buffer {
  const fd = openSync(file, FLAGS);
  try {
    const st = fstatSync(fd);
    checkRegular(file, st, o);
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** The bytes of a regular file. */
export async function readRegularFile(file: string, o: RegularFileOptions): Promise<Buffer> {
  const fh = await fs.open(file, FLAGS);
  try {
    const st = await fh.stat();
    checkRegular(file, st, o);
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf.subarray(0, off);
  } finally {
    await fh.close();
  }
}
