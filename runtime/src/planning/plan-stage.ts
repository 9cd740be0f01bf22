/** `ssl3d plan`: fingerprint -> `nnsslPlans.json` (overwritten), and loading a plan back (validated). */
import { promises as fs } from "node:fs";
import type { Env } from "../config/env.js";
import { ConfigError } from "../errors.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { checkPlansName, lockDataset, plansFile } from "../preprocessing/layout.js";
import { formatJsonPath } from "../config/collection.js";
import { preprocessedDatasetDir, readFingerprint } from "./fingerprint.js";
import { planExperiment } from "./plan-experiment.js";
import { DEFAULT_PLANS_NAME, planSchema, type Plan } from "./plans.js";

export async function runPlan(datasetName: string, opts: { plansName?: string; env?: Env } = {}): Promise<{ plan: Plan; file: string }> {
  const env = opts.env ?? process.env;
  const plansName = checkPlansName(opts.plansName ?? DEFAULT_PLANS_NAME);
  const fp = await readFingerprint(datasetName, env);
  const plan = planExperiment(datasetName, fp.spacings, plansName);
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

export async function loadPlan(datasetName: string, plansName = DEFAULT_PLANS_NAME, env: Env = process.env): Promise<{ plan: Plan; file: string }> {
  const file = plansFile(preprocessedDatasetDir(datasetName, env), plansName);
  let doc: unknown;
  try {
    doc = JSON.parse(await fs.readFile(file, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError("no plans file: run `ssl3d plan -d ...` first", { file });
    throw new ConfigError(`unreadable plans file: ${(err as Error).message}`, { file });
  }
  const r = planSchema.safeParse(doc);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ConfigError(issue.message, { file, field: formatJsonPath(issue.path) });
  }
  return { plan: r.data, file };
}
