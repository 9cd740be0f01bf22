/** `ssl3d plan`: fingerprint -> `nnsslPlans.json` (overwritten), and loading a plan back (validated). */
import { processEnv, type Env } from "../config/settings.js";
import { DataError } from "../errors.js";
import type { FingerprintEntry } from "../preprocessing/tasks.js";
import { computeNewShape } from "../preprocessing/resample.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { checkPlansName, lockDataset, plansFile, preprocessedDatasetDir } from "../config/layout.js";
import { readFingerprint } from "./fingerprint.js";
import { planExperiment } from "./plan-experiment.js";
import { DEFAULT_PLANS_NAME, targetSpacing, type Plan } from "../config/plans.js";

/**
 * Dataset-level checks that need every image, done before anything is preprocessed: one channel count for the
 * whole dataset (training batches stack images), and no image that a configuration would resample to an empty
 * array. Errors name the odd image.
 */
export function checkPlanAgainstImages(plan: Plan, images: readonly FingerprintEntry[]): void {
  const counts = new Map<number, number>();
  for (const e of images) counts.set(e.channels, (counts.get(e.channels) ?? 0) + 1);
  if (counts.size > 1) {
    const common = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
    const odd = images.find((e) => e.channels !== common)!;
    const summary = [...counts].map(([c, n]) => `${n} with ${c}`).join(", ");
    throw new DataError(
      `has ${odd.channels} channel(s), the other images of dataset ${plan.dataset_name} have ${common} (${summary}); one dataset needs one channel count`,
      { file: odd.image_path, field: "dim[4]" },
    );
  }
  const perm = plan.transpose_forward;
  for (const e of images) {
    const shapeT = [e.shape[perm[0]]!, e.shape[perm[1]]!, e.shape[perm[2]]!] as const;
    const spacingT = [e.spacing[perm[0]]!, e.spacing[perm[1]]!, e.spacing[perm[2]]!] as const;
    for (const [name, cfg] of Object.entries(plan.configurations)) {
      const target = targetSpacing(cfg);
      if (target === null) continue;
      const out = computeNewShape(shapeT, spacingT, target);
      if (out.some((n) => n < 1)) {
        throw new DataError(
          `configuration ${name} resamples it from spacing [${spacingT.join(", ")}] to [${target.join(", ")}] mm: shape [${out.join(", ")}] is empty`,
          { file: e.image_path, field: "pixdim" },
        );
      }
    }
  }
}

export async function runPlan(
  datasetName: string,
  opts: { plansName?: string; env?: Env } = {},
): Promise<{ plan: Plan; file: string }> {
  const env = opts.env ?? processEnv();
  const plansName = checkPlansName(opts.plansName ?? DEFAULT_PLANS_NAME);
  const fp = await readFingerprint(datasetName, env);
  const plan = planExperiment(datasetName, fp.spacings, plansName);
  checkPlanAgainstImages(plan, fp.images);
  const dir = preprocessedDatasetDir(datasetName, env);
  const file = plansFile(dir, plan.plans_name);
  const lock = lockDataset(dir, "ssl3d plan");
  try {
    await writeJsonAtomic(file, plan, 4, { root: dir });
  } finally {
    lock.release();
  }
  return { plan, file };
}
