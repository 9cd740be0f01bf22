/**
 * ssl3d's fused kernels (no stock tfjs equivalent) and their gradients: instance norm (+ LeakyReLU), SparK's sparse
 * instance norm, layer norm, and exact blockwise softmax attention. Each forward returns the statistics its gradient
 * needs; each gradient is one native kernel producing every input's gradient at once.
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeAddon } from "./addon.js";
import { alloc, f32, inputs, numAttr, output, size, type KernelCall, type NativeKernel } from "./kernel.js";

type T = tf.TensorInfo;

/** x: [B, ..., C] channels-last; statistics over all axes between batch and channels. */
function instanceSizes(x: T): [number, number, number] {
  const bsz = x.shape[0]!,
    c = x.shape[x.shape.length - 1]!;
  return [bsz, size(x.shape) / Math.max(1, bsz * c), c];
}

function needs<K extends keyof NativeAddon>(a: NativeAddon, name: K): NonNullable<NativeAddon[K]> {
  const fn = a[name];
  if (fn === undefined) throw new Error(`native addon has no ${name} (stale build: npm run build:native)`);
  return fn;
}

function instanceNormKernels(a: NativeAddon): NativeKernel[] {
  const forward = (call: KernelCall): T[] => {
    const [x, gamma, beta] = inputs(call, "x", "gamma", "beta") as [T, T, T];
    const [bsz, sp, c] = instanceSizes(x);
    const y = alloc(bsz * sp * c),
      mean = alloc(bsz * c),
      rstd = alloc(bsz * c);
    const b = call.backend;
    a.instanceNorm(
      f32(b, x),
      bsz,
      sp,
      c,
      f32(b, gamma),
      f32(b, beta),
      numAttr(call, "eps"),
      y,
      mean,
      rstd,
      numAttr(call, "alpha"),
    );
    return [output(call, x.shape, y), output(call, [bsz, c], mean), output(call, [bsz, c], rstd)];
  };
  const backward = (call: KernelCall): T[] => {
    const [x, dy, gamma, beta, mean, rstd] = inputs(call, "x", "dy", "gamma", "beta", "mean", "rstd") as [
      T,
      T,
      T,
      T,
      T,
      T,
    ];
    const [bsz, sp, c] = instanceSizes(x);
    const dx = alloc(bsz * sp * c),
      dgamma = alloc(c),
      dbeta = alloc(c);
    const b = call.backend;
    a.instanceNormGrad(
      f32(b, x),
      f32(b, dy),
      bsz,
      sp,
      c,
      f32(b, gamma),
      f32(b, mean),
      f32(b, rstd),
      dx,
      dgamma,
      dbeta,
      f32(b, beta),
      numAttr(call, "alpha"),
    );
    return [output(call, x.shape, dx), output(call, [c], dgamma), output(call, [c], dbeta)];
  };
  return [
    { name: "Ssl3dInstanceNorm", body: forward },
    { name: "Ssl3dInstanceNormGrad", body: backward },
  ];
}

function sparseInstanceNormKernels(a: NativeAddon): NativeKernel[] {
  const forward = (call: KernelCall): T[] => {
    const [x, mask, gamma, beta] = inputs(call, "x", "mask", "gamma", "beta") as [T, T, T, T];
    const [bsz, sp, c] = instanceSizes(x);
    const y = alloc(bsz * sp * c),
      mean = alloc(bsz * c),
      rstd = alloc(bsz * c);
    const b = call.backend;
    needs(a, "sparseInstanceNorm")(
      f32(b, x),
      f32(b, mask),
      bsz,
      sp,
      c,
      f32(b, gamma),
      f32(b, beta),
      numAttr(call, "eps"),
      numAttr(call, "alpha"),
      y,
      mean,
      rstd,
    );
    return [output(call, x.shape, y), output(call, [bsz, c], mean), output(call, [bsz, c], rstd)];
  };
  const backward = (call: KernelCall): T[] => {
    const [x, dy, mask, gamma, beta, mean, rstd] = inputs(call, "x", "dy", "mask", "gamma", "beta", "mean", "rstd") as [
      T,
      T,
      T,
      T,
      T,
      T,
      T,
    ];
    const [bsz, sp, c] = instanceSizes(x);
    const dx = alloc(bsz * sp * c),
      dgamma = alloc(c),
      dbeta = alloc(c);
    const b = call.backend;
    needs(a, "sparseInstanceNormGrad")(
      f32(b, x),
      f32(b, dy),
      f32(b, mask),
      bsz,
      sp,
      c,
      f32(b, gamma),
      f32(b, beta),
      f32(b, mean),
      f32(b, rstd),
      numAttr(call, "alpha"),
      dx,
      dgamma,
      dbeta,
    );
    return [output(call, x.shape, dx), output(call, [c], dgamma), output(call, [c], dbeta)];
  };
  return [
    { name: "Ssl3dSparseInstanceNorm", body: forward },
    { name: "Ssl3dSparseInstanceNormGrad", body: backward },
  ];
}

function layerNormKernels(a: NativeAddon): NativeKernel[] {
  const rowsOf = (x: T): [number, number] => {
    const c = x.shape[x.shape.length - 1]!;
    return [size(x.shape) / c, c];
  };
  const forward = (call: KernelCall): T[] => {
    const [x, gamma, beta] = inputs(call, "x", "gamma", "beta") as [T, T, T];
    const [rows, c] = rowsOf(x);
    const y = alloc(rows * c),
      mean = alloc(rows),
      rstd = alloc(rows);
    const b = call.backend;
    a.layerNorm(f32(b, x), rows, c, f32(b, gamma), f32(b, beta), numAttr(call, "eps"), y, mean, rstd);
    return [output(call, x.shape, y), output(call, [rows], mean), output(call, [rows], rstd)];
  };
  const backward = (call: KernelCall): T[] => {
    const [x, dy, gamma, mean, rstd] = inputs(call, "x", "dy", "gamma", "mean", "rstd") as [T, T, T, T, T];
    const [rows, c] = rowsOf(x);
    const dx = alloc(rows * c),
      dgamma = alloc(c),
      dbeta = alloc(c);
    const b = call.backend;
    a.layerNormGrad(f32(b, x), f32(b, dy), rows, c, f32(b, gamma), f32(b, mean), f32(b, rstd), dx, dgamma, dbeta);
    return [output(call, x.shape, dx), output(call, [c], dgamma), output(call, [c], dbeta)];
  };
  return [
    { name: "Ssl3dLayerNorm", body: forward },
    { name: "Ssl3dLayerNormGrad", body: backward },
  ];
}

function attentionKernels(a: NativeAddon): NativeKernel[] {
  const dims = (q: T, k: T): { bh: number; t: number; s: number; d: number } => {
    const r = q.shape.length;
    return { bh: size(q.shape.slice(0, -2)), t: q.shape[r - 2]!, s: k.shape[r - 2]!, d: q.shape[r - 1]! };
  };
  const forward = (call: KernelCall): T[] => {
    const [q, k, v] = inputs(call, "q", "k", "v") as [T, T, T];
    const { bh, t, s, d } = dims(q, k);
    const o = alloc(bh * t * d),
      lse = alloc(bh * t);
    const b = call.backend;
    a.attention(f32(b, q), f32(b, k), f32(b, v), bh, t, s, d, numAttr(call, "scale"), o, lse);
    return [output(call, q.shape, o), output(call, q.shape.slice(0, -1), lse)];
  };
  const backward = (call: KernelCall): T[] => {
    const [q, k, v, o, lse, dy] = inputs(call, "q", "k", "v", "o", "lse", "dy") as [T, T, T, T, T, T];
    const { bh, t, s, d } = dims(q, k);
    const dq = alloc(bh * t * d),
      dk = alloc(bh * s * d),
      dv = alloc(bh * s * d);
    const b = call.backend;
    a.attentionGrad(
      f32(b, q),
      f32(b, k),
      f32(b, v),
      f32(b, o),
      f32(b, lse),
      f32(b, dy),
      bh,
      t,
      s,
      d,
      numAttr(call, "scale"),
      dq,
      dk,
      dv,
    );
    return [output(call, q.shape, dq), output(call, k.shape, dk), output(call, v.shape, dv)];
  };
  return [
    { name: "Ssl3dAttention", body: forward },
    { name: "Ssl3dAttentionGrad", body: backward },
  ];
}

export function kernels(a: NativeAddon): NativeKernel[] {
  return [...instanceNormKernels(a), ...sparseInstanceNormKernels(a), ...layerNormKernels(a), ...attentionKernels(a)];
}

const first = (dy: tf.Tensor | tf.Tensor[]): tf.Tensor => (Array.isArray(dy) ? dy[0]! : dy);

/**
 * Runs a gradient kernel eagerly and hands its outputs to autodiff (each thunk runs in its own tidy, which would
 * dispose the other outputs of a lazily shared call).
 */
function gradOutputs(
  kernel: string,
  ins: tf.NamedTensorMap,
  attrs: tf.NamedAttrMap,
  names: string[],
): Record<string, () => tf.Tensor> {
  const outs = tf.engine().runKernel<tf.Tensor[]>(kernel, ins, attrs);
  return Object.fromEntries(names.map((n, i) => [n, () => outs[i]!]));
}

let gradientsRegistered = false;

/** Registers the gradients of the fused forward kernels (once per process). */
export function registerFusedGradients(): void {
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  tf.registerGradient({
    kernelName: "Ssl3dInstanceNorm",
    inputsToSave: ["x", "gamma", "beta"],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [x, gamma, beta, mean, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      return gradOutputs(
        "Ssl3dInstanceNormGrad",
        { x, dy: first(dy), gamma, beta, mean, rstd },
        { alpha: attrs.alpha as number },
        ["x", "gamma", "beta"],
      );
    },
  });
  tf.registerGradient({
    kernelName: "Ssl3dSparseInstanceNorm",
    inputsToSave: ["x", "mask", "gamma", "beta"],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [x, mask, gamma, beta, mean, rstd] = saved as [
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
      ];
      const grads = gradOutputs(
        "Ssl3dSparseInstanceNormGrad",
        { x, dy: first(dy), mask, gamma, beta, mean, rstd },
        { alpha: attrs.alpha as number },
        ["x", "gamma", "beta"],
      );
      // the mask is a constant: zero gradient (only built if something asks for it)
      return { ...grads, mask: () => tf.zerosLike(mask) };
    },
  });
  tf.registerGradient({
    kernelName: "Ssl3dAttention",
    inputsToSave: ["q", "k", "v"],
    outputsToSave: [true, true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, o, lse] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      return gradOutputs("Ssl3dAttentionGrad", { q, k, v, o, lse, dy: first(dy) }, { scale: attrs.scale as number }, [
        "q",
        "k",
        "v",
      ]);
    },
  });
  tf.registerGradient({
    kernelName: "Ssl3dLayerNorm",
    inputsToSave: ["x", "gamma"],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved) => {
      const [x, gamma, mean, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      return gradOutputs("Ssl3dLayerNormGrad", { x, dy: first(dy), gamma, mean, rstd }, {}, ["x", "gamma", "beta"]);
    },
  });
}
