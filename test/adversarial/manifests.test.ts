/**
 * Hostile manifests: what `ssl3d run -f` (the local runner) and the CRDs (the API server) must both refuse. Every
 * case is checked twice, against the local runner's parser and against the generated CRD's own rules (CEL and
 * schema patterns, evaluated here; RE2 and JavaScript agree on these expressions). The API-server tier
 * (test/integration/operator-lifecycle.test.ts) applies a few of them to a real kube-apiserver.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { ConfigError } from "../../runtime/src/errors.js";
import { parseManifests } from "../../runtime/src/local/manifests.js";
import { localLayout, trainEnv } from "../../runtime/src/local/runner.js";

const ROOT = join(import.meta.dirname, "..", "..");
const VALID = readFileSync(join(ROOT, "examples", "laptop.yaml"), "utf8");
const CRD = parse(readFileSync(join(ROOT, "crds", "pretrainruns.ssl3d.io.yaml"), "utf8")) as {
  spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] };
};

type Schema = {
  properties?: Record<string, Schema>;
  items?: Schema;
  pattern?: string;
  "x-kubernetes-validations"?: { rule: string; message: string }[];
};
function at(path: string[]): Schema {
  let s = CRD.spec.versions[0]!.schema.openAPIV3Schema as Schema;
  for (const p of path) s = p === "[]" ? s.items! : s.properties![p]!;
  return s;
}

/** The CRD's `!self.matches('RE')` rules of a string field, as JavaScript RegExps. */
function refusedBy(path: string[]): RegExp[] {
  return (at(path)["x-kubernetes-validations"] ?? [])
    .map((v) => /^!self\.matches\('(.*)'\)$/.exec(v.rule)?.[1])
    .filter((r): r is string => r !== undefined)
    .map((r) => new RegExp(r));
}

const ENV_NAME = ["spec", "env", "[]", "name"];
const INJECTION = [
  "NODE_OPTIONS",
  "LD_PRELOAD",
  "LD_LIBRARY_PATH",
  "NODE_PATH",
  "DYLD_INSERT_LIBRARIES",
  "BASH_ENV",
  "PYTHONPATH",
  "NODE_EXTRA_CA_CERTS",
];
const RESERVED = [
  "SSL3D_RESUME",
  "SSL3D_RUN_SECRET_FILE",
  "PET_NODE_RANK",
  "nnssl_results",
  "CUDA_VISIBLE_DEVICES",
  "RANK",
  "MASTER_ADDR",
];

function withEnv(name: string): string {
  return VALID.replace("  numNodes: 1", `  env: [{name: ${name}, value: "x"}]\n  numNodes: 1`);
}

function refusedLocally(text: string, field: string | undefined, re: RegExp): void {
  assert.throws(
    () => parseManifests(text, "hostile.yaml"),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, re);
      assert.equal(err.file, "hostile.yaml");
      if (field !== undefined) assert.equal(err.field, field);
      return true;
    },
  );
}

test("environment variables that inject code into the runtime are refused by ssl3d run and by the CRD", () => {
  const rules = refusedBy(ENV_NAME);
  assert.ok(rules.length >= 2, "the CRD carries the reserved-name and code-injection rules");
  for (const name of INJECTION) {
    refusedLocally(withEnv(name), "spec.env[0].name", /would inject code/);
    assert.ok(
      rules.some((r) => r.test(name)),
      `the CRD refuses ${name}`,
    );
  }
  for (const name of RESERVED) {
    refusedLocally(withEnv(name), "spec.env[0].name", /reserved/);
    assert.ok(
      rules.some((r) => r.test(name)),
      `the CRD refuses ${name}`,
    );
  }
  // ordinary variables pass both
  for (const name of ["WANDB_MODE", "HTTPS_PROXY", "OMP_NUM_THREADS", "NODE_ENV"]) {
    assert.doesNotThrow(() => parseManifests(withEnv(name), "ok.yaml"), name);
    assert.ok(!rules.some((r) => r.test(name)), `the CRD accepts ${name}`);
  }
});

test("a valueFrom (a Secret in the cluster) cannot be resolved locally and says so, naming the field", () => {
  const text = VALID.replace(
    "  numNodes: 1",
    "  env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n  numNodes: 1",
  );
  const run = parseManifests(text, "m.yaml").runs[0]!;
  const layout = localLayout({ checkpointsRoot: "/c", preprocessed: "/p", metricsPort: 0, terminationLog: "/t" });
  assert.throws(
    () => trainEnv({ base: {}, run, uid: "u", attempt: 1, layout, file: "m.yaml" }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /TOKEN takes its value from the cluster/);
      assert.equal(err.field, "spec.env[0].valueFrom");
      return true;
    },
  );
});

test("claim names, subPaths and folder-like names that escape their volume are refused like the CRD refuses them", () => {
  const ckpt = "checkpoints: {claimName: ssl3d-results}";
  const cases: [string, string, string, RegExp][] = [
    [
      "claimName with a slash",
      VALID.replace(ckpt, "checkpoints: {claimName: ../../etc}"),
      "spec.storage.checkpoints.claimName",
      /DNS-1123/,
    ],
    [
      "claimName upper case",
      VALID.replace(ckpt, "checkpoints: {claimName: Results}"),
      "spec.storage.checkpoints.claimName",
      /DNS-1123/,
    ],
    [
      "subPath absolute",
      VALID.replace(ckpt, "checkpoints: {claimName: r, subPath: /etc/passwd}"),
      "spec.storage.checkpoints.subPath",
      /relative/,
    ],
    [
      "subPath climbing out",
      VALID.replace(ckpt, "checkpoints: {claimName: r, subPath: runs/../../..}"),
      "spec.storage.checkpoints.subPath",
      /'\.\.'/,
    ],
    [
      "data subPath climbing out",
      VALID.replace(ckpt, `${ckpt}\n    data: {claimName: p, subPath: ..}`),
      "spec.storage.data.subPath",
      /'\.\.'/,
    ],
    [
      "checkpoint folder climbing out",
      VALID.replace(ckpt, "checkpoints: {claimName: r, folder: ..}"),
      "spec.storage.checkpoints.folder",
      /one folder name/,
    ],
    [
      "configuration as a path",
      VALID.replace("configuration: onemmiso", "configuration: ../../x"),
      "spec.training.configuration",
      /one folder name/,
    ],
    [
      "trainer as a path",
      VALID.replace("trainer: BaseMAETrainer", "trainer: a/b"),
      "spec.training.trainer",
      /one folder name/,
    ],
    [
      "raw source subPath",
      VALID.replace("pvc: {claimName: ssl3d-raw}", "pvc: {claimName: ssl3d-raw, subPath: /}"),
      "spec.source.pvc.subPath",
      /relative/,
    ],
    [
      "plan output subPath",
      VALID.replace("pvc: {claimName: ssl3d-preprocessed}", "pvc: {claimName: ssl3d-preprocessed, subPath: a/../../b}"),
      "spec.output.pvc.subPath",
      /'\.\.'/,
    ],
    [
      "plans name as a path",
      VALID.replace("numProcesses: 2", "numProcesses: 2\n  plansName: ../p"),
      "spec.plansName",
      /one folder name/,
    ],
    [
      "object-store source (removed)",
      VALID.replace("pvc: {claimName: ssl3d-raw}", "pvc: {claimName: ssl3d-raw}\n    uri: s3://x/y"),
      "spec.source",
      /uri/,
    ],
  ];
  for (const [name, text, field, re] of cases) {
    try {
      refusedLocally(text, field, re);
    } catch (e) {
      assert.fail(`${name}: ${(e as Error).message}`);
    }
  }
  // the same rules are in the CRD
  const sub = at(["spec", "storage", "checkpoints", "subPath"]);
  assert.ok(sub["x-kubernetes-validations"]?.some((v) => v.rule.includes("'..' in self.split('/')")));
  const claim = at(["spec", "storage", "checkpoints", "claimName"]);
  assert.ok(
    claim.pattern !== undefined &&
      !new RegExp(claim.pattern).test("../../etc") &&
      new RegExp(claim.pattern).test("openmind-checkpoints"),
  );
  const folder = at(["spec", "storage", "checkpoints", "folder"]);
  assert.ok(
    folder.pattern !== undefined && !new RegExp(folder.pattern).test("..") && !new RegExp(folder.pattern).test("a/b"),
  );
});

test("more local ranks than GPUs is refused before anything starts", () => {
  const text = VALID.replace(
    "  nprocPerNode: 1",
    "  nprocPerNode: 8\n  resourcesPerNode: {limits: {nvidia.com/gpu: 4}}",
  );
  refusedLocally(text, "spec.nprocPerNode", /exceeds the nvidia.com\/gpu limit/);
  const rules = (at(["spec"])["x-kubernetes-validations"] ?? []).map((v) => v.message);
  assert.ok(rules.some((m) => /nprocPerNode must not exceed the nvidia.com\/gpu limit/.test(m)));
});
