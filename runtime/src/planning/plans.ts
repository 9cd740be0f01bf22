/**
 * The experiment plan `nnsslPlans.json` (nnssl `src/nnssl/experiment_planning/experiment_planners/plan.py`), with
 * upstream's field names so the file stays readable by nnssl tools. Validated with zod on load.
 */
import { z } from "zod";

export const CONFIGURATION_NAMES = ["onemmiso", "median", "noresample"] as const;
export type ConfigurationName = (typeof CONFIGURATION_NAMES)[number];
export const DEFAULT_PLANS_NAME = "nnsslPlans";

const vec3 = z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]);
const perm3 = z.tuple([z.number().int().min(0).max(2), z.number().int().min(0).max(2), z.number().int().min(0).max(2)]);
const resampleKwargs = z.object({
  is_seg: z.boolean(),
  order: z.union([z.literal(0), z.literal(1), z.literal(3)]),
  order_z: z.literal(0),
  force_separate_z: z.boolean().nullable(),
});

export const configurationPlanSchema = z.object({
  data_identifier: z.string().min(1),
  preprocessor_name: z.literal("DefaultPreprocessor"),
  spacing_style: z.enum(CONFIGURATION_NAMES),
  spacing: vec3.nullable(),
  normalization_schemes: z.array(z.literal("ZScoreNormalization")).min(1),
  use_mask_for_norm: z.array(z.boolean()).min(1),
  resampling_fn_data: z.literal("resample_data_or_seg_to_shape"),
  resampling_fn_data_kwargs: resampleKwargs,
  resampling_fn_mask: z.literal("resample_data_or_seg_to_shape"),
  resampling_fn_mask_kwargs: resampleKwargs,
  patch_size: z.array(z.number().int().positive()).nullable(),
});
export type ConfigurationPlan = z.infer<typeof configurationPlanSchema>;

export const planSchema = z.object({
  dataset_name: z.string().min(1),
  plans_name: z.string().min(1),
  original_median_spacing_after_transp: vec3,
  image_reader_writer: z.string(),
  transpose_forward: perm3,
  transpose_backward: perm3,
  configurations: z.record(z.string(), configurationPlanSchema),
  experiment_planner_used: z.string(),
});
export type Plan = z.infer<typeof planSchema>;

/** Target spacing of a configuration in the transposed array axes; `null` = keep the image's own spacing. */
export function targetSpacing(cfg: ConfigurationPlan): [number, number, number] | null {
  if (cfg.spacing_style === "noresample" || cfg.spacing === null) return null;
  return [cfg.spacing[0], cfg.spacing[1], cfg.spacing[2]];
}
