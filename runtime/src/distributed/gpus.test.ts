import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { checkRanksFitGpus, visibleGpuCount } from "./gpus.js";

test("visible GPUs: CUDA_VISIBLE_DEVICES wins (up to the first invalid id), else /dev/nvidiaN", () => {
  assert.equal(visibleGpuCount({ CUDA_VISIBLE_DEVICES: "0,1,3" }), 3);
  assert.equal(visibleGpuCount({ CUDA_VISIBLE_DEVICES: "" }), 0);
  assert.equal(visibleGpuCount({ CUDA_VISIBLE_DEVICES: "0,-1,2" }), 1);
  assert.equal(visibleGpuCount({ CUDA_VISIBLE_DEVICES: "GPU-8f1c2e,GPU-77aa" }), 2);
  const dev = mkdtempSync(join(tmpdir(), "ssl3d-dev-"));
  try {
    for (const f of ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"]) writeFileSync(join(dev, f), "");
    mkdirSync(join(dev, "nvidia-caps"));
    assert.equal(visibleGpuCount({}, dev), 2);
    assert.equal(visibleGpuCount({}, join(dev, "absent")), 0);
  } finally {
    rmSync(dev, { recursive: true, force: true });
  }
});

test("more local ranks than GPUs is a ConfigError on a GPU backend, fine on CPU backends", () => {
  assert.throws(
    () => {
      checkRanksFitGpus(4, "node-gpu", 2, true);
    },
    (e: unknown) =>
      e instanceof ConfigError &&
      /4 local ranks but 2 visible GPUs on the node-gpu backend/.test(e.message) &&
      e.field === "--nproc-per-node",
  );
  assert.throws(() => {
    checkRanksFitGpus(2, "node-gpu", 0, false);
  }, ConfigError);
  assert.throws(
    () => {
      checkRanksFitGpus(3, "auto", 2, true);
    },
    ConfigError,
    "auto trains on the GPU when one is visible and the GPU build is installed",
  );
  checkRanksFitGpus(2, "node-gpu", 2, true);
  checkRanksFitGpus(4, "auto", 0, true);
  checkRanksFitGpus(4, "auto", 2, false);
  checkRanksFitGpus(4, "cpu", 1, true);
  checkRanksFitGpus(4, "node", 1, true);
});
