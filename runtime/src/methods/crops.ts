/**
 * Sub-crops of a loaded patch for the crop-based contrastive methods (nnssl's VoCo and SimCLR trainers): copying crops
 * out of a channels-last sample, box overlaps, the per-crop augmentation hook, the stop-gradient and the embedding
 * network check they share.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type { Network } from "../models/architecture.js";
import { customOp } from "../models/ops/custom.js";
import { isEmbeddingNetwork, type EmbeddingNetwork } from "../models/voco.js";
export { boxOverlap, copyCrop, vec3, type CropAugment } from "../data/contrastive-crops.js";

/** Stop-gradient: the value passes, the gradient is zero (PyTorch's `.detach()`). */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return customOp([x], ([a]) => ({ value: tf.clone(a!), gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)] })) as T;
}

/** x / max(‖x‖₂, 1e-8) along the last axis (the normalisation inside `F.cosine_similarity`). */
export function l2Rows<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.div<T>(x, tf.maximum(tf.norm(x, "euclidean", -1, true), 1e-8)));
}

export function requireEmbeddingNetwork(net: Network, method: string): EmbeddingNetwork {
  if (!isEmbeddingNetwork(net))
    throw new ConfigError(
      `${method} needs an embedding network (voco-resenc-l, voco-resenc-xs, voco-primus-m, voco-primus-xs), got ${net.config.name}`,
      { field: "architecture" },
    );
  return net;
}

/** The method's network is the VoCo architecture on the requested encoder: `resenc-xs` → `voco-resenc-xs`, `primus-m` → `voco-primus-m`. */
export function vocoArchitectureFor(key: string, exists: (key: string) => boolean): string {
  if (key.startsWith("voco-")) return key;
  return exists(`voco-${key}`) ? `voco-${key}` : key;
}
