/**
 * EvaSimMIM, nnssl's SimMIM pre-training wrapper around Primus (`src/nnssl/architectures/evaSimMIM_module.py`): patch
 * embedding → tokens in `(w h d)` order (array axes 0,1,2 row-major, the downstream Primus order) → masked tokens
 * replaced by a learnable `mask_token` (`t · m + mask_token · (1 − m)`) → + pos_embed → the full-length Primus encoder
 * (no token dropping) → PatchDecode to the output channels. No decoder transformer.
 *
 * State dict = upstream `EvaSimMIM`: `down_projection.proj.*` (He init, a=0.01), `eva.*`, `up_projection.decode.*`
 * (PyTorch default init), `mask_token` (N(0, 1e-6)) — the same declarations as EvaMAE without a decoder, so this
 * reuses the Primus implementation with `decoderDepth: 0`.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type {
  ArchitectureEntry,
  CreateNetworkOptions,
  ForwardContext,
  Network,
  TokenMaskNetwork,
} from "./architecture.js";
import { countDecls } from "./params.js";
import { declarePrimus, Primus, PRIMUS_PRESETS, resolvePrimus, type PrimusPreset } from "./primus.js";
import { Rng } from "./rng.js";

function simmimPreset(size: "m" | "xs"): PrimusPreset {
  const base = PRIMUS_PRESETS.find((p) => p.key === `primus-${size}`);
  if (base === undefined) throw new Error(`no primus-${size} preset`);
  return {
    ...base,
    key: `eva-simmim-${size}`,
    description: `EvaSimMIM pre-training wrapper around ${size === "xs" ? "primus-xs" : "Primus-M"} (mask token before the encoder, no decoder transformer)`,
    hyper: { ...base.hyper, decoderDepth: 0, tokenOrder: "whd" },
    mae: true,
  };
}

export const SIMMIM_PRESETS: readonly PrimusPreset[] = [simmimPreset("m"), simmimPreset("xs")];

export class EvaSimMim extends Primus implements TokenMaskNetwork {
  forwardTokenMask(x: tf.Tensor5D, mask: tf.Tensor2D, ctx: ForwardContext): tf.Tensor5D {
    const bsz = x.shape[0];
    const t = this.tokenGrid[0] * this.tokenGrid[1] * this.tokenGrid[2];
    if (mask.shape[0] !== bsz || mask.shape[1] !== t)
      throw new ConfigError(`token mask [${mask.shape.join(",")}] does not match batch ${bsz} × ${t} tokens`, {
        field: "mask",
      });
    return tf.tidy(() => {
      const tok = this.embed(x);
      const m = tf.reshape<tf.Rank.R3>(mask, [bsz, t, 1]);
      const token = this.p<tf.Rank.R3>("mask_token");
      const masked = tf.add<tf.Tensor3D>(tf.mul(tok, m), tf.mul(token, tf.sub(1, m)));
      return this.decode(this.eva(masked, "eva", this.h.depth, ctx, new Rng(ctx.seed ?? 0)));
    });
  }
}

function checked(p: PrimusPreset, opts: CreateNetworkOptions): CreateNetworkOptions {
  for (const k of ["decoderDepth", "tokenOrder"] as const) {
    if (opts[k] !== undefined && opts[k] !== p.hyper[k])
      throw new ConfigError(
        `${p.key} has ${k} ${JSON.stringify(p.hyper[k])} (EvaSimMIM has no decoder transformer and flattens tokens (w h d))`,
        { field: k },
      );
  }
  return opts;
}

export function simmimEntry(p: PrimusPreset): ArchitectureEntry {
  return {
    key: p.key,
    family: "vit",
    description: p.description,
    create: (opts): Network => new EvaSimMim(p, checked(p, opts)),
    countParams: (opts) => countDecls(declarePrimus(resolvePrimus(p, checked(p, opts)), true)),
  };
}
