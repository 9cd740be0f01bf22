/**
 * 3-D convolution with PyTorch `Conv3d(k, stride s, padding (k-1)/2)` semantics, channels-last.
 * Weights are [kd,kh,kw,Cin,Cout] (PyTorch [Cout,Cin,kd,kh,kw] transposed by the exporter).
 *
 * Two implementations, chosen per backend (or forced with `setConvImpl`):
 * - `tf`: `tf.conv3d` (explicit zero pad for strided convs, so padding matches PyTorch's symmetric pad) and tfjs
 *   autodiff, which runs the Conv3DBackpropInputV2/FilterV2 kernels. Correct on cpu and tfjs-node; on cpu the
 *   native addon (`native/`, docs/decisions/0008-native-cpu-kernels.md) replaces those kernels with fast ones under the same names.
 * - `conv2d` ("k2dsum", docs/performance.md): depth folded into the batch axis, one `tf.conv2d` per depth offset,
 *   with a hand-written gradient built from forward conv2d calls only. Used on wasm, where Conv3D is a scalar
 *   loop and the Conv3D backprop kernels are numerically wrong.
 * 1×1×1 stride-1 convolutions are a plain linear layer on every backend.
 */
import * as tf from "@tensorflow/tfjs";
import { customOp } from "./custom.js";
import { addBias, linear } from "./linear.js";

export type ConvImpl = "tf" | "conv2d";

let forced: ConvImpl | undefined;

/** Force an implementation (tests, benchmarks); `undefined` restores the per-backend default. */
export function setConvImpl(impl: ConvImpl | undefined): void {
  forced = impl;
}

export function convImpl(): ConvImpl {
  return forced ?? (tf.getBackend() === "wasm" ? "conv2d" : "tf");
}

export interface Conv3dOptions {
  readonly stride?: number;
  readonly bias?: tf.Tensor1D | undefined;
}

function outSize(n: number, k: number, s: number, p: number): number {
  return Math.floor((n + 2 * p - k) / s) + 1;
}

export function conv3d(x: tf.Tensor5D, w: tf.Tensor5D, opts: Conv3dOptions = {}): tf.Tensor5D {
  const s = opts.stride ?? 1;
  const k = w.shape[0];
  if (w.shape[1] !== k || w.shape[2] !== k || k % 2 !== 1)
    throw new Error(`conv3d: cubic odd kernels only, got ${w.shape.join("x")}`);
  if (w.shape[3] !== x.shape[4])
    throw new Error(`conv3d: input has ${x.shape[4]} channels, kernel expects ${w.shape[3]}`);
  return tf.tidy(() => {
    if (k === 1 && s === 1) return linear(x, tf.reshape(w, [w.shape[3], w.shape[4]]), opts.bias);
    const y = convImpl() === "tf" ? conv3dTf(x, w, s) : conv3dK2d(x, w, s);
    return opts.bias === undefined ? y : addBias(y, opts.bias);
  });
}

function conv3dTf(x: tf.Tensor5D, w: tf.Tensor5D, s: number): tf.Tensor5D {
  const p = (w.shape[0] - 1) / 2;
  if (s === 1) return tf.conv3d(x, w, 1, "same");
  const xp =
    p === 0
      ? x
      : tf.pad(x, [
          [0, 0],
          [p, p],
          [p, p],
          [p, p],
          [0, 0],
        ]);
  return tf.conv3d(xp, w, s, "valid");
}

interface Geometry {
  b: number;
  d: number;
  h: number;
  wd: number;
  ci: number;
  co: number;
  k: number;
  s: number;
  p: number;
  od: number;
  oh: number;
  ow: number;
  hwc: number;
  dp: number;
  padAfter: number;
}

function geometry(xs: readonly number[], ws: readonly number[], s: number): Geometry {
  const [b, d, h, wd, ci] = xs as [number, number, number, number, number];
  const k = ws[0]!;
  const co = ws[4]!;
  const p = (k - 1) / 2;
  const od = outSize(d, k, s, p);
  const oh = outSize(h, k, s, p);
  const ow = outSize(wd, k, s, p);
  const dp = Math.max(d + 2 * p, k - 1 + s * od);
  return { b, d, h, wd, ci, co, k, s, p, od, oh, ow, hwc: h * wd * ci, dp, padAfter: dp - d - p };
}

/** Zero-pad a [B, n*HWC] matrix by `before`/`after` rows of HWC columns. */
function padCols(x2: tf.Tensor2D, before: number, after: number, unit: number): tf.Tensor2D {
  if (before === 0 && after === 0) return x2;
  const rows = x2.shape[0];
  const parts: tf.Tensor2D[] = [];
  if (before > 0) parts.push(tf.zeros([rows, before * unit]));
  parts.push(x2);
  if (after > 0) parts.push(tf.zeros([rows, after * unit]));
  return tf.concat(parts, 1);
}

/** The input rows that depth offset kd sees, as a conv2d batch [B*Do, H, W, Cin]. */
function depthRows(xp2: tf.Tensor2D, g: Geometry, kd: number): tf.Tensor4D {
  const sl = tf.slice(xp2, [0, kd * g.hwc], [g.b, g.s * g.od * g.hwc]);
  const rows = g.s === 1 ? sl : tf.slice(tf.reshape(sl, [g.b * g.od, g.s * g.hwc]), [0, 0], [g.b * g.od, g.hwc]);
  return tf.reshape(rows, [g.b * g.od, g.h, g.wd, g.ci]);
}

function kernelSlice(w: tf.Tensor, g: Geometry, kd: number): tf.Tensor4D {
  return tf.reshape(tf.slice(w, [kd, 0, 0, 0, 0], [1, g.k, g.k, g.ci, g.co]), [g.k, g.k, g.ci, g.co]);
}

/** Insert s-1 zeros after every element along H and W: [N,Ho,Wo,C] → [N,s·Ho,s·Wo,C]. */
function dilateHW(t: tf.Tensor4D, s: number): tf.Tensor4D {
  if (s === 1) return t;
  const [n, ho, wo, c] = t.shape;
  const a = tf.reshape(t, [n * ho * wo, c]);
  const aw = tf.concat([a, tf.zeros([n * ho * wo, (s - 1) * c])], 1); // [n*ho*wo, s*c] = [n, ho, s*wo, c]
  const b2 = tf.reshape(aw, [n * ho, s * wo * c]);
  const bh = tf.concat([b2, tf.zeros([n * ho, (s - 1) * s * wo * c])], 1);
  return tf.reshape(bh, [n, s * ho, s * wo, c]);
}

function conv3dK2d(x: tf.Tensor5D, w: tf.Tensor5D, s: number): tf.Tensor5D {
  const g = geometry(x.shape, w.shape, s);
  const pad2: [[number, number], [number, number], [number, number], [number, number]] = [
    [0, 0],
    [g.p, g.p],
    [g.p, g.p],
    [0, 0],
  ];
  return customOp([x, w], ([x_, w_], save) => {
    save([x_!, w_!]);
    const value = tf.tidy(() => {
      const xp2 = padCols(tf.reshape(x_!, [g.b, g.d * g.hwc]), g.p, g.padAfter, g.hwc);
      let acc: tf.Tensor | undefined;
      for (let kd = 0; kd < g.k; kd++) {
        const y = tf.conv2d(depthRows(xp2, g, kd), kernelSlice(w_!, g, kd), [g.s, g.s], pad2);
        acc = acc === undefined ? y : tf.add(acc, y);
      }
      return tf.reshape(acc!, [g.b, g.od, g.oh, g.ow, g.co]);
    });
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as [tf.Tensor5D, tf.Tensor5D];
        const dyf = tf.reshape<tf.Rank.R4>(dy, [g.b * g.od, g.oh, g.ow, g.co]);
        // dx: full correlation of the (zero-inserted) dy with the flipped, in/out-swapped kernel
        const padL = g.k - 1 - g.p;
        const padRH = g.h - (g.s * (g.oh - 1) + 1) - padL + g.k - 1 - (g.s - 1);
        const padRW = g.wd - (g.s * (g.ow - 1) + 1) - padL + g.k - 1 - (g.s - 1);
        if (padRH < 0 || padRW < 0) throw new Error("conv3d gradient: unsupported geometry");
        const dyd = dilateHW(dyf, g.s);
        let dxp: tf.Tensor | undefined;
        for (let kd = 0; kd < g.k; kd++) {
          const wk = tf.transpose(tf.reverse(kernelSlice(sw, g, kd), [0, 1]), [0, 1, 3, 2]);
          const dxk = tf.conv2d(dyd, wk, 1, [
            [0, 0],
            [padL, padRH],
            [padL, padRW],
            [0, 0],
          ]);
          let rows: tf.Tensor2D = tf.reshape(dxk, [g.b * g.od, g.hwc]);
          if (g.s > 1) rows = tf.concat([rows, tf.zeros([g.b * g.od, (g.s - 1) * g.hwc])], 1);
          const placed = padCols(tf.reshape(rows, [g.b, g.s * g.od * g.hwc]), kd, g.dp - kd - g.s * g.od, g.hwc);
          dxp = dxp === undefined ? placed : tf.add(dxp, placed);
        }
        const dx = tf.reshape(tf.slice(dxp! as tf.Tensor2D, [0, g.p * g.hwc], [g.b, g.d * g.hwc]), sx.shape);
        // dw: correlation of x (channels as batch) with dy (as filter), dilation = stride
        const xp2 = padCols(tf.reshape(sx, [g.b, g.d * g.hwc]), g.p, g.padAfter, g.hwc);
        const filt = tf.transpose<tf.Tensor4D>(dyf, [1, 2, 0, 3]); // [Ho,Wo,N,Co]
        const pRH = g.k - g.h - g.p + g.s * (g.oh - 1);
        const pRW = g.k - g.wd - g.p + g.s * (g.ow - 1);
        if (pRH < 0 || pRW < 0) throw new Error("conv3d gradient: unsupported geometry");
        const dws: tf.Tensor4D[] = [];
        for (let kd = 0; kd < g.k; kd++) {
          const xk = tf.transpose(depthRows(xp2, g, kd), [3, 1, 2, 0]); // [Ci,H,W,N]
          const r = tf.conv2d(
            xk,
            filt,
            1,
            [
              [0, 0],
              [g.p, pRH],
              [g.p, pRW],
              [0, 0],
            ],
            "NHWC",
            [g.s, g.s],
          ); // [Ci,k,k,Co]
          dws.push(tf.transpose(r, [1, 2, 0, 3]));
        }
        return [dx, tf.stack(dws, 0)];
      },
    };
  }) as tf.Tensor5D;
}
