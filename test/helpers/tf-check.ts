/** Gradient-check helpers for op tests: value+gradients of sum(f(x)·r), finite differences, backend switching. */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../../runtime/src/models/backend/select.js";

export interface Input {
  readonly shape: number[];
  readonly data: Float32Array;
}

let wasmReady = false;
let nodeReady = false;

/** "node": TensorFlow on the CPU through @tensorflow/tfjs-node (tfjs backend "tensorflow"; built by setup:tensorflow). */
export async function useBackend(name: "cpu" | "wasm" | "node"): Promise<void> {
  if (name === "wasm" && !wasmReady) {
    await selectBackend("wasm");
    wasmReady = true;
  }
  if (name === "node" && !nodeReady) {
    await selectBackend("node");
    nodeReady = true;
  }
  const tfName = name === "node" ? "tensorflow" : name;
  if (!(await tf.setBackend(tfName))) throw new Error(`backend ${name} unavailable`);
  await tf.ready();
}

export function seeded(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return a;
}

export function input(shape: number[], seed: number, scale = 1): Input {
  return {
    shape,
    data: seeded(
      shape.reduce((a, b) => a * b, 1),
      seed,
      scale,
    ),
  };
}

export interface ValueGrads {
  readonly value: Float32Array;
  readonly shape: number[];
  readonly grads: Float32Array[];
}

/** Value of f and gradients of sum(f·r) w.r.t. every input, r a fixed pseudo-random weighting. */
export function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: readonly Input[]): ValueGrads {
  return tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.data, i.shape));
    const y0 = f(...xs);
    const r = tf.tensor(seeded(y0.size, 777), y0.shape);
    const { grads } = tf.valueAndGrads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(...a), r)))(xs);
    return {
      value: y0.dataSync() as Float32Array,
      shape: y0.shape,
      grads: grads.map((g) => g.dataSync() as Float32Array),
    };
  });
}

/** Central finite difference of sum(f·r) w.r.t. input j at flat index idx. */
export function finiteDiff(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: readonly Input[],
  j: number,
  idx: number,
  eps = 1e-2,
): number {
  const loss = (delta: number): number =>
    tf.tidy(() => {
      const xs = inputs.map((inp, k) => {
        if (k !== j) return tf.tensor(inp.data, inp.shape);
        const d = Float64Array.from(inp.data);
        d[idx] = d[idx]! + delta;
        return tf.tensor(Float32Array.from(d), inp.shape);
      });
      const y = f(...xs);
      const r = tf.tensor(seeded(y.size, 777), y.shape);
      return tf.sum(tf.mul(y, r)).dataSync()[0]!;
    });
  const x0 = inputs[j]!.data[idx]!;
  const hp = Math.fround(x0 + eps) - x0;
  const hm = x0 - Math.fround(x0 - eps);
  return (loss(eps) - loss(-eps)) / (hp + hm);
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Relative max difference: max|a-b| / max(max|b|, 1e-6). */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(maxAbs(b), 1e-6);
}
