import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConfigError, EnvironmentError } from "../errors.js";
import {
  formatDatasetName,
  optionalRoot,
  parseDatasetName,
  requireRoot,
  resolveDatasetName,
  setEnvWarningSink,
} from "./env.js";

const tmp = mkdtempSync(join(tmpdir(), "ssl3d-env-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

test("requireRoot names the unset variable and what it is for", () => {
  assert.throws(
    () => requireRoot("nnssl_results", {}),
    (e: unknown) =>
      e instanceof EnvironmentError && /nnssl_results is not set/.test(e.message) && /training outputs/.test(e.message),
  );
  assert.equal(requireRoot("nnssl_raw", { nnssl_raw: "/data/raw/" }), "/data/raw");
  assert.equal(optionalRoot("nnssl_raw", { nnssl_raw: "" }), undefined);
});

test("rocket_preprocessed overrides nnssl_preprocessed with one warning", () => {
  const warnings: string[] = [];
  setEnvWarningSink((m) => warnings.push(m));
  const env = { nnssl_preprocessed: "/a", rocket_preprocessed: "/b/" };
  assert.equal(requireRoot("nnssl_preprocessed", env), "/b");
  assert.equal(requireRoot("nnssl_preprocessed", env), "/b");
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /rocket_preprocessed/);
  assert.equal(requireRoot("nnssl_preprocessed", { nnssl_preprocessed: "/a" }), "/a");
});

test("dataset names format and parse back", () => {
  assert.equal(formatDatasetName(1, "Demo"), "Dataset001_Demo");
  assert.equal(formatDatasetName(745, "OpenMind"), "Dataset745_OpenMind");
  assert.deepEqual(parseDatasetName("Dataset745_OpenMind"), { id: 745, name: "OpenMind", full: "Dataset745_OpenMind" });
  assert.deepEqual(parseDatasetName("Dataset001_A_B"), { id: 1, name: "A_B", full: "Dataset001_A_B" });
  assert.equal(parseDatasetName("Dataset1_X"), undefined);
  assert.equal(parseDatasetName("Task001_X"), undefined);
  assert.throws(() => formatDatasetName(1, "bad/name"), ConfigError);
  assert.throws(() => formatDatasetName(-1, "X"), ConfigError);
});

test("an integer ID resolves to the one matching folder across the three roots", () => {
  const raw = join(tmp, "raw"),
    pre = join(tmp, "pre"),
    res = join(tmp, "res");
  for (const d of [raw, pre, res]) mkdirSync(d, { recursive: true });
  mkdirSync(join(raw, "Dataset001_Alpha"));
  mkdirSync(join(pre, "Dataset001_Alpha"));
  mkdirSync(join(pre, "Dataset002_Beta"));
  mkdirSync(join(raw, "Dataset003_One"));
  mkdirSync(join(res, "Dataset003_Two"));
  writeFileSync(join(raw, "Dataset004_File"), "not a dir");
  const env = { nnssl_raw: raw, nnssl_preprocessed: pre, nnssl_results: res };
  assert.equal(resolveDatasetName("1", env), "Dataset001_Alpha");
  assert.equal(resolveDatasetName("002", env), "Dataset002_Beta");
  assert.equal(resolveDatasetName("Dataset009_Given", env), "Dataset009_Given");
  assert.throws(
    () => resolveDatasetName("3", env),
    (e: unknown) => e instanceof ConfigError && /ambiguous: Dataset003_One, Dataset003_Two/.test(e.message),
  );
  assert.throws(
    () => resolveDatasetName("4", env),
    (e: unknown) => e instanceof ConfigError && /no dataset with ID 4/.test(e.message),
  );
  assert.throws(() => resolveDatasetName("x1", env), ConfigError);
  assert.throws(() => resolveDatasetName("1", {}), EnvironmentError);
});
