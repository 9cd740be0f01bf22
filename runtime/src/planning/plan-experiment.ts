/**
 * `ExperimentPlanner` (nnssl `src/nnssl/experiment_planning/experiment_planners/default_experiment_planner.py`): median
 * spacing of the fingerprint, transpose so the coarsest axis comes first, and the three fixed configurations
 * `onemmiso`, `median`, `noresample`.
 */
import { ConfigError } from "../errors.js";
import {
  CONFIGURATION_NAMES,
  DEFAULT_PLANS_NAME,
  type ConfigurationName,
  type ConfigurationPlan,
  type Plan,
} from "../config/plans.js";

/** numpy `percentile(x, 50)` (linear interpolation) = median. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("median of nothing");
  const s = [...values].sort((a, b) => a - b);
  const mid = (s.length - 1) / 2;
  const lo = Math.floor(mid);
  const hi = Math.ceil(mid);
  return s[lo]! + (s[hi]! - s[lo]!) * (mid - lo);
}

export function medianSpacing(spacings: readonly (readonly number[])[]): [number, number, number] {
  return [0, 1, 2].map((i) => median(spacings.map((s) => s[i]!))) as [number, number, number];
}

/** `[argmax(spacing)] + remaining axes in order`, and its inverse. */
export function transposeFor(spacing: readonly number[]): {
  forward: [number, number, number];
  backward: [number, number, number];
} {
  let mx = 0;
  for (let i = 1; i < 3; i++) if (spacing[i]! > spacing[mx]!) mx = i;
  const forward = [mx, ...[0, 1, 2].filter((i) => i !== mx)] as [number, number, number];
  const backward = [0, 1, 2].map((i) => forward.indexOf(i)) as [number, number, number];
  return { forward, backward };
}

function configuration(
  name: ConfigurationName,
  plansName: string,
  medianTransposed: [number, number, number],
): ConfigurationPlan {
  return {
    data_identifier: `${plansName}_${name}`,
    preprocessor_name: "DefaultPreprocessor",
    spacing_style: name,
    spacing: name === "onemmiso" ? [1, 1, 1] : name === "median" ? medianTransposed : null,
    normalization_schemes: ["ZScoreNormalization"],
    use_mask_for_norm: [false],
    resampling_fn_data: "resample_data_or_seg_to_shape",
    resampling_fn_data_kwargs: { is_seg: false, order: 3, order_z: 0, force_separate_z: null },
    resampling_fn_mask: "resample_data_or_seg_to_shape",
    resampling_fn_mask_kwargs: { is_seg: true, order: 1, order_z: 0, force_separate_z: null },
    patch_size: null,
  };
}

export function planExperiment(
  datasetName: string,
  spacings: readonly (readonly number[])[],
  plansName = DEFAULT_PLANS_NAME,
): Plan {
  if (spacings.length === 0)
    throw new ConfigError(`dataset ${datasetName}: the fingerprint lists no images; nothing to plan`);
  const med = medianSpacing(spacings);
  const { forward, backward } = transposeFor(med);
  const medT = [med[forward[0]]!, med[forward[1]]!, med[forward[2]]!] as [number, number, number];
  const configurations: Record<string, ConfigurationPlan> = {};
  for (const name of CONFIGURATION_NAMES) configurations[name] = configuration(name, plansName, medT);
  return {
    dataset_name: datasetName,
    plans_name: plansName,
    original_median_spacing_after_transp: medT,
    image_reader_writer: "SimpleITKIO",
    transpose_forward: forward,
    transpose_backward: backward,
    configurations,
    experiment_planner_used: "ExperimentPlanner",
  };
}
