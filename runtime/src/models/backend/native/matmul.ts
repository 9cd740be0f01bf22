/**
 * BatchMatMul and _FusedMatMul: oneDNN's sgemm when the addon was built with oneDNN, else the addon's own SIMD GEMM
 * (OpenBLAS sgemm on request; SSL3D_NATIVE_GEMM=own forces the own GEMM). The fused bias add uses the native
 * broadcasting add; activations run the stock kernels.
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeAddon } from "./addon.js";
import { BinaryOp } from "./kernels.generated.js";
import { alloc, f32, i32, input, isF32, output, size, type KernelCall, type NativeKernel } from "./kernel.js";

function rowMajorStrides(dims: number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
  return s;
}

/** One source batch index per output batch of a broadcasting batched matMul (numpy semantics). */
export function batchIndices(outerA: number[], outerB: number[]): { outer: number[]; ia: Int32Array; ib: Int32Array } {
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batch = size(outer);
  const ia = new Int32Array(batch),
    ib = new Int32Array(batch);
  const sa = rowMajorStrides(outerA),
    sb = rowMajorStrides(outerB);
  for (let bi = 0; bi < batch; bi++) {
    let rem = bi,
      offA = 0,
      offB = 0;
    for (let d = outer.length - 1; d >= 0; d--) {
      const idx = rem % outer[d]!;
      rem = Math.floor(rem / outer[d]!);
      const da = d - (outer.length - outerA.length),
        db = d - (outer.length - outerB.length);
      if (da >= 0 && outerA[da]! > 1) offA += idx * sa[da]!;
      if (db >= 0 && outerB[db]! > 1) offB += idx * sb[db]!;
    }
    ia[bi] = offA;
    ib[bi] = offB;
  }
  return { outer, ia, ib };
}

function batchMatMul(
  a: NativeAddon,
  call: KernelCall,
  x: tf.TensorInfo,
  y: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): tf.TensorInfo {
  const ra = x.shape.length,
    rb = y.shape.length;
  if (ra < 2 || rb < 2) throw new Error("native BatchMatMul: inputs must have rank >= 2");
  const m = transposeA ? x.shape[ra - 1]! : x.shape[ra - 2]!;
  const kA = transposeA ? x.shape[ra - 2]! : x.shape[ra - 1]!;
  const kB = transposeB ? y.shape[rb - 1]! : y.shape[rb - 2]!;
  const n = transposeB ? y.shape[rb - 2]! : y.shape[rb - 1]!;
  if (kA !== kB) {
    throw new Error(
      `Error in matMul: inner shapes (${kA}) and (${kB}) of Tensors with shapes ${x.shape.join(",")} and ` +
        `${y.shape.join(",")} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const { outer, ia, ib } = batchIndices(x.shape.slice(0, -2), y.shape.slice(0, -2));
  const out = alloc(ia.length * m * n);
  a.matmul(f32(call.backend, x), f32(call.backend, y), out, m, n, kA, transposeA, transposeB, ia, ib);
  return output(call, [...outer, m, n], out);
}

const ACTIVATION_KERNELS: Readonly<Record<string, string>> = {
  relu: "Relu",
  elu: "Elu",
  relu6: "Relu6",
  prelu: "Prelu",
  leakyrelu: "LeakyRelu",
  sigmoid: "Sigmoid",
};
/** Stock kernels `_FusedMatMul` may call besides the ones the addon replaces. */
export const ACTIVATION_STOCK_KERNELS = ["Elu", "Relu6", "Prelu", "Sigmoid"] as const;

function addBias(a: NativeAddon, call: KernelCall, current: tf.TensorInfo, bias: tf.TensorInfo): tf.TensorInfo {
  if (!isF32(bias)) return call.stockKernel("Add", { a: current, b: bias });
  // the native broadcasting add (the stock Add is a JS loop: ~2 ms per [1024,576] bias add)
  const shape = tf.broadcast_util.assertAndGetBroadcastShape(current.shape, bias.shape);
  const out = alloc(size(shape));
  a.binary(BinaryOp.Add, f32(call.backend, current), i32(current.shape), f32(call.backend, bias), i32(bias.shape), out);
  return output(call, shape, out);
}

function activate(call: KernelCall, current: tf.TensorInfo, activation: string): tf.TensorInfo {
  const name = ACTIVATION_KERNELS[activation];
  if (name === undefined) throw new Error(`Activation ${activation} has not been implemented for the CPU backend.`);
  if (name === "Prelu") return call.stockKernel(name, { x: current, alpha: input(call, "preluActivationWeights") });
  if (name === "LeakyRelu") {
    return call.stockKernel(name, { x: current }, { alpha: (call.attrs.leakyreluAlpha as number | undefined) ?? 0.2 });
  }
  return call.stockKernel(name, { x: current });
}

export function kernels(a: NativeAddon): NativeKernel[] {
  const plain = (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "a"),
      y = input(call, "b");
    if (!isF32(x, y)) return call.stock();
    return batchMatMul(a, call, x, y, call.attrs.transposeA as boolean, call.attrs.transposeB as boolean);
  };
  const fused = (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "a"),
      y = input(call, "b");
    if (!isF32(x, y)) return call.stock();
    let current = batchMatMul(a, call, x, y, call.attrs.transposeA as boolean, call.attrs.transposeB as boolean);
    const replace = (next: tf.TensorInfo): void => {
      call.backend.disposeIntermediateTensorInfo(current);
      current = next;
    };
    const bias = call.inputs.bias;
    if (bias !== undefined) replace(addBias(a, call, current, bias));
    const activation = call.attrs.activation as string | undefined;
    if (activation !== undefined && activation !== "linear") replace(activate(call, current, activation));
    return current;
  };
  return [
    { name: "BatchMatMul", body: plain },
    { name: "_FusedMatMul", body: fused },
  ];
}
