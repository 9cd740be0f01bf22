/**
 * What every native kernel module shares: the cpu backend's storage seen through the one cast in this layer, output
 * allocation, the stock kernels kept for fallbacks, and `nativeKernel()`, which turns a typed kernel body into a
 * tfjs `KernelConfig` for the cpu backend.
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeKernelName } from "./kernels.generated.js";

/** The parts of tfjs's cpu backend (`MathBackendCPU`) the kernels use. */
export interface CpuBackend {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array | Uint8Array): tf.TensorInfo;
  disposeIntermediateTensorInfo(info: tf.TensorInfo): void;
}

/** A kernel call as the native kernels see it. */
export interface KernelCall {
  readonly backend: CpuBackend;
  /** The call's named inputs; `input()` reads one that must be present. */
  readonly inputs: tf.NamedTensorInfoMap;
  readonly attrs: tf.NamedAttrMap;
  /** Runs the stock tfjs kernel of the same name on the same call (other dtypes and shapes). */
  stock(): tf.TensorInfo | tf.TensorInfo[];
  /** Runs another stock kernel (e.g. an activation after a fused matMul). */
  stockKernel(name: string, inputs: tf.NamedTensorInfoMap, attrs?: tf.NamedAttrMap): tf.TensorInfo;
}

export type KernelBody = (call: KernelCall) => tf.TensorInfo | tf.TensorInfo[];
export interface NativeKernel {
  readonly name: NativeKernelName;
  readonly body: KernelBody;
}

const stockKernels = new Map<string, tf.KernelConfig>();

/** Remembers tfjs's own cpu kernel of each name before the native one replaces it. Idempotent. */
export function saveStockKernels(names: readonly string[]): void {
  for (const name of names) {
    if (stockKernels.has(name)) continue;
    const k = tf.getKernel(name, "cpu") as tf.KernelConfig | undefined;
    if (k === undefined) throw new Error(`native kernels: tfjs cpu backend has no kernel ${name}`);
    stockKernels.set(name, k);
  }
}

/** tfjs's own cpu kernel of that name (saved by `saveStockKernels`). */
export function stockKernel(name: string): tf.KernelConfig {
  const k = stockKernels.get(name);
  if (k === undefined) throw new Error(`native kernels: no stock kernel ${name} was saved`);
  return k;
}

/** The tfjs kernel config of one native kernel body. */
export function kernelConfig({ name, body }: NativeKernel): tf.KernelConfig {
  return {
    kernelName: name,
    backendName: "cpu",
    kernelFunc: (args) => {
      const call: KernelCall = {
        // the single place where tfjs's backend type meets the cpu backend's concrete storage API
        backend: args.backend as unknown as CpuBackend,
        inputs: args.inputs,
        attrs: args.attrs ?? {},
        stock: () => stockKernel(name).kernelFunc(args),
        stockKernel: (other, inputs, attrs = {}) =>
          stockKernel(other).kernelFunc({ inputs, backend: args.backend, attrs }) as tf.TensorInfo,
      };
      return body(call);
    },
  };
}

/** A named input that must be present. */
export function input(call: KernelCall, name: string): tf.TensorInfo {
  const t = call.inputs[name];
  if (t === undefined) throw new Error(`native kernels: missing input ${name}`);
  return t;
}

/** The named inputs, in order, each required. */
export function inputs(call: KernelCall, ...names: string[]): tf.TensorInfo[] {
  return names.map((n) => input(call, n));
}

/** A numeric attribute. */
export function numAttr(call: KernelCall, name: string): number {
  const v = call.attrs[name];
  if (typeof v !== "number") throw new Error(`native kernels: attribute ${name} must be a number`);
  return v;
}

/**
 * An output buffer the kernel overwrites completely: uninitialised memory (Buffer.allocUnsafeSlow, not pooled),
 * which skips the zero-fill of `new Float32Array(n)` (a full extra pass over memory for 10^8-element tensors).
 */
export function alloc(n: number): Float32Array {
  if (n < 1024) return new Float32Array(n);
  const buf = Buffer.allocUnsafeSlow(n * 4);
  return new Float32Array(buf.buffer, buf.byteOffset, n);
}

/** The float32 storage of a tensor on the cpu backend (read and written in place, no copy). */
export function f32(backend: CpuBackend, t: tf.TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  if (v instanceof Float32Array) return v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Float32Array.from(v as unknown as ArrayLike<number>);
  throw new Error(`native kernels: tensor of dtype ${t.dtype} has no numeric values on the cpu backend`);
}

/** A float32 output tensor of the given shape over `values`. */
export function output(call: KernelCall, shape: number[], values: Float32Array): tf.TensorInfo {
  return call.backend.makeTensorInfo(shape, "float32", values);
}

export const isF32 = (...ts: tf.TensorInfo[]): boolean => ts.every((t) => t.dtype === "float32");
export const size = (shape: readonly number[]): number => tf.util.sizeFromShape(shape as number[]);
export const i32 = (xs: readonly number[]): Int32Array => Int32Array.from(xs);
