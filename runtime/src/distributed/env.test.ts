import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { distributedConfigFromEnv, perRankBatchSize } from "./env.js";
import { splitRanges } from "./process-group.js";

test("no environment means a single process", () => {
  const c = distributedConfigFromEnv({});
  assert.deepEqual([c.rank, c.worldSize, c.nnodes, c.masterPort], [0, 1, 1, 29500]);
});

test("PET_* of the operator give node rank, world size and master", () => {
  const c = distributedConfigFromEnv({
    PET_NNODES: "4",
    PET_NODE_RANK: "2",
    PET_NPROC_PER_NODE: "8",
    PET_MASTER_ADDR: "run-a1-0.run",
    PET_MASTER_PORT: "29400",
  });
  assert.deepEqual([c.rank, c.worldSize, c.masterAddr, c.masterPort], [16, 32, "run-a1-0.run", 29400]);
});

test("RANK/WORLD_SIZE from the local launcher win over PET_*", () => {
  const c = distributedConfigFromEnv({
    PET_NNODES: "2",
    PET_NODE_RANK: "1",
    PET_NPROC_PER_NODE: "2",
    RANK: "3",
    LOCAL_RANK: "1",
    WORLD_SIZE: "4",
    MASTER_ADDR: "10.0.0.1",
    MASTER_PORT: "1234",
  });
  assert.deepEqual([c.rank, c.localRank, c.worldSize, c.masterAddr, c.masterPort], [3, 1, 4, "10.0.0.1", 1234]);
});

test("bad values name the variable", () => {
  assert.throws(
    () => distributedConfigFromEnv({ PET_NNODES: "two" }),
    (e: unknown) => e instanceof ConfigError && /PET_NNODES/.test(e.message),
  );
  assert.throws(() => distributedConfigFromEnv({ PET_NNODES: "2", PET_NODE_RANK: "2" }), /PET_NODE_RANK/);
});

test("per-rank batch sizes add up and leave no rank idle", () => {
  for (const [total, world] of [
    [8, 4],
    [8, 3],
    [5, 4],
    [2, 2],
    [9, 2],
  ] as const) {
    const shares = Array.from({ length: world }, (_, r) => perRankBatchSize(total, world, r));
    assert.equal(
      shares.reduce((a, b) => a + b, 0),
      total,
    );
    assert.ok(
      Math.min(...shares) >= 1 && Math.max(...shares) - Math.min(...shares) <= 1,
      `${total}/${world}: ${shares.join(",")}`,
    );
  }
  assert.deepEqual(
    [0, 1, 2, 3].map((r) => perRankBatchSize(8, 4, r)),
    [2, 2, 2, 2],
  );
  assert.throws(() => perRankBatchSize(3, 4, 0), ConfigError);
});

test("ring chunks cover the buffer exactly", () => {
  assert.deepEqual(splitRanges(10, 3), [0, 4, 7, 10]);
  assert.deepEqual(splitRanges(2, 3), [0, 1, 2, 2]);
});
