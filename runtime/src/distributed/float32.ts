/**
 * The float32 arithmetic of the collectives and the data-parallel step: the ring's reduction (`target += src`) and
 * the step's share weighting (`target = src · factor`). Each uses the native addon's vectorised kernel when the addon
 * is built (about 3× a JavaScript loop, which on a busy machine is most of what a reduction costs over a plain
 * transfer), else a JavaScript loop. Both paths round every result to the nearest float32 from the same float32
 * operands, so they give the same bits: ranks with and without the addon, and runs with either, agree exactly.
 */
import { nativeAddon, type NativeAddon } from "../models/backend/native/addon.js";
import { BinaryOp } from "../models/backend/native/kernels.generated.js";

let native: NativeAddon | null | undefined;
const shape = new Int32Array(1);
const one = new Int32Array([1]);
const factor32 = new Float32Array(1);

function addon(): NativeAddon | null {
  native ??= nativeAddon();
  return native;
}

/** `target += src` element-wise in JavaScript (src.length <= target.length). */
export function addIntoJs(target: Float32Array, src: Float32Array): void {
  const n = src.length;
  for (let i = 0; i < n; i++) target[i] = target[i]! + src[i]!;
}

/**
 * `target += src` element-wise (src.length <= target.length): native float32 add when the addon is built, else the
 * loop. The ring adds reads of at most 1 MiB, below the size at which the addon would start threads.
 */
export function addInto(target: Float32Array, src: Float32Array): void {
  const nat = addon();
  if (nat === null || src.length === 0) {
    addIntoJs(target, src);
    return;
  }
  shape[0] = src.length;
  const t = target.length === src.length ? target : target.subarray(0, src.length);
  nat.binary(BinaryOp.Add, t, shape, src, shape, t);
}

/**
 * `target[i] = src[i] · factor` in JavaScript (src.length <= target.length). `factor` is rounded to float32 first:
 * the product of two float32 values is exact in a double, so storing it rounds once, as a float32 multiply does.
 */
export function scaleIntoJs(target: Float32Array, src: Float32Array, factor: number): void {
  const f = Math.fround(factor);
  const n = src.length;
  for (let i = 0; i < n; i++) target[i] = src[i]! * f;
}

/** `target[i] = src[i] · fround(factor)`: native float32 multiply when the addon is built, else the loop. */
export function scaleInto(target: Float32Array, src: Float32Array, factor: number): void {
  const nat = addon();
  if (nat === null || src.length === 0) {
    scaleIntoJs(target, src, factor);
    return;
  }
  shape[0] = src.length;
  factor32[0] = factor;
  const t = target.length === src.length ? target : target.subarray(0, src.length);
  nat.binary(BinaryOp.Multiply, src, shape, factor32, one, t);
}
