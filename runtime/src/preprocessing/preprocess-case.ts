/**
 * One image through nnssl's default preprocessor (`preprocess_case` in
 * `src/nnssl/preprocessing/preprocessors/default_preprocessor.py`): transpose -> crop to non-zero -> target shape ->
 * z-score (before resampling) -> resample image (cubic) and masks (linear, per label). Pure: arrays in, arrays out, on
 * the C-order "array axes" view (C, a0, a1, a2) that nnU-Net's SimpleITK reader produces.
 */
import { limit } from "../config/limits.js";
import { DataError } from "../errors.js";
import type { ConfigurationPlan, Plan } from "../config/plans.js";
import { targetSpacing } from "../config/plans.js";
import { bboxOf, bboxShape, cropArray, markOutside, nonzeroMask, type Bbox } from "./crop.js";
import { zscoreInPlace } from "./normalize.js";
import { computeNewShape, resampleToShape, type Shape3 } from "./resample.js";
import { permuteShape, transposeSpatial } from "./transpose.js";

export interface ArrayVolume {
  /** C-order (C, a0, a1, a2). */
  readonly data: Float32Array;
  readonly channels: number;
  readonly shape: Shape3;
}

export interface CaseInput extends ArrayVolume {
  /** Array-axis spacing (a0, a1, a2), mm. */
  readonly spacing: Shape3;
}

export interface CaseMasks {
  readonly anon?: ArrayVolume | undefined;
  readonly anat?: ArrayVolume | undefined;
}

export interface CaseProperties {
  /** Spacing of the image as read (array axes, before the transpose): upstream's `spacing`. */
  spacing: [number, number, number];
  spacing_after_transpose: [number, number, number];
  target_spacing: [number, number, number];
  shape_before_cropping: [number, number, number];
  bbox_used_for_cropping: Bbox;
  shape_after_cropping_and_before_resampling: [number, number, number];
  shape_after_resampling: [number, number, number];
  separate_z: boolean;
  normalization: { mean: number[]; std: number[] };
}

export interface CaseResult {
  readonly data: Float32Array;
  readonly channels: number;
  readonly shape: [number, number, number];
  readonly anon?: Float32Array | undefined;
  readonly anat?: Float32Array | undefined;
  readonly properties: CaseProperties;
}

function checkFinite(v: ArrayVolume, what: string): void {
  for (let i = 0; i < v.data.length; i++) {
    if (!Number.isFinite(v.data[i]!)) throw new DataError(`${what} contains NaN or Inf (voxel ${i})`);
  }
}

/** The resampled image must be non-empty and, like the image as read, within `SSL3D_MAX_VOXELS` (before allocating). */
function checkResampledSize(from: Shape3, to: Shape3, channels: number, spacing: Shape3, target: Shape3): void {
  const what = `resampling [${from.join(", ")}] at spacing [${spacing.join(", ")}] to [${target.join(", ")}] mm gives [${to.join(", ")}]`;
  if (to.some((n) => n < 1)) throw new DataError(`${what}: an empty image (near-zero spacing?)`, { field: "pixdim" });
  const voxels = to[0] * to[1] * to[2] * channels;
  const max = limit("voxels");
  if (voxels > max)
    throw new DataError(
      `${what} x ${channels} channel(s) = ${voxels} voxels, above the limit of ${max} (SSL3D_MAX_VOXELS)`,
      { field: "pixdim" },
    );
}

/**
 * Note: `img.data` may be normalised in place (when the crop keeps everything and no transpose is needed); pass a
 * copy if you still need the input afterwards.
 */
export function preprocessCase(img: CaseInput, masks: CaseMasks, plan: Plan, cfg: ConfigurationPlan): CaseResult {
  checkFinite(img, "image");
  if (img.data.length !== img.channels * img.shape[0] * img.shape[1] * img.shape[2])
    throw new DataError("image data length does not match its shape");
  for (const [name, m] of Object.entries(masks) as [string, ArrayVolume | undefined][]) {
    if (m === undefined) continue;
    if (m.shape[0] !== img.shape[0] || m.shape[1] !== img.shape[1] || m.shape[2] !== img.shape[2]) {
      throw new DataError(
        `${name} mask shape [${m.shape.join(",")}] does not match the image shape [${img.shape.join(",")}]`,
      );
    }
    checkFinite(m, `${name} mask`);
  }
  const perm = plan.transpose_forward;
  const t = transposeSpatial(img.data, img.channels, img.shape, perm);
  const spacingT = permuteShape(img.spacing, perm);
  const tMask = (m: ArrayVolume | undefined): ArrayVolume | undefined =>
    m === undefined ? undefined : { ...transposeSpatial(m.data, m.channels, m.shape, perm), channels: m.channels };

  let anon = tMask(masks.anon);
  let anat = tMask(masks.anat);
  const nz = nonzeroMask(t.data, img.channels, t.shape);
  const bbox = bboxOf(nz, t.shape);
  if (bbox === null) throw new DataError("image is zero everywhere (nothing left after cropping to non-zero)");
  const cshape = bboxShape(bbox);
  const full = cshape[0] === t.shape[0] && cshape[1] === t.shape[1] && cshape[2] === t.shape[2];
  // no copy when nothing is cropped away: the input is consumed (normalised in place) to keep memory bounded
  let data = full ? t.data : cropArray(t.data, img.channels, t.shape, bbox);
  const nzCrop = cropArray(nz, 1, t.shape, bbox);
  const cropMask = (m: ArrayVolume | undefined): ArrayVolume | undefined => {
    if (m === undefined) return undefined;
    const d = cropArray(m.data, m.channels, m.shape, bbox);
    markOutside(d, m.channels, nzCrop, -1);
    return { data: d, channels: m.channels, shape: cshape };
  };
  anon = cropMask(anon);
  anat = cropMask(anat);

  const target = targetSpacing(cfg) ?? spacingT;
  const newShape = cfg.spacing_style === "noresample" ? cshape : computeNewShape(cshape, spacingT, target);
  checkResampledSize(cshape, newShape, img.channels, spacingT, target);
  const norm = zscoreInPlace(data, img.channels);

  const dk = cfg.resampling_fn_data_kwargs;
  const mk = cfg.resampling_fn_mask_kwargs;
  const sep = dk.force_separate_z;
  data = resampleToShape(data, img.channels, cshape, newShape, spacingT, target, {
    isSeg: dk.is_seg,
    order: dk.order,
    forceSeparateZ: sep,
  });
  const rm = (m: ArrayVolume | undefined): Float32Array | undefined =>
    m === undefined
      ? undefined
      : resampleToShape(m.data, m.channels, cshape, newShape, spacingT, target, {
          isSeg: mk.is_seg,
          order: mk.order,
          forceSeparateZ: mk.force_separate_z,
        });
  const anonOut = rm(anon);
  const anatOut = rm(anat);
  const aniso = (s: Shape3): boolean => Math.max(...s) / Math.min(...s) > 3;
  return {
    data,
    channels: img.channels,
    shape: newShape,
    anon: anonOut,
    anat: anatOut,
    properties: {
      spacing: [img.spacing[0], img.spacing[1], img.spacing[2]],
      spacing_after_transpose: spacingT,
      target_spacing: [target[0], target[1], target[2]],
      shape_before_cropping: [t.shape[0], t.shape[1], t.shape[2]],
      bbox_used_for_cropping: bbox,
      shape_after_cropping_and_before_resampling: cshape,
      shape_after_resampling: newShape,
      separate_z:
        (aniso(spacingT) || aniso(target)) &&
        (cshape[0] !== newShape[0] || cshape[1] !== newShape[1] || cshape[2] !== newShape[2]),
      normalization: norm,
    },
  };
}
