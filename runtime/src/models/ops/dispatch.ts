/**
 * Which formulation the op layer uses. On the cpu backend with the native addon's kernels registered (ADR 0008),
 * batched and transposed matMuls, Softmax and reductions are fast native kernels, so ops use the plain tfjs form
 * (fewer, larger kernel calls); on wasm (and stock cpu) they keep the 2-D untransposed matMul form that runs in
 * XNNPACK (docs/performance.md).
 */
import * as tf from "@tensorflow/tfjs";
import { nativeKernelsLoaded } from "../backend/native.js";

export function nativeCpu(): boolean {
  return nativeKernelsLoaded() && tf.getBackend() === "cpu";
}
