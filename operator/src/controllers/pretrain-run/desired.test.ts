import assert from "node:assert/strict";
import { test } from "node:test";
import { PretrainRunSpecSchema } from "../../../../api/v1alpha1/pretrain-run.js";
import { trainCommand } from "./desired.js";

const plan = { dataset: "745", configuration: "onemmiso", plansName: "nnsslPlans", dataPvc: { claimName: "data" } };
const base = { planRef: { name: "p" }, image: "ssl3d/runtime:0.2.0", storage: { checkpoints: { claimName: "ckpt" } } };

test("training.modalities is passed to the default train command as --modalities", () => {
  const spec = PretrainRunSpecSchema.parse({
    ...base,
    training: { trainer: "BaseMAETrainer_BS8", epochs: 10, modalities: ["T1w", "T2w", "FLAIR"], args: ["--seed", "1"] },
  });
  assert.deepEqual(trainCommand(spec, plan), [
    "ssl3d",
    "train",
    "745",
    "onemmiso",
    "-tr",
    "BaseMAETrainer_BS8",
    "-p",
    "nnsslPlans",
    "--epochs",
    "10",
    "--modalities",
    "T1w,T2w,FLAIR",
    "--seed",
    "1",
  ]);
  assert.deepEqual(trainCommand(PretrainRunSpecSchema.parse(base), plan), [
    "ssl3d",
    "train",
    "745",
    "onemmiso",
    "-tr",
    "BaseMAETrainer",
    "-p",
    "nnsslPlans",
  ]);
  assert.equal(
    PretrainRunSpecSchema.safeParse({ ...base, training: { modalities: ["T1w,T2w"] } }).success,
    false,
    "a comma inside a name is refused",
  );
  assert.equal(PretrainRunSpecSchema.safeParse({ ...base, training: { modalities: [] } }).success, false);
});

const demoPlan = {
  dataset: "Dataset990_Demo",
  configuration: "onemmiso",
  plansName: undefined,
  dataPvc: { claimName: "data" },
};

test("spec.training.preflight (default off) adds --preflight to ssl3d train", () => {
  const off = PretrainRunSpecSchema.parse(base);
  assert.equal(off.training.preflight, false);
  assert.ok(!trainCommand(off, demoPlan).includes("--preflight"));
  const on = PretrainRunSpecSchema.parse({ ...base, training: { preflight: true, epochs: 2 } });
  assert.deepEqual(trainCommand(on, demoPlan), [
    "ssl3d",
    "train",
    "Dataset990_Demo",
    "onemmiso",
    "-tr",
    "BaseMAETrainer",
    "--epochs",
    "2",
    "--preflight",
  ]);
});
