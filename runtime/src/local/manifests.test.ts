import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { LAPTOP_MANIFESTS } from "./laptop-manifests.js";
import { parseManifests, readManifests } from "./manifests.js";

const EXAMPLES = join(import.meta.dirname, "..", "..", "..", "examples");

test("the embedded default is byte-identical to examples/laptop.yaml", () => {
  assert.equal(LAPTOP_MANIFESTS, readFileSync(join(EXAMPLES, "laptop.yaml"), "utf8"));
});

test("both examples parse, with defaults applied", () => {
  const laptop = readManifests(join(EXAMPLES, "laptop.yaml"));
  assert.deepEqual([laptop.collections.length, laptop.plans.length, laptop.runs.length], [1, 1, 1]);
  assert.equal(laptop.collections[0]!.annotations["ssl3d.io/local-demo"], "true");
  assert.equal(laptop.runs[0]!.spec.runPolicy.resume, "Latest");
  const om = readManifests(join(EXAMPLES, "openmind-4x8.yaml"));
  const run = om.runs[0]!;
  assert.equal(run.spec.numNodes, 4);
  assert.equal(run.spec.nprocPerNode, 8);
  assert.equal(run.spec.storage.checkpoints.subPath, "runs/openmind-resencl-mae");
  assert.equal(run.spec.metrics.port, 9090);
});

const VALID = readFileSync(join(EXAMPLES, "laptop.yaml"), "utf8");

test("bad manifests fail with the file, the object and the field", () => {
  const cases: [string, string, RegExp, string | undefined][] = [
    ["wrong kind", VALID.replace("kind: Plan", "kind: Plane"), /kind must be Collection, Plan or PretrainRun/, "kind"],
    [
      "wrong apiVersion",
      VALID.replace("apiVersion: ssl3d.io/v1alpha1\nkind: Plan", "apiVersion: ssl3d.io/v1\nkind: Plan"),
      /apiVersion must be ssl3d.io\/v1alpha1/,
      "apiVersion",
    ],
    [
      "bad name",
      VALID.replace("name: demo\n  annotations", "name: Demo_1\n  annotations"),
      /DNS-1123/,
      "metadata.name",
    ],
    [
      "missing planRef",
      VALID.replace("planRef: {name: demo}", "planRefs: {name: demo}"),
      /PretrainRun\/demo/,
      "spec.planRef",
    ],
    [
      "dangling planRef",
      VALID.replace("planRef: {name: demo}", "planRef: {name: other}"),
      /no Plan named other/,
      "spec.planRef.name",
    ],
    [
      "dangling collectionRef",
      VALID.replace("collectionRef: {name: demo}", "collectionRef: {name: x}"),
      /no Collection named x/,
      "spec.collectionRef.name",
    ],
    ["epochs not a number", VALID.replace("epochs: 3", "epochs: three"), /PretrainRun\/demo/, "spec.training.epochs"],
    [
      "two sources",
      VALID.replace("pvc: {claimName: ssl3d-raw}", "pvc: {claimName: ssl3d-raw}\n    uri: s3://b/x"),
      /Unrecognized key.*uri/,
      "spec.source",
    ],
    [
      "claimName not a DNS name",
      VALID.replace("checkpoints: {claimName: ssl3d-results}", "checkpoints: {claimName: ../etc}"),
      /claimName must be a lower-case DNS-1123 name/,
      "spec.storage.checkpoints.claimName",
    ],
    [
      "subPath absolute",
      VALID.replace("checkpoints: {claimName: ssl3d-results}", "checkpoints: {claimName: r, subPath: /etc}"),
      /relative/,
      "spec.storage.checkpoints.subPath",
    ],
    [
      "checkpoint folder with a slash",
      VALID.replace("checkpoints: {claimName: ssl3d-results}", "checkpoints: {claimName: r, folder: a/b}"),
      /one folder name/,
      "spec.storage.checkpoints.folder",
    ],
    [
      "NODE_OPTIONS in env",
      VALID.replace("  numNodes: 1", "  env: [{name: NODE_OPTIONS, value: --require=/tmp/x.js}]\n  numNodes: 1"),
      /inject code/,
      "spec.env[0].name",
    ],
    [
      "reserved env",
      VALID.replace("  numNodes: 1", "  env: [{name: SSL3D_RESUME, value: none}]\n  numNodes: 1"),
      /reserved/,
      "spec.env[0].name",
    ],
    [
      "more ranks than GPUs",
      VALID.replace("  nprocPerNode: 1", "  nprocPerNode: 4\n  resourcesPerNode: {limits: {nvidia.com/gpu: 2}}"),
      /exceeds the nvidia.com\/gpu limit/,
      "spec.nprocPerNode",
    ],
    [
      "subPath escapes",
      VALID.replace("checkpoints: {claimName: ssl3d-results}", "checkpoints: {claimName: r, subPath: ../x}"),
      /must not contain '\.\.'/,
      "spec.storage.checkpoints.subPath",
    ],
    ["bad dataset", VALID.replace('dataset: "990"', "dataset: demo"), /dataset ID/, "spec.dataset"],
    ["duplicate", `${VALID}\n---\n${VALID.split("---")[0]!}`, /two Collections are named demo/, "Collection/demo"],
    ["not YAML", "kind: [", /invalid YAML/, undefined],
    ["empty", "", /no Collection, Plan or PretrainRun/, undefined],
  ];
  for (const [name, text, re, field] of cases) {
    assert.throws(
      () => parseManifests(text, "m.yaml"),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, name);
        assert.match(err.message, re, name);
        assert.equal(err.file, "m.yaml", name);
        assert.equal(err.field, field, name);
        return true;
      },
      name,
    );
  }
});
