/**
 * Broadcasting binary ops and comparisons, Select, and the unary ops, float32 only (other dtypes run the stock
 * kernels). The kernels of each family come from the generated opcode tables, so a kernel added to
 * native/kernels.json (and to the C++ switch) needs no code here.
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeAddon } from "./addon.js";
import { BinaryOp, CompareOp, UnaryOp, type NativeKernelName } from "./kernels.generated.js";
import { alloc, f32, i32, input, inputs, isF32, output, size, type KernelCall, type NativeKernel } from "./kernel.js";

function entries<T extends Record<string, number>>(table: T): [NativeKernelName, T[keyof T]][] {
  return Object.entries(table) as [NativeKernelName, T[keyof T]][];
}

function binary(a: NativeAddon, op: BinaryOp) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const [x, y] = inputs(call, "a", "b") as [tf.TensorInfo, tf.TensorInfo];
    if (!isF32(x, y)) return call.stock();
    const shape = tf.broadcast_util.assertAndGetBroadcastShape(x.shape, y.shape);
    const out = alloc(size(shape));
    a.binary(op, f32(call.backend, x), i32(x.shape), f32(call.backend, y), i32(y.shape), out);
    return output(call, shape, out);
  };
}

function compare(a: NativeAddon, op: CompareOp) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const [x, y] = inputs(call, "a", "b") as [tf.TensorInfo, tf.TensorInfo];
    if (!isF32(x, y)) return call.stock();
    const shape = tf.broadcast_util.assertAndGetBroadcastShape(x.shape, y.shape);
    const out = new Uint8Array(size(shape));
    a.compare(op, f32(call.backend, x), i32(x.shape), f32(call.backend, y), i32(y.shape), out);
    return call.backend.makeTensorInfo(shape, "bool", out);
  };
}

function unary(a: NativeAddon, op: UnaryOp) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    if (!isF32(x)) return call.stock();
    const alpha = op === UnaryOp.LeakyRelu ? (call.attrs.alpha as number) : 0;
    const out = alloc(size(x.shape));
    a.unary(op, f32(call.backend, x), alpha, out);
    return output(call, x.shape, out);
  };
}

function select(a: NativeAddon) {
  return (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const [condition, t, e] = inputs(call, "condition", "t", "e") as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
    const cv = call.backend.data.get(condition.dataId).values;
    const n = size(t.shape);
    if (!isF32(t, e) || !(cv instanceof Uint8Array) || cv.length !== n || size(e.shape) !== n) return call.stock();
    const out = alloc(n);
    a.select(cv, f32(call.backend, t), f32(call.backend, e), out);
    return output(call, t.shape, out);
  };
}

export function kernels(a: NativeAddon): NativeKernel[] {
  return [
    ...entries(BinaryOp).map(([name, op]) => ({ name, body: binary(a, op) })),
    ...entries(CompareOp).map(([name, op]) => ({ name, body: compare(a, op) })),
    ...entries(UnaryOp).map(([name, op]) => ({ name, body: unary(a, op) })),
    { name: "Select", body: select(a) },
  ];
}
