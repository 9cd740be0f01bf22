import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { checksumZarrVolume, crc32c, openZarrVolume, writeZarrVolume } from "./zarr-volume.js";

const work = mkdtempSync(join(tmpdir(), "ssl3d-zarr-"));
after(() => {
  rmSync(work, { recursive: true, force: true });
});

function sample(shape: number[], seed = 1): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    a[i] = i % 97 < 30 ? 0 : s / 2147483648 - 0.5; // zero runs, so some chunks are empty
  }
  return a;
}

test("crc32c known answer", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

test("round trip through zarrita, Zarr v3 sharded layout, and zero padding outside", async () => {
  const shape = [2, 37, 70, 33];
  const data = sample(shape);
  data.fill(0, 0, 37 * 70 * 33); // channel 0 all zero: its inner chunks are left out of the shard
  const dir = join(work, "a.zarr");
  const res = await writeZarrVolume(dir, data, shape, { innerChunk: [16, 32, 16] });
  const meta = JSON.parse(readFileSync(join(dir, "zarr.json"), "utf8")) as {
    zarr_format: number;
    codecs: { name: string }[];
    chunk_grid: { configuration: { chunk_shape: number[] } };
  };
  assert.equal(meta.zarr_format, 3);
  assert.equal(meta.codecs[0]!.name, "sharding_indexed");
  assert.deepEqual(meta.chunk_grid.configuration.chunk_shape, [2, 48, 96, 48]);
  assert.deepEqual(readdirSync(dir).sort(), ["c", "zarr.json"], "no temporary files left");
  const v = await openZarrVolume(dir);
  assert.deepEqual(v.shape, shape);
  assert.deepEqual(await v.readAll(), data);
  const start = [-3, 60, 20];
  const size = [10, 15, 20];
  const reg = await v.readRegion(start, size);
  assert.equal(reg.length, 2 * 10 * 15 * 20);
  let checked = 0;
  for (let c = 0; c < 2; c++)
    for (let x = 0; x < 10; x++)
      for (let y = 0; y < 15; y++)
        for (let z = 0; z < 20; z++) {
          const gx = x + start[0]!;
          const gy = y + start[1]!;
          const gz = z + start[2]!;
          const inside = gx >= 0 && gx < 37 && gy < 70 && gz < 33;
          const exp = inside ? data[((c * 37 + gx) * 70 + gy) * 33 + gz]! : 0;
          assert.equal(reg[((c * 10 + x) * 15 + y) * 20 + z], exp);
          checked++;
        }
  assert.equal(checked, reg.length);
  assert.deepEqual(await v.readRegion([100, 0, 0], [4, 4, 4]), new Float32Array(2 * 64), "fully outside = zeros");
  assert.ok(v.fastPath, "own layout read directly");
  let seed = 3;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };
  for (let k = 0; k < 25; k++) {
    const st = [rnd(2), rnd(50) - 6, rnd(90) - 10, rnd(45) - 6];
    const sz = [1 + rnd(2), 1 + rnd(40), 1 + rnd(40), 1 + rnd(40)];
    assert.deepEqual(
      await v.readRegion(st, sz),
      await v.readRegionZarrita(st, sz),
      `region ${st.join(",")} + ${sz.join(",")}: direct = zarrita`,
    );
  }
  await v.close();
  assert.equal(await checksumZarrVolume(dir), res.checksum);
});

test("the checksum changes with the content and is null when a file is missing; writes are deterministic", async () => {
  const shape = [1, 20, 20, 20];
  const data = sample(shape, 7);
  const d1 = join(work, "b.zarr");
  const d2 = join(work, "c.zarr");
  const r1 = await writeZarrVolume(d1, data, shape);
  const r2 = await writeZarrVolume(d2, data, shape);
  assert.equal(r1.checksum, r2.checksum, "same input, same bytes");
  const shard = join(d1, "c", "0", "0", "0", "0");
  const bytes = readFileSync(shard);
  bytes[10] = bytes[10]! ^ 0xff;
  writeFileSync(shard, bytes);
  assert.notEqual(await checksumZarrVolume(d1), r1.checksum);
  const d3 = join(work, "d.zarr");
  await writeZarrVolume(d3, data, shape);
  const shard3 = join(d3, "c", "0", "0", "0", "0");
  const b3 = readFileSync(shard3);
  b3[b3.length - 10] = b3[b3.length - 10]! ^ 0x01; // inside the shard index
  writeFileSync(shard3, b3);
  await assert.rejects(openZarrVolume(d3), /crc32c/);
  rmSync(shard);
  assert.equal(await checksumZarrVolume(d1), null);
  assert.ok(!existsSync(join(work, "missing.zarr")));
  await assert.rejects(openZarrVolume(join(work, "missing.zarr")), /not a readable Zarr/);
});

test("an open volume holds no file descriptor (loaders may open thousands and never close them)", async () => {
  const shape = [1, 40, 40, 40];
  const dir = join(work, "fd.zarr");
  await writeZarrVolume(dir, sample(shape, 9), shape);
  const fds = (): number => readdirSync("/proc/self/fd").length;
  const before = fds();
  const vols = await Promise.all(Array.from({ length: 20 }, () => openZarrVolume(dir)));
  for (const v of vols) await v.readRegion([5, 5, 5], [20, 20, 20]);
  // at most as many as before: 20 open volumes holding a descriptor each would add 20; one the runtime itself closed
  // meanwhile (a worker's pipe from an earlier test) may make it fewer
  assert.ok(fds() <= before, `${fds()} descriptors open after opening 20 volumes, ${before} before`);
});
