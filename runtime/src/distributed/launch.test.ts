import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { deviceForLocalRank, rankEnv, visibleDevices } from "./launch.js";

const opts = (nproc: number, env: NodeJS.ProcessEnv) => ({
  cfg: { nnodes: 2, nodeRank: 1, masterAddr: "m", masterPort: 1 },
  nprocPerNode: nproc,
  command: "x",
  args: [],
  env,
});

test("each local rank sees exactly one GPU of those the device plugin exposes", () => {
  // NVIDIA device plugin: the container sees its devices renumbered 0..n-1
  const byIndex = [0, 1, 2, 3].map(
    (l) => rankEnv(opts(4, { NVIDIA_VISIBLE_DEVICES: "4,5,6,7" }), l).CUDA_VISIBLE_DEVICES,
  );
  assert.deepEqual(byIndex, ["0", "1", "2", "3"]);
  // UUIDs are passed through (CUDA accepts them)
  assert.deepEqual(
    [0, 1].map((l) => rankEnv(opts(2, { NVIDIA_VISIBLE_DEVICES: "GPU-a,GPU-b" }), l).CUDA_VISIBLE_DEVICES),
    ["GPU-a", "GPU-b"],
  );
  // an existing CUDA_VISIBLE_DEVICES wins and is split
  assert.deepEqual(
    [0, 1].map(
      (l) => rankEnv(opts(2, { CUDA_VISIBLE_DEVICES: "3,1", NVIDIA_VISIBLE_DEVICES: "all" }), l).CUDA_VISIBLE_DEVICES,
    ),
    ["3", "1"],
  );
  assert.equal(rankEnv(opts(2, { NVIDIA_VISIBLE_DEVICES: "all" }), 1).CUDA_VISIBLE_DEVICES, "1");
  // the torchrun contract is still there
  const e = rankEnv(opts(4, { NVIDIA_VISIBLE_DEVICES: "0,1,2,3" }), 2);
  assert.deepEqual([e.RANK, e.LOCAL_RANK, e.WORLD_SIZE], ["6", "2", "8"]);
});

test("no GPU environment (CPU) or a single rank: nothing is pinned", () => {
  assert.equal(rankEnv(opts(2, {}), 1).CUDA_VISIBLE_DEVICES, undefined);
  assert.equal(rankEnv(opts(1, { NVIDIA_VISIBLE_DEVICES: "0,1" }), 0).CUDA_VISIBLE_DEVICES, undefined);
  assert.equal(visibleDevices({ NVIDIA_VISIBLE_DEVICES: "void" }), undefined);
});

test("fewer visible GPUs than local ranks is a configuration error naming the variables", () => {
  assert.throws(
    () => deviceForLocalRank({ NVIDIA_VISIBLE_DEVICES: "0,1" }, 4, 0),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /4 local ranks need one GPU each, but only 2 are visible/);
      assert.match(err.message, /CUDA_VISIBLE_DEVICES \/ NVIDIA_VISIBLE_DEVICES/);
      return true;
    },
  );
  assert.throws(() => deviceForLocalRank({ NVIDIA_VISIBLE_DEVICES: "none" }, 2, 0), /only 0 are visible/);
});
