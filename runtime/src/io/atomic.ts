/**
 * Atomic file output: write to a temporary file in the same directory, fsync it, rename over the target, fsync the
 * directory. A reader never sees a partial file, and a killed process leaves at most a `*.tmp-*` file behind, which
 * no stage reads as valid.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";

export function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  const fh = await fs.open(tmp, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(target));
}

export async function writeJsonAtomic(target: string, value: unknown, indent = 2): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, indent) + "\n");
}

/**
 * Atomically replace a whole directory: the caller fills `tmpDir` (returned), then `commit()` renames it over
 * `target`. Used for multi-file outputs such as a Zarr array.
 */
export async function prepareDirAtomic(target: string): Promise<{ tmpDir: string; commit: () => Promise<void>; abort: () => Promise<void> }> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const tmpDir = tempPathFor(target);
  await fs.mkdir(tmpDir, { recursive: true });
  return {
    tmpDir,
    commit: async () => {
      await fs.rm(target, { recursive: true, force: true });
      await fs.rename(tmpDir, target);
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
