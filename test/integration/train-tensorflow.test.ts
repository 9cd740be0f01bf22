/**
 * A short end-to-end MAE run on the `node` backend (TensorFlow 2.21 on the CPU, the binding the GPU image uses with
 * tfjs-node-gpu; built by `npm run setup:tensorflow -- --variant cpu`): `ssl3d demo --quick`, then `ssl3d train ...
 * --backend node` on the demo collection. The run finishes, its log names the tensorflow backend and TensorFlow's
 * version once, every step loss is finite, and the final checkpoint is written. `SSL3D_SKIP_TENSORFLOW=1` skips it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "ssl3d.mjs");
const work = mkdtempSync(join(tmpdir(), "ssl3d-train-tf-"));
after(() => {
  rmSync(work, { recursive: true, force: true });
});
const skip = process.env.SSL3D_SKIP_TENSORFLOW === "1" ? "SSL3D_SKIP_TENSORFLOW=1" : false;

test(
  "MAE on resenc-xs with --backend node: finishes, logs the tensorflow backend once, finite losses",
  { skip },
  () => {
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT" && !k.startsWith("nnssl_")),
    );
    const roots = {
      nnssl_raw: join(work, "nnssl_raw"),
      nnssl_preprocessed: join(work, "nnssl_preprocessed"),
      nnssl_results: join(work, "nnssl_results"),
    };
    const run = (args: string[]) =>
      spawnSync(process.execPath, [BIN, ...args], { env: { ...env, ...roots }, encoding: "utf8", timeout: 900_000 });
    const demo = run(["demo", "--quick", "--out", work]);
    assert.equal(demo.status, 0, demo.stderr);
    const r = run([
      "train",
      "990",
      "onemmiso",
      "-tr",
      "BaseMAETrainer",
      "--arch-preset",
      "resenc-xs",
      "--patch-size",
      "32",
      "--epochs",
      "1",
      "--iters-per-epoch",
      "4",
      "--val-iters",
      "1",
      "--backend",
      "node",
    ]);
    assert.equal(r.status, 0, r.stderr.split("\n").slice(-5).join("\n"));
    const lines = r.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const chosen = lines.filter((l) => typeof l.msg === "string" && l.msg.startsWith("tfjs backend"));
    assert.equal(chosen.length, 1, "the backend choice is logged once");
    assert.deepEqual([chosen[0]!.backend, chosen[0]!.tfBackend, chosen[0]!.gpu], ["node", "tensorflow", false]);
    assert.match(String(chosen[0]!.tfVersion), /^2\.21\./);
    const resultDir = join(roots.nnssl_results, "Dataset990_Demo");
    const fold = join(resultDir, readdirSync(resultDir)[0]!, "fold_all");
    const log = readFileSync(join(fold, "training_log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step_losses: number[] });
    const losses = log.flatMap((e) => e.step_losses);
    assert.equal(losses.length, 4);
    assert.ok(
      losses.every((v) => Number.isFinite(v) && v > 0),
      `losses ${losses.join(", ")}`,
    );
    assert.ok(existsSync(join(fold, "checkpoint_final.safetensors")));
  },
);
