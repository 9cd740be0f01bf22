/**
 * Sub-crops of a loaded patch for the crop-based contrastive methods (VoCo spec 6.7, SimCLR 6.9): copying crops out
 * of a channels-last sample, box overlaps, the per-crop augmentation hook, the stop-gradient and the embedding
 * network check they share.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type { Network, Vec3 } from "../models/architecture.js";
import { customOp } from "../models/ops/custom.js";
import { isEmbeddingNetwork, type EmbeddingNetwork } from "../models/voco.js";
import type { Rng } from "../data/rng.js";

/** Copy the box [off, off + size) of sample `b` of a channels-last batch [B,X,Y,Z,C] into `out` at `outOffset`. */
export function copyCrop(src: Float32Array, dims: Vec3, channels: number, b: number, off: Vec3, size: Vec3, out: Float32Array, outOffset: number): void {
  const [X, Y, Z] = dims;
  const [sx, sy, sz] = size;
  if (off.some((o, i) => o < 0 || o + size[i]! > dims[i]!)) throw new RangeError(`crop at [${off.join(",")}] of size [${size.join(",")}] leaves the patch [${dims.join(",")}]`);
  const row = sz * channels;
  let o = outOffset;
  for (let x = 0; x < sx; x++) {
    for (let y = 0; y < sy; y++) {
      const start = ((((b * X + off[0] + x) * Y + off[1] + y) * Z) + off[2]) * channels;
      out.set(src.subarray(start, start + row), o);
      o += row;
    }
  }
}

/** Voxels shared by two boxes of the same size. */
export function boxOverlap(a: Vec3, b: Vec3, size: Vec3): number {
  let v = 1;
  for (let i = 0; i < 3; i++) v *= Math.max(0, Math.min(a[i]! + size[i]!, b[i]! + size[i]!) - Math.max(a[i]!, b[i]!));
  return v;
}

/**
 * Per-crop training augmentation (spec 6.7's list: noise, blur, brightness, contrast, low resolution, gammas, three
 * mirrors, rot90 in the (0,1) plane): one crop [X,Y,Z,C] in, the augmented crop of the same size out.
 */
export type CropAugment = (rng: Rng, crop: Float32Array, dims: Vec3, channels: number) => Float32Array;

/** Stop-gradient: the value passes, the gradient is zero (PyTorch's `.detach()`). */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return customOp([x], ([a]) => ({ value: tf.clone(a!), gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)] })) as T;
}

/** x / max(‖x‖₂, 1e-8) along the last axis (the normalisation inside `F.cosine_similarity`). */
export function l2Rows<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.div<T>(x, tf.maximum(tf.norm(x, "euclidean", -1, true), 1e-8)));
}

export function requireEmbeddingNetwork(net: Network, method: string): EmbeddingNetwork {
  if (!isEmbeddingNetwork(net)) throw new ConfigError(`${method} needs an embedding network (voco-resenc-l, voco-resenc-xs, voco-primus-m, voco-primus-xs), got ${net.config.name}`, { field: "architecture" });
  return net;
}

/** The method's network is the VoCo architecture on the requested encoder: `resenc-xs` → `voco-resenc-xs`, `primus-m` → `voco-primus-m`. */
export function vocoArchitectureFor(key: string, exists: (key: string) => boolean): string {
  if (key.startsWith("voco-")) return key;
  return exists(`voco-${key}`) ? `voco-${key}` : key;
}

export function vec3(v: readonly number[], field: string): Vec3 {
  if (v.length !== 3) throw new ConfigError(`needs 3 entries, got ${JSON.stringify(v)}`, { field });
  return [v[0]!, v[1]!, v[2]!];
}
