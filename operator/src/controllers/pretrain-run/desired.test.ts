import assert from "node:assert/strict";
import { test } from "node:test";
import { PretrainRunSpecSchema } from "../../api/v1alpha1/pretrain-run.js";
import { trainCommand } from "./desired.js";

const plan = { dataset: "Dataset990_Demo", configuration: "onemmiso", plansName: undefined, dataPvc: { claimName: "data" } };
const base = { planRef: { name: "p" }, image: "ssl3d/runtime:0.1.0", storage: { checkpoints: { claimName: "ckpt" } } };

test("spec.training.preflight (default off) adds --preflight to ssl3d train", () => {
  const off = PretrainRunSpecSchema.parse(base);
  assert.equal(off.training.preflight, false);
  assert.ok(!trainCommand(off, plan).includes("--preflight"));
  const on = PretrainRunSpecSchema.parse({ ...base, training: { preflight: true, epochs: 2 } });
  assert.deepEqual(trainCommand(on, plan), ["ssl3d", "train", "Dataset990_Demo", "onemmiso", "-tr", "BaseMAETrainer", "--epochs", "2", "--preflight"]);
});
