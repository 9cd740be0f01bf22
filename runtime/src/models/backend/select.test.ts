/** Backend selection: explicit request beats SSL3D_BACKEND beats auto; absent optional packages fall through. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { ConfigError, EnvironmentError } from "../../errors.js";
import { nativeAddon, unloadNativeKernels } from "./native.js";
import { parseBackendRequest, selectBackend, tfjsNodeMissing } from "./select.js";

const saved = process.env.SSL3D_BACKEND;
afterEach(() => {
  if (saved === undefined) delete process.env.SSL3D_BACKEND;
  else process.env.SSL3D_BACKEND = saved;
});

const cpuBindingBuilt = tfjsNodeMissing("@tensorflow/tfjs-node") === undefined;

test("auto never picks TensorFlow without a GPU: cpu + native kernels (else wasm), and says why", async () => {
  delete process.env.SSL3D_BACKEND;
  const c = await selectBackend();
  const native = nativeAddon() !== null;
  unloadNativeKernels();
  assert.equal(c.name, native ? "cpu" : "wasm");
  assert.equal(c.nativeKernels, native);
  assert.equal(tf.getBackend(), native ? "cpu" : "wasm");
  assert.equal(c.skipped.length, native ? 1 : 2);
  // node-gpu is skipped either because its binding is not built or because TensorFlow registered no GPU device
  assert.match(
    c.skipped[0]!,
    /tfjs-node-gpu: (not installed|binding not built)|node-gpu: TensorFlow registered no GPU device/,
  );
  assert.ok(
    c.skipped.every((s) => !s.startsWith("@tensorflow/tfjs-node:")),
    "TensorFlow on the CPU is not an auto candidate",
  );
  assert.match(c.reason, native ? /native kernels/ : /no native kernel addon/);
});

test("auto with SSL3D_NATIVE=0 picks wasm, not stock cpu", async () => {
  delete process.env.SSL3D_BACKEND;
  unloadNativeKernels();
  const savedNative = process.env.SSL3D_NATIVE;
  process.env.SSL3D_NATIVE = "0";
  try {
    const c = await selectBackend();
    assert.equal(c.name, "wasm");
    assert.match(c.skipped[1]!, /cpu-native/);
  } finally {
    if (savedNative === undefined) delete process.env.SSL3D_NATIVE;
    else process.env.SSL3D_NATIVE = savedNative;
    await tf.setBackend("cpu");
  }
});

test("SSL3D_BACKEND and --backend", async () => {
  process.env.SSL3D_BACKEND = "cpu";
  assert.equal((await selectBackend()).name, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal((await selectBackend("wasm")).name, "wasm", "the flag beats the environment");
  process.env.SSL3D_BACKEND = "tpu";
  await assert.rejects(selectBackend(), (e: unknown) => e instanceof ConfigError && /SSL3D_BACKEND/.test(e.message));
  if (!cpuBindingBuilt)
    await assert.rejects(
      selectBackend("node"),
      (e: unknown) => e instanceof EnvironmentError && /setup:tensorflow/.test(e.message),
      "an explicitly requested backend that cannot load is an error naming the fix",
    );
  assert.equal(parseBackendRequest(undefined, "x"), "auto");
  await tf.setBackend("cpu");
});

test("SSL3D_WASM_THREADS=2: threaded wasm initialises, computes conv3d like cpu, and the process exits", () => {
  const script = fileURLToPath(new URL("../../../../test/fixtures/wasm-threads-check.ts", import.meta.url));
  const r = spawnSync(process.execPath, ["--import", "tsx", script], {
    cwd: fileURLToPath(new URL("../../../../", import.meta.url)),
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT")),
      SSL3D_WASM_THREADS: "2",
      SSL3D_LOG_LEVEL: "warn",
    },
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { threads: number; d: number };
  assert.equal(out.threads, 2);
  assert.ok(out.d < 1e-4, `max diff ${out.d}`);
});
