/**
 * Conv3D and its two backprops (oneDNN when the addon was built with it, else im2col + GEMM) and 'valid' AvgPool3D
 * with its gradient (ResEnc's strided skip path; other paddings and rounding modes use the stock kernels).
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeAddon } from "./addon.js";
import { alloc, f32, input, inputs, isF32, output, size, type KernelCall, type NativeKernel } from "./kernel.js";

type Triple = [number, number, number];
type Shape5 = [number, number, number, number, number];
type ConvPad = "valid" | "same" | number;
interface ConvAttrs {
  strides: Triple | number;
  pad: ConvPad;
  dilations?: Triple | number;
}

function asShape5(shape: readonly number[], what: string): Shape5 {
  if (shape.length !== 5)
    throw new Error(`native kernels: ${what} must be rank 5 (NDHWC), got shape [${shape.join(",")}]`);
  return shape as Shape5;
}

/** The 24 integers of native/src/kernels.h `ConvGeom`, in its field order. */
function geometry(ci: tf.backend_util.Conv3DInfo): Int32Array {
  const p = ci.padInfo;
  return Int32Array.from([
    ci.batchSize,
    ci.inDepth,
    ci.inHeight,
    ci.inWidth,
    ci.inChannels,
    ci.filterDepth,
    ci.filterHeight,
    ci.filterWidth,
    ci.outChannels,
    ci.outDepth,
    ci.outHeight,
    ci.outWidth,
    ci.strideDepth,
    ci.strideHeight,
    ci.strideWidth,
    ci.dilationDepth,
    ci.dilationHeight,
    ci.dilationWidth,
    p.front,
    p.top,
    p.left,
    p.back,
    p.bottom,
    p.right,
  ]);
}

const convAttrs = (call: KernelCall): ConvAttrs => call.attrs as unknown as ConvAttrs;
const shapeAttr = (call: KernelCall, name: string): number[] => call.attrs[name] as number[];

function convKernels(a: NativeAddon): NativeKernel[] {
  const conv3d = (call: KernelCall): tf.TensorInfo => {
    const [x, filter] = inputs(call, "x", "filter") as [tf.TensorInfo, tf.TensorInfo];
    const { strides, pad, dilations } = convAttrs(call);
    const ci = tf.backend_util.computeConv3DInfo(
      asShape5(x.shape, "x"),
      asShape5(filter.shape, "filter"),
      strides,
      dilations ?? 1,
      pad,
    );
    const y = alloc(size(ci.outShape));
    a.conv3d(f32(call.backend, x), f32(call.backend, filter), y, geometry(ci));
    return output(call, ci.outShape, y);
  };
  const backpropInput = (call: KernelCall): tf.TensorInfo => {
    const [dy, filter] = inputs(call, "dy", "filter") as [tf.TensorInfo, tf.TensorInfo];
    const { strides, pad } = convAttrs(call);
    const ci = tf.backend_util.computeConv3DInfo(
      asShape5(shapeAttr(call, "inputShape"), "inputShape"),
      asShape5(filter.shape, "filter"),
      strides,
      1,
      pad,
    );
    const dx = alloc(size(ci.inShape));
    a.conv3dBackpropInput(f32(call.backend, dy), f32(call.backend, filter), dx, geometry(ci));
    return output(call, ci.inShape, dx);
  };
  const backpropFilter = (call: KernelCall): tf.TensorInfo => {
    const [x, dy] = inputs(call, "x", "dy") as [tf.TensorInfo, tf.TensorInfo];
    const { strides, pad } = convAttrs(call);
    const ci = tf.backend_util.computeConv3DInfo(
      asShape5(x.shape, "x"),
      asShape5(shapeAttr(call, "filterShape"), "filterShape"),
      strides,
      1,
      pad,
    );
    const dw = alloc(size(ci.filterShape));
    a.conv3dBackpropFilter(f32(call.backend, x), f32(call.backend, dy), dw, geometry(ci));
    return output(call, ci.filterShape, dw);
  };
  return [
    { name: "Conv3D", body: conv3d },
    { name: "Conv3DBackpropInputV2", body: backpropInput },
    { name: "Conv3DBackpropFilterV2", body: backpropFilter },
  ];
}

function poolInfo(shape: number[], attrs: tf.NamedAttrMap): tf.backend_util.Conv3DInfo | null {
  const { filterSize, strides, pad, dimRoundingMode } = attrs as {
    filterSize: number | Triple;
    strides: number | Triple;
    pad: unknown;
    dimRoundingMode?: string;
  };
  if (pad !== "valid" || dimRoundingMode !== undefined || shape.length !== 5) return null;
  return tf.backend_util.computePool3DInfo(shape as Shape5, filterSize, strides, 1, "valid");
}

/** The 14 integers of native/src/kernels.h `avgpool3d`'s geometry. */
const poolGeometry = (ci: tf.backend_util.Conv3DInfo): Int32Array =>
  Int32Array.from([
    ci.batchSize,
    ci.inDepth,
    ci.inHeight,
    ci.inWidth,
    ci.inChannels,
    ci.filterDepth,
    ci.filterHeight,
    ci.filterWidth,
    ci.strideDepth,
    ci.strideHeight,
    ci.strideWidth,
    ci.outDepth,
    ci.outHeight,
    ci.outWidth,
  ]);

function poolKernels(a: NativeAddon): NativeKernel[] {
  const avgPool = (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const x = input(call, "x");
    const ci = isF32(x) ? poolInfo(x.shape, call.attrs) : null;
    if (ci === null) return call.stock();
    const out = alloc(size(ci.outShape));
    a.avgPool3d(f32(call.backend, x), poolGeometry(ci), out);
    return output(call, ci.outShape, out);
  };
  const avgPoolGrad = (call: KernelCall): tf.TensorInfo | tf.TensorInfo[] => {
    const [dy, x] = inputs(call, "dy", "input") as [tf.TensorInfo, tf.TensorInfo];
    const ci = isF32(dy) ? poolInfo(x.shape, call.attrs) : null;
    if (ci === null) return call.stock();
    const out = alloc(size(x.shape));
    a.avgPool3dGrad(f32(call.backend, dy), poolGeometry(ci), out);
    return output(call, x.shape, out);
  };
  return [
    { name: "AvgPool3D", body: avgPool },
    { name: "AvgPool3DGrad", body: avgPoolGrad },
  ];
}

export function kernels(a: NativeAddon): NativeKernel[] {
  return [...convKernels(a), ...poolKernels(a)];
}
