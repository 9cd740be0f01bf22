/**
 * The folder layout under the three roots: upstream's names, every user-given name a plain path component, and every
 * path below its root.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, EnvironmentError } from "../errors.js";
import {
  CHECKPOINT_SEARCH_ORDER,
  checkpointFile,
  collectionCopyFile,
  collectionFile,
  dataIdentifierDir,
  failedImagesFile,
  fingerprintFile,
  foldDir,
  foldFile,
  plansFile,
  preprocessedDatasetDir,
  rawDatasetDir,
  resultsFile,
  resultsRunDir,
  splitsFile,
  validImagesFile,
} from "./layout.js";

const env = { nnssl_raw: "/r/raw", nnssl_preprocessed: "/r/pre/", nnssl_results: "/r/res" };

test("nnssl_raw and nnssl_preprocessed", () => {
  assert.equal(rawDatasetDir("Dataset001_X", env), "/r/raw/Dataset001_X");
  assert.equal(collectionFile("Dataset001_X", env), "/r/raw/Dataset001_X/pretrain_data.json");
  const pp = preprocessedDatasetDir("Dataset001_X", env);
  assert.equal(pp, "/r/pre/Dataset001_X");
  assert.equal(fingerprintFile(pp), join(pp, "dataset_fingerprint.json"));
  assert.equal(plansFile(pp, "nnsslPlans"), join(pp, "nnsslPlans.json"));
  assert.equal(dataIdentifierDir(pp, "nnsslPlans", "onemmiso"), join(pp, "nnsslPlans_onemmiso"));
  assert.equal(collectionCopyFile(pp, "onemmiso"), join(pp, "pretrain_data__onemmiso.json"));
  assert.equal(splitsFile(pp), join(pp, "splits_final.json"));
  assert.equal(validImagesFile(pp), join(pp, "valid_imgs.json"));
  assert.equal(validImagesFile(pp, { part: 1, total: 3 }), join(pp, "valid_imgs__1_of_3.json"));
  assert.equal(failedImagesFile(pp, { part: 0, total: 1 }), join(pp, "failed_imgs.json"));
  assert.equal(
    preprocessedDatasetDir("Dataset001_X", { ...env, rocket_preprocessed: "/rocket" }),
    "/rocket/Dataset001_X",
  );
});

test("nnssl_results: <Trainer>__<Plans>__<Config>/fold_all, checkpoints", () => {
  const run = resultsRunDir(env.nnssl_results, "Dataset001_X", "BaseMAETrainer", "nnsslPlans", "onemmiso");
  assert.equal(run, "/r/res/Dataset001_X/BaseMAETrainer__nnsslPlans__onemmiso");
  assert.equal(resultsFile(run, "plans"), join(run, "plans.json"));
  assert.equal(resultsFile(run, "adaptationPlan"), join(run, "adaptation_plan.json"));
  const fold = foldDir(run);
  assert.equal(fold, join(run, "fold_all"));
  assert.equal(foldFile(fold, "runInfo"), join(fold, "run_info.json"));
  assert.equal(foldFile(fold, "trainingLog"), join(fold, "training_log.jsonl"));
  assert.equal(foldFile(fold, "progress"), join(fold, "progress.png"));
  assert.equal(checkpointFile(fold, "latest"), join(fold, "checkpoint_latest.safetensors"));
  assert.deepEqual(CHECKPOINT_SEARCH_ORDER, [
    "checkpoint_final.safetensors",
    "checkpoint_latest.safetensors",
    "checkpoint_best.safetensors",
    "network.safetensors",
  ]);
});

test("hostile names are refused with the field named; unset roots name the variable", () => {
  for (const bad of ["..", "a/b", "", "x\u0000"]) {
    assert.throws(
      () => preprocessedDatasetDir(bad, env),
      (e: unknown) => e instanceof ConfigError && e.field === "dataset",
      JSON.stringify(bad),
    );
    assert.throws(() => rawDatasetDir(bad, env), ConfigError);
    assert.throws(
      () => plansFile("/r/pre/D", bad),
      (e: unknown) => e instanceof ConfigError && e.field === "plans name",
    );
    assert.throws(
      () => dataIdentifierDir("/r/pre/D", "nnsslPlans", bad),
      (e: unknown) => e instanceof ConfigError && e.field === "configuration",
    );
    if (bad !== "") assert.throws(() => resultsRunDir(env.nnssl_results, bad, "BaseMAETrainer", "p", "c"), ConfigError);
  }
  for (const bad of ["a/b", "x\u0000", "a\\b"])
    assert.throws(
      () => resultsRunDir(env.nnssl_results, "Dataset001_X", bad, "p", "c"),
      (e: unknown) => e instanceof ConfigError && e.field === "trainer, plans and configuration names",
    );
  assert.throws(
    () => collectionFile("Dataset001_X", {}),
    (e: unknown) => e instanceof EnvironmentError && /nnssl_raw is not set/.test(e.message),
  );
});
