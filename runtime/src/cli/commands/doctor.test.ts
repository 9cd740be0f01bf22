/**
 * `ssl3d doctor`: `--json` reports TensorFlow 2.21 loading on the `node` backend (after `npm run setup:tensorflow --
 * --variant cpu`) and the native kernels' build; on a machine without a GPU `--gpu` exits non-zero with one line,
 * and so does `ssl3d train --preflight` before touching any data.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { visibleGpuCount } from "../../distributed/gpus.js";

const BIN = join(import.meta.dirname, "..", "..", "..", "..", "bin", "ssl3d.mjs");
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT"));
const cli = (args: string[]) =>
  spawnSync(process.execPath, [BIN, ...args], { env, encoding: "utf8", timeout: 300_000 });
const skipTf = process.env.SSL3D_SKIP_TENSORFLOW === "1" ? "SSL3D_SKIP_TENSORFLOW=1" : false;

test(
  "doctor --json: TensorFlow 2.21 on the node backend, the native kernels' build, the GPU backend's reason",
  { skip: skipTf },
  () => {
    const r = cli(["doctor", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as {
      backends: { name: string; available: boolean; detail: string }[];
      tensorflow: { package: string; loads: boolean; version?: string; devices?: string[] }[];
      native: { dnnl: boolean } | null;
    };
    const node = rep.backends.find((b) => b.name === "node")!;
    assert.ok(node.available, node.detail);
    assert.match(node.detail, /^TensorFlow 2\.21\.\d+ on the CPU/);
    const tf = rep.tensorflow.find((t) => t.package === "@tensorflow/tfjs-node")!;
    assert.match(tf.version ?? "", /^2\.21\./);
    assert.deepEqual(tf.devices?.slice(0, 1), ["CPU:0"]);
    const gpu = rep.backends.find((b) => b.name === "node-gpu")!;
    assert.ok(gpu.detail.length > 0, "node-gpu says why it is (not) available");
    assert.equal(rep.backends.find((b) => b.name === "cpu-native")!.available, rep.native !== null);
  },
);

const gpuSkip = visibleGpuCount() > 0 && "this machine has a GPU";

test("doctor --gpu and train --preflight without a GPU: non-zero exit, one line", { skip: gpuSkip }, () => {
  for (const args of [
    ["doctor", "--gpu"],
    ["train", "999", "x", "-tr", "BaseMAETrainer", "--preflight"],
  ]) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("ssl3d: error"));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /no GPU|not built|not installed/);
    assert.equal(r.stdout.trim(), "");
  }
});
