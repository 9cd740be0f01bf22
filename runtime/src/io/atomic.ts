/**
 * Atomic file output: write to a temporary file in the same directory, fsync it, rename over the target, fsync the
 * directory. A reader never sees a partial file, and a killed process leaves at most a `.<name>.tmp-<pid>-<hex>`
 * file behind, which no stage reads as valid and `removeStaleTemps` deletes at the next start.
 *
 * With `root`, the target is first checked to lie below it (io/safe-path.ts), symbolic links included. A failing
 * write (disk full, read-only file system, no permission) is an EnvironmentError naming the target, and its
 * temporary file is removed.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { ConfigError, fileSystemError } from "../errors.js";
import { fileKind } from "./regular-file.js";
import { assertInsideReal } from "./safe-path.js";

export interface AtomicOptions {
  /** The folder the target must lie below (the stage's output root). */
  readonly root?: string;
}

const TEMP_RE = /\.tmp-\d+-[0-9a-f]{8}$/;

export function tempPathFor(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
}

/** True for the temporary names `tempPathFor(dir/<name>)` produces, for one of `names`. */
export function isTempOf(entry: string, names: readonly string[]): boolean {
  if (!TEMP_RE.test(entry)) return false;
  const base = entry.replace(TEMP_RE, "");
  return names.some((n) => base === `.${n}`);
}

/**
 * Delete leftovers of killed or failed atomic writes of the given targets (file names in `dir`). Only names of the
 * exact `.<target>.tmp-<pid>-<hex>` form are touched: nothing this runtime did not create. Returns what was removed.
 */
export async function removeStaleTemps(dir: string, names: readonly string[]): Promise<string[]> {
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const e of entries) {
    if (!isTempOf(e, names)) continue;
    await fs.rm(path.join(dir, e), { recursive: true, force: true });
    removed.push(e);
  }
  return removed;
}

/**
 * `mkdir -p` that reports the real reason: Node's recursive mkdir turns EROFS/EACCES on a missing level into
 * ENOENT, so on failure the missing levels are created one by one to surface the system's own error code.
 */
export function mkdirpSync(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      throw fileSystemError(err, dir, "cannot create the folder") ?? err;
  }
  const missing: string[] = [];
  for (let d = path.resolve(dir); !existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST")
        throw fileSystemError(err, d, "cannot create the folder") ?? err;
    }
  }
}

async function mkdirp(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch {
    mkdirpSync(dir);
  }
}

/**
 * The rename would replace whatever is at `target`: a named pipe, a device (`--out /dev/null` as root) or a socket
 * there is refused instead of being swapped for a regular file. A symbolic link is replaced (not followed), as
 * before; a missing target is fine.
 */
async function checkReplaceable(target: string): Promise<void> {
  let st;
  try {
    st = await fs.lstat(target);
  } catch {
    return;
  }
  if (st.isFile() || st.isSymbolicLink()) return;
  throw new ConfigError(`is ${fileKind(st)}, not a regular file: refusing to replace it with the output`, {
    file: target,
  });
}

export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  opts: AtomicOptions = {},
): Promise<void> {
  if (opts.root !== undefined) assertInsideReal(opts.root, target);
  await checkReplaceable(target);
  const tmp = tempPathFor(target);
  try {
    await mkdirp(path.dirname(target));
    const fh = await fs.open(tmp, "w");
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw fileSystemError(err, target) ?? err;
  }
  await fsyncDir(path.dirname(target));
}

export async function writeJsonAtomic(
  target: string,
  value: unknown,
  indent = 2,
  opts: AtomicOptions = {},
): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, indent) + "\n", opts);
}

/**
 * Atomically replace a whole directory: the caller fills `tmpDir` (returned), then `commit()` renames it over
 * `target`. Used for multi-file outputs such as a Zarr array.
 */
export async function prepareDirAtomic(
  target: string,
  opts: AtomicOptions = {},
): Promise<{ tmpDir: string; commit: () => Promise<void>; abort: () => Promise<void> }> {
  if (opts.root !== undefined) assertInsideReal(opts.root, target);
  const tmpDir = tempPathFor(target);
  try {
    await mkdirp(path.dirname(target));
    await fs.mkdir(tmpDir, { recursive: true });
  } catch (err) {
    throw fileSystemError(err, target) ?? err;
  }
  return {
    tmpDir,
    commit: async () => {
      if (opts.root !== undefined) assertInsideReal(opts.root, target);
      try {
        await fs.rm(target, { recursive: true, force: true });
        await fs.rename(tmpDir, target);
      } catch (err) {
        throw fileSystemError(err, target) ?? err;
      }
      await fsyncDir(path.dirname(target));
    },
    abort: async () => {
      await fs.rm(tmpDir, { recursive: true, force: true });
    },
  };
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, "r");
    await fh.sync();
  } catch {
    // Some filesystems do not support fsync on directories; the rename itself is still atomic.
  } finally {
    await fh?.close();
  }
}
