/**
 * The one plans loader: ssl3d's plan is checked field by field, any nnssl / nnU-Net plans document is accepted for
 * what readers need (its configurations), and every error is one line naming the file and the field.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConfigError, EnvironmentError } from "../errors.js";
import { planExperiment } from "../planning/plan-experiment.js";
import { planConfiguration, readPlansDocument, readPlansFile } from "./plans.js";

const dir = mkdtempSync(join(tmpdir(), "ssl3d-plans-"));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});
const write = (name: string, doc: unknown): string => {
  const f = join(dir, name);
  writeFileSync(f, typeof doc === "string" ? doc : JSON.stringify(doc));
  return f;
};
const plan = planExperiment(
  "Dataset001_X",
  [
    [1, 1, 1],
    [1.2, 1, 1],
  ],
  "nnsslPlans",
);

test("ssl3d's plan round-trips; a wrong field is named with the file", () => {
  assert.deepEqual(readPlansFile(write("ok.json", plan)), plan);
  const bad = structuredClone(plan) as unknown as { configurations: Record<string, { spacing: unknown }> };
  bad.configurations.onemmiso!.spacing = [1, -1, 1];
  const f = write("bad.json", bad);
  assert.throws(
    () => readPlansFile(f),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.file === f &&
      e.field === "configurations.onemmiso.spacing[1]" &&
      e.message.startsWith(`${f}: configurations.onemmiso.spacing[1]: `),
  );
  const noName = write("noname.json", { ...plan, plans_name: undefined });
  assert.throws(
    () => readPlansFile(noName),
    (e: unknown) => e instanceof ConfigError && e.field === "plans_name",
  );
});

test("missing, unreadable and invalid files", () => {
  const missing = join(dir, "nnsslPlans.json");
  assert.throws(
    () => readPlansFile(missing),
    (e: unknown) =>
      e instanceof EnvironmentError &&
      e.message.startsWith(`${missing}: plans file not found; run \`ssl3d plan-and-preprocess`),
  );
  assert.throws(
    () => readPlansDocument(dir),
    (e: unknown) => e instanceof ConfigError && /plans file is a directory, expected a regular file/.test(e.message),
  );
  const syntax = write("syntax.json", '{"configurations": {');
  assert.throws(
    () => readPlansDocument(syntax),
    (e: unknown) => e instanceof ConfigError && e.file === syntax && /invalid JSON/.test(e.message),
  );
  const dup = write("dup.json", '{"configurations": {"a": {}, "a": {}}}');
  assert.throws(
    () => readPlansDocument(dup),
    (e: unknown) => e instanceof ConfigError && e.file === dup,
  );
});

test("an nnssl / nnU-Net plans document: configurations of objects, the rest kept", () => {
  const nnunet = join(
    import.meta.dirname,
    "..",
    "..",
    "..",
    "test",
    "fixtures",
    "nnunet",
    "nnUNetResEncUNetLPlans.json",
  );
  const doc = readPlansDocument(nnunet);
  assert.ok(Object.keys(doc.configurations).includes("3d_fullres"));
  assert.equal(doc.plans_name, "nnUNetResEncUNetLPlans");
  assert.throws(
    () => readPlansDocument(write("cfgs.json", { configurations: [] })),
    (e: unknown) => e instanceof ConfigError && e.field === "configurations",
  );
  assert.throws(
    () => readPlansDocument(write("cfg.json", { configurations: { a: 3 } })),
    (e: unknown) => e instanceof ConfigError && e.field === "configurations.a",
  );
  assert.throws(
    () => readPlansDocument(write("arr.json", [])),
    (e: unknown) => e instanceof ConfigError && /expected object/.test(e.message),
  );
});

test("planConfiguration names the configurations the plan has", () => {
  assert.equal(planConfiguration(plan, "onemmiso", "p.json").spacing_style, "onemmiso");
  assert.throws(
    () => planConfiguration(plan, "3d_fullres", "p.json"),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.field === "configurations.3d_fullres" &&
      /not in the plan \(has: onemmiso, median, noresample\)/.test(e.message),
  );
  assert.throws(() => planConfiguration(plan, "__proto__", "p.json"), /not in the plan/);
});
