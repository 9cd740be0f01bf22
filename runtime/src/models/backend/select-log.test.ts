import assert from "node:assert/strict";
import { test } from "node:test";
import { describeChoice, shortSkipReason, type ChoiceSummary } from "./select.js";

const missing = (pkg: string): string =>
  `${pkg}: Cannot find package '${pkg}' imported from /x/runtime/src/models/backend/select.ts`;

test("the backend choice is one line naming the backend and why; probe messages shrink to a few words", () => {
  assert.equal(shortSkipReason(missing("@tensorflow/tfjs-node-gpu")), "@tensorflow/tfjs-node-gpu not installed");
  assert.equal(
    shortSkipReason("cpu-native: the native kernel addon is not available"),
    "native kernel addon not built",
  );
  assert.equal(shortSkipReason("wasm: backend did not initialise"), "wasm failed (backend did not initialise)");
  assert.ok(shortSkipReason(`node: ${"x".repeat(300)}`).length < 100);
  const native: ChoiceSummary = {
    name: "cpu",
    tfBackend: "cpu",
    nativeKernels: true,
    skipped: [missing("@tensorflow/tfjs-node-gpu"), missing("@tensorflow/tfjs-node")],
  };
  assert.equal(
    describeChoice(native, "auto"),
    "tfjs backend: cpu with the native kernels (auto: @tensorflow/tfjs-node-gpu not installed, @tensorflow/tfjs-node not installed)",
  );
  const wasm: ChoiceSummary = { name: "wasm", tfBackend: "wasm", nativeKernels: false, wasmThreads: 4, skipped: [] };
  assert.equal(describeChoice(wasm, "--backend"), "tfjs backend: wasm (4 threads) (requested by --backend)");
  assert.equal(
    describeChoice({ ...wasm, wasmThreads: 1 }, "SSL3D_BACKEND"),
    "tfjs backend: wasm (requested by SSL3D_BACKEND)",
  );
  assert.equal(
    describeChoice({ name: "node-gpu", tfBackend: "tensorflow", nativeKernels: false, skipped: [] }, "auto"),
    "tfjs backend: node-gpu (auto: the first choice)",
  );
});
