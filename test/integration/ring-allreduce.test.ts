// The pipelined ring over real processes: exact results for 2 and 4 ranks with buffers that do not divide by the
// world size or by the 4 MiB segment, with empty chunks (fewer elements than ranks) and an empty buffer; a rank
// that dies while an all-reduce is on the wire fails the others with exit code 5 well before the timeout.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { freePort } from "../helpers/net.js";

const fixture = join(import.meta.dirname, "..", "fixtures", "dist-rank.ts");

interface RankResult {
  code: number | null;
  out: string;
  err: string;
}

async function runRanks(world: number, len: number, extraEnv: Record<string, string> = {}): Promise<RankResult[]> {
  const port = await freePort();
  return await Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise<RankResult>((resolve) => {
          const child = spawn(process.execPath, ["--import", "tsx", fixture], {
            env: {
              ...process.env,
              RANK: String(rank),
              WORLD_SIZE: String(world),
              MASTER_ADDR: "127.0.0.1",
              MASTER_PORT: String(port),
              SSL3D_DIST_TIMEOUT_S: "90",
              DIST_LEN: String(len),
              ...extraEnv,
            },
          });
          let out = "";
          let err = "";
          child.stdout.on("data", (d: Buffer) => (out += d.toString()));
          child.stderr.on("data", (d: Buffer) => (err += d.toString()));
          child.on("exit", (code) => {
            resolve({ code, out, err });
          });
        }),
    ),
  );
}

/** The fixture's data summed over `world` ranks: sum over r of (r+1)*0.5 + (i%97)*(r+1). */
function expected(world: number, i: number): number {
  const s = (world * (world + 1)) / 2;
  return s * 0.5 + (i % 97) * s;
}

async function checkExact(world: number, n: number): Promise<void> {
  const results = await runRanks(world, n);
  let checksum = 0;
  for (let i = 0; i < n; i++) checksum += Math.fround(expected(world, i));
  for (const r of results) {
    assert.equal(r.code, 0, r.err);
    const p = JSON.parse(r.out) as { first: number[]; last?: number; checksum: number; b: number[] };
    assert.deepEqual(
      p.first,
      Array.from({ length: Math.min(3, n) }, (_, i) => expected(world, i)),
    );
    if (n > 0) assert.equal(p.last, expected(world, n - 1));
    assert.equal(p.checksum, checksum);
    assert.deepEqual(p.b, [42, 42, 42, 42, 42]);
  }
}

// 2 ranks: chunks of 1 250 002 and 1 250 001 floats = a full 4 MiB segment and a ragged one each.
test(
  "2 ranks, a buffer that divides neither by the ranks nor by the segment: exact sums",
  { timeout: 180_000 },
  async () => {
    await checkExact(2, 2_500_003);
  },
);

test("4 ranks, several segments per chunk: exact sums", { timeout: 180_000 }, async () => {
  await checkExact(4, 4_194_311);
});

test("4 ranks, fewer elements than ranks (empty chunks) and an empty buffer", { timeout: 180_000 }, async () => {
  await checkExact(4, 3);
  await checkExact(4, 0);
});

test(
  "a rank that dies while an all-reduce is on the wire fails the others with exit code 5",
  { timeout: 180_000 },
  async () => {
    const t0 = Date.now();
    const results = await runRanks(3, 24_000_001, { DIST_DIE_DURING: "1", SSL3D_DIST_TIMEOUT_S: "120" });
    assert.equal(results[1]!.code, 17, results[1]!.err);
    for (const r of [results[0]!, results[2]!]) {
      assert.equal(r.code, 5, r.err);
      assert.match(r.err, /rank error: .*(closed|failed)/);
    }
    assert.ok(Date.now() - t0 < 100_000, "failure must propagate well before the 120 s timeout");
  },
);
