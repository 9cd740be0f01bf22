/** Sum and Mean over a contiguous run of axes, and Softmax over the last axis (float32; others run stock). */
import * as tf from "@tensorflow/tfjs";
import type { NativeAddon } from "./addon.js";
import { alloc, f32, input, isF32, output, size, type KernelCall, type NativeKernel } from "./kernel.js";

function reduction(a: NativeAddon, mean: boolean) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    const { axis, keepDims } = call.attrs as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const contiguous = axes.every((v, i) => i === 0 || v === axes[i - 1]! + 1);
    if (!isF32(x) || axes.length === 0 || !contiguous) return call.stock();
    const first = axes[0]!,
      last = axes[axes.length - 1]!;
    const outer = size(x.shape.slice(0, first));
    const reduced = size(x.shape.slice(first, last + 1));
    const inner = size(x.shape.slice(last + 1));
    const out = alloc(outer * inner);
    a.reduceSum(f32(call.backend, x), outer, reduced, inner, mean ? 1 / reduced : 1, out);
    const shape = keepDims
      ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d))
      : x.shape.filter((_, i) => i < first || i > last);
    return output(call, shape, out);
  };
}

function softmax(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const logits = input(call, "logits");
    const dim = call.attrs.dim as number;
    const rank = logits.shape.length;
    if (!isF32(logits) || rank === 0 || (dim !== -1 && dim !== rank - 1)) return call.stock();
    const n = logits.shape[rank - 1]!;
    const total = size(logits.shape);
    const out = alloc(total);
    if (total > 0) a.softmax(f32(call.backend, logits), total / n, n, out);
    return output(call, logits.shape, out);
  };
}

export function kernels(a: NativeAddon): NativeKernel[] {
  return [
    { name: "Sum", body: reduction(a, false) },
    { name: "Mean", body: reduction(a, true) },
    { name: "Softmax", body: softmax(a) },
  ];
}
