/**
 * Our Zarr v3 store is a standard Zarr: zarr-python 3 reads what writeZarrVolume writes (voxel for voxel), and
 * openZarrVolume reads an array zarr-python wrote with its own defaults (zstd codec, regular chunks).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { openZarrVolume, writeZarrVolume } from "../../runtime/src/io/zarr-volume.js";
import { zarrPythonBin } from "../helpers/zarr-python.js";

const work = mkdtempSync(join(tmpdir(), "ssl3d-zarr-interop-"));
after(() => {
  rmSync(work, { recursive: true, force: true });
});

function py(code: string): string {
  const r = spawnSync(zarrPythonBin(), ["-W", "ignore", "-c", code], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`zarr-python failed: ${r.stderr}`);
  return r.stdout;
}

test("zarr-python reads our sharded Blosc arrays exactly", async () => {
  const shape = [2, 45, 70, 33];
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = i % 131 < 40 ? 0 : Math.sin(i * 0.001) * 3 - 1;
  data.fill(0, 0, 45 * 70 * 33 - 1000); // mostly-empty channel: empty inner chunks are omitted
  const dir = join(work, "ours.zarr");
  await writeZarrVolume(dir, data, shape, { attributes: { note: "x" } });
  const out = join(work, "ours.raw");
  const meta = JSON.parse(
    py(`
import zarr, numpy as np, json
a = zarr.open_array(${JSON.stringify(dir)}, mode="r")
np.ascontiguousarray(a[:], dtype="<f4").tofile(${JSON.stringify(out)})
print(json.dumps({"shape": list(a.shape), "dtype": str(a.dtype), "chunks": list(a.chunks), "attrs": dict(a.attrs)}))
`),
  ) as { shape: number[]; dtype: string; chunks: number[]; attrs: Record<string, unknown> };
  assert.deepEqual(meta.shape, shape);
  assert.equal(meta.dtype, "float32");
  assert.deepEqual(meta.chunks, [1, 32, 32, 32], "inner chunks as zarr-python reports them");
  assert.deepEqual(meta.attrs, { note: "x" });
  const b = readFileSync(out);
  const theirs = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  assert.equal(theirs.length, n);
  let mismatch = 0;
  for (let i = 0; i < n; i++) if (theirs[i] !== data[i]) mismatch++;
  assert.equal(mismatch, 0);
});

test("openZarrVolume reads an array written by zarr-python with its defaults", async () => {
  const dir = join(work, "theirs.zarr");
  py(`
import zarr, numpy as np
x = (np.arange(3 * 20 * 17 * 9, dtype="<f4").reshape(3, 20, 17, 9) % 97) - 40
a = zarr.create_array(${JSON.stringify(dir)}, shape=x.shape, chunks=(1, 8, 8, 8), dtype="float32", fill_value=0)
a[:] = x
`);
  const v = await openZarrVolume(dir);
  assert.equal(v.fastPath, false, "not our layout: read through zarrita");
  assert.deepEqual(v.shape, [3, 20, 17, 9]);
  const all = await v.readAll();
  for (let i = 0; i < all.length; i += 37) assert.equal(all[i], (i % 97) - 40);
  const reg = await v.readRegion([1, 18, 15, 7], [1, 4, 4, 4]);
  assert.equal(reg[0], ((((1 * 20 + 18) * 17 + 15) * 9 + 7) % 97) - 40);
  assert.equal(reg[reg.length - 1], 0, "outside is zero");
  await v.close();
});
