/**
 * Plans files, and the one loader every reader of them uses. The experiment plan `<Dataset>/nnsslPlans.json` keeps
 * upstream's field names (`src/nnssl/experiment_planning/experiment_planners/default_experiment_planner.py`) so the
 * file stays readable by nnssl tools. Two schemas, one loader:
 *
 * - `planSchema`: the plan ssl3d's planner writes, every field preprocessing needs (`readPlansFile`);
 * - `plansDocumentSchema`: any nnssl / nnU-Net plans document, of which a reader needs only `configurations` (training,
 *   which accepts plans written by upstream; `ssl3d export --plans`; the run report's copy in the results folder).
 *   Its other fields are kept as they are (`readPlansDocument`).
 *
 * Errors are one line naming the file and the JSON field (docs/limits-and-safety.md); a missing file names the
 * command that writes it. Leaf module (zod, node:fs): no TensorFlow, no stage code.
 */
import { readRegularFileSync } from "../io/regular-file.js";
import { LIMITS, limit } from "./limits.js";
import { z } from "zod";
import { ConfigError, EnvironmentError, Ssl3dError } from "../errors.js";
import { parseStrictJson } from "../io/strict-json.js";
import { formatJsonPath } from "./collection.js";

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

/** Any nnssl / nnU-Net plans document: an object whose `configurations` is an object of objects. */
export const plansDocumentSchema = z.looseObject({
  configurations: z.record(z.string(), z.looseObject({})),
});
export type PlansDocument = z.infer<typeof plansDocumentSchema>;

function check<T>(schema: z.ZodType<T>, doc: unknown, file: string): T {
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  throw new ConfigError(issue.message.replace(/^Invalid input: /, ""), { file, field: formatJsonPath(issue.path) });
}

/** A parsed document checked as ssl3d's plan; ConfigError naming `file` and the field. */
export function parsePlans(doc: unknown, file: string): Plan {
  return check(planSchema, doc, file);
}

/** A parsed document checked as an nnssl plans document. */
export function parsePlansDocument(doc: unknown, file: string): PlansDocument {
  return check(plansDocumentSchema, doc, file);
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readRegularFileSync(file, {
      what: "plans file",
      maxBytes: limit("documentBytes"),
      maxBytesEnv: LIMITS.documentBytes.env,
    }).toString("utf8");
  } catch (err) {
    if (err instanceof Ssl3dError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new EnvironmentError(
        "plans file not found; run `ssl3d plan-and-preprocess -d ...` (or `ssl3d plan`) first",
        { file },
      );
    throw new ConfigError(`unreadable plans file (${code ?? (err as Error).message})`, { file });
  }
  return parseStrictJson(text, { file, pythonSpecials: true });
}

/** Read `file` as the plan ssl3d's planner writes (preprocessing needs every field). */
export function readPlansFile(file: string): Plan {
  return parsePlans(readJson(file), file);
}

/** Read `file` as any nnssl / nnU-Net plans document. */
export function readPlansDocument(file: string): PlansDocument {
  return parsePlansDocument(readJson(file), file);
}

/** One configuration of a plans document; ConfigError naming the file and `configurations.<name>` when absent. */
export function planConfiguration<C>(
  plans: { readonly configurations: Readonly<Record<string, C>> },
  name: string,
  file: string,
): C {
  const cfg = Object.hasOwn(plans.configurations, name) ? plans.configurations[name] : undefined;
  if (cfg === undefined) {
    throw new ConfigError(
      `configuration "${name}" not in the plan (has: ${Object.keys(plans.configurations).join(", ")})`,
      { file, field: `configurations.${name}` },
    );
  }
  return cfg;
}
