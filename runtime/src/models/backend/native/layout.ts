/**
 * Data movement: Concat and SplitV along one axis, Transpose, non-contiguous Slice and PadV2 (float32; other dtypes,
 * and contiguous slices, which the stock kernel serves as zero-copy views, run stock).
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeAddon } from "./addon.js";
import { alloc, f32, i32, input, isF32, output, size, type KernelCall, type NativeKernel } from "./kernel.js";

function concat(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const ins = Object.values(call.inputs).filter((t): t is tf.TensorInfo => t !== undefined);
    const first = ins[0];
    if (first === undefined || ins.some((t) => !isF32(t) || t.shape.length !== first.shape.length)) return call.stock();
    const ax = tf.util.parseAxisParam(call.attrs.axis as number | number[], first.shape)[0]!;
    const outShape = tf.backend_util.computeOutShape(
      ins.map((t) => t.shape),
      ax,
    );
    const outer = size(first.shape.slice(0, ax));
    const inner = size(first.shape.slice(ax + 1));
    const out = alloc(size(outShape));
    a.concat(
      ins.map((t) => f32(call.backend, t)),
      i32(ins.map((t) => t.shape[ax]! * inner)),
      outer,
      out,
    );
    return output(call, outShape, out);
  };
}

function splitV(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    if (!isF32(x)) return call.stock();
    const { numOrSizeSplits, axis } = call.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, numOrSizeSplits, ax);
    const outer = size(x.shape.slice(0, ax));
    const inner = size(x.shape.slice(ax + 1));
    const outs = sizes.map((s) => alloc(outer * s * inner));
    a.split(f32(call.backend, x), outs, i32(sizes.map((s) => s * inner)), outer);
    return outs.map((o, i) =>
      output(
        call,
        x.shape.map((d, j) => (j === ax ? sizes[i]! : d)),
        o,
      ),
    );
  };
}

function transpose(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    const perm = call.attrs.perm as number[];
    if (!isF32(x) || x.shape.length === 0) return call.stock();
    const out = alloc(size(x.shape));
    a.transpose(f32(call.backend, x), i32(x.shape), i32(perm), out);
    return output(
      call,
      perm.map((p) => x.shape[p]!),
      out,
    );
  };
}

function slice(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    if (!isF32(x) || x.shape.length === 0) return call.stock();
    const { begin, size: sizeAttr } = call.attrs as { begin: number | number[]; size?: number | number[] };
    const [b0, s0] = tf.slice_util.parseSliceParams(x, begin, sizeAttr) as [number[], number[]];
    // Contiguous slices are zero-copy subarray views in the stock kernel: keep those.
    if (tf.slice_util.isSliceContinous(x.shape, b0, s0)) return call.stock();
    const out = alloc(size(s0));
    a.copyBlock(f32(call.backend, x), i32(x.shape), i32(b0), out, i32(s0), new Int32Array(s0.length), i32(s0));
    return output(call, s0, out);
  };
}

function pad(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    if (!isF32(x) || x.shape.length === 0) return call.stock();
    const { paddings, constantValue } = call.attrs as { paddings: [number, number][]; constantValue: number };
    const outShape = paddings.map((p, i) => p[0] + x.shape[i]! + p[1]);
    const n = size(outShape);
    const out = constantValue === 0 ? new Float32Array(n) : alloc(n).fill(constantValue);
    a.copyBlock(
      f32(call.backend, x),
      i32(x.shape),
      new Int32Array(x.shape.length),
      out,
      i32(outShape),
      i32(paddings.map((p) => p[0])),
      i32(x.shape),
    );
    return output(call, outShape, out);
  };
}

export function kernels(a: NativeAddon): NativeKernel[] {
  return [
    { name: "Concat", body: concat(a) },
    { name: "SplitV", body: splitV(a) },
    { name: "Transpose", body: transpose(a) },
    { name: "Slice", body: slice(a) },
    { name: "PadV2", body: pad(a) },
  ];
}
