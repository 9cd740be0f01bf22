/**
 * One contract, two users: the operator's attempt Job and the local runner (`ssl3d run`) build a rank's environment
 * and command with the same function (api/pod.ts). For the same PretrainRun and attempt they must agree on every
 * variable name, their order, and every value that is not a matter of layout (where the volumes are, how a node
 * learns its rank, the rendezvous address, the metrics bind address, the secret file).
 */
import assert from "node:assert/strict";
import { posix } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { ENV, podEnv, trainArgs as apiTrainArgs, type EnvVar } from "../../api/pod.js";
import { PretrainRunSpecSchema } from "../../api/v1alpha1/pretrain-run.js";
import { attemptEnv, desiredAttemptJob, type PlanInputs } from "../../operator/src/controllers/pretrain-run/desired.js";
import type { CustomResource } from "../../operator/src/controllers/types.js";
import { parseManifests } from "../../runtime/src/local/manifests.js";
import { localLayout, trainArgs as localTrainArgs, trainEnv } from "../../runtime/src/local/runner.js";

const MANIFESTS = `
apiVersion: ssl3d.io/v1alpha1
kind: Collection
metadata: {name: c}
spec: {source: {pvc: {claimName: raw}}, dataset: "745"}
---
apiVersion: ssl3d.io/v1alpha1
kind: Plan
metadata: {name: p}
spec:
  collectionRef: {name: c}
  plansName: nnsslPlans
  preprocess: {image: img}
  output: {pvc: {claimName: prep}}
---
apiVersion: ssl3d.io/v1alpha1
kind: PretrainRun
metadata: {name: r, uid: 0b5e7c1a-0000-4000-8000-000000000001}
spec:
  planRef: {name: p}
  image: img
  numNodes: 2
  nprocPerNode: 4
  env: [{name: WANDB_MODE, value: offline}, {name: ALPHA, value: "1"}]
  training: {trainer: BaseMAETrainer, configuration: onemmiso, epochs: 7, preflight: true, modalities: [T1w, FLAIR], args: [--seed, "3"]}
  storage: {checkpoints: {claimName: ckpt, subPath: runs}}
  runPolicy: {resume: Latest}
  metrics: {port: 9191}
`;

/** The layout-dependent variables: everything else must be identical. */
const LAYOUT = new Set<string>([
  ENV.nodeRank,
  ENV.masterAddr,
  ENV.checkpointDir,
  ENV.metricsAddress,
  ENV.terminationLog,
  ENV.runSecretFile,
  ENV.preprocessed,
  ENV.results,
]);

function fixtures(): {
  run: ReturnType<typeof parseManifests>["runs"][number];
  plan: ReturnType<typeof parseManifests>["plans"][number];
  cr: CustomResource;
  inputs: PlanInputs;
} {
  const m = parseManifests(MANIFESTS, "m.yaml");
  const run = m.runs[0]!;
  const plan = m.plans[0]!;
  const doc = parse(MANIFESTS.split("---")[2]!) as { spec: unknown };
  const cr: CustomResource = { metadata: { name: "r", namespace: "ns", uid: run.uid! }, spec: doc.spec };
  return {
    run,
    plan,
    cr,
    inputs: {
      dataset: "Dataset745_X",
      configuration: "onemmiso",
      plansName: "nnsslPlans",
      dataPvc: { claimName: "prep" },
    },
  };
}

function containerOf(job: ReturnType<typeof desiredAttemptJob>): { command: string[]; env: EnvVar[] } {
  return (job.spec as { template: { spec: { containers: { command: string[]; env: EnvVar[] }[] } } }).template.spec
    .containers[0]!;
}

test("the operator's pod and the local runner get the same environment names, order and values for the same run and attempt", () => {
  const { run, cr, inputs } = fixtures();
  const spec = PretrainRunSpecSchema.parse(cr.spec);
  for (const attempt of [1, 3]) {
    const pod = containerOf(desiredAttemptJob(cr, spec, inputs, attempt)).env;
    // the Job carries exactly the contract function's output
    assert.deepEqual(pod, attemptEnv(cr, spec, attempt));
    const layout = localLayout({
      checkpointsRoot: "/vol/ckpt/runs",
      preprocessed: "/vol/prep",
      metricsPort: 9191,
      terminationLog: "/state/term",
    });
    const local = podEnv(run.spec, { name: run.name, uid: run.uid! }, attempt, layout);
    assert.deepEqual(
      local.map((e) => e.name),
      pod.map((e) => e.name),
      "same names in the same order",
    );
    for (const [i, e] of pod.entries()) {
      if (LAYOUT.has(e.name)) continue;
      assert.deepEqual(local[i], e, `${e.name} is the same`);
    }
    // what the local child process really gets is that list
    const child = trainEnv({ base: { PATH: "/bin" }, run, uid: run.uid!, attempt, layout });
    for (const e of local) assert.equal(child[e.name], "value" in e ? e.value : undefined, e.name);
    // the one resume mode, on every attempt
    assert.equal(child.SSL3D_RESUME, "latest");
    // the per-run folder (name + uid) sits in the same place relative to the checkpoint volume
    const podDir = (pod.find((e) => e.name === ENV.checkpointDir) as { value: string }).value;
    assert.equal(posix.relative("/checkpoints", podDir), posix.relative("/vol/ckpt/runs", child.SSL3D_CHECKPOINT_DIR!));
    assert.equal(podDir, `/checkpoints/r-${run.uid!}/checkpoints`);
  }
});

test("the operator's pod command and the local runner's arguments are the same train command line", () => {
  const { run, plan, cr, inputs } = fixtures();
  const spec = PretrainRunSpecSchema.parse(cr.spec);
  const command = containerOf(desiredAttemptJob(cr, spec, inputs, 2)).command;
  const local = localTrainArgs(run, plan, inputs.dataset, inputs.configuration, false);
  assert.deepEqual(command, ["ssl3d", ...local]);
  assert.deepEqual(local, apiTrainArgs(run.spec, inputs));
  assert.deepEqual(local, [
    "train",
    "Dataset745_X",
    "onemmiso",
    "-tr",
    "BaseMAETrainer",
    "-p",
    "nnsslPlans",
    "--epochs",
    "7",
    "--preflight",
    "--modalities",
    "T1w,FLAIR",
    "--seed",
    "3",
  ]);
});

test("user env comes after the contract and can neither shadow it nor inject code", () => {
  const { run } = fixtures();
  const env = podEnv(
    run.spec,
    { name: "r", uid: "u" },
    1,
    localLayout({ checkpointsRoot: "/c", preprocessed: "/p", metricsPort: 0, terminationLog: "/t" }),
  );
  assert.deepEqual(
    env.slice(-2).map((e) => e.name),
    ["WANDB_MODE", "ALPHA"],
  );
  assert.equal(
    env.some((e) => e.name === ENV.metricsPort),
    false,
    "metrics port 0 locally = no endpoint",
  );
  assert.throws(
    () => parseManifests(MANIFESTS.replace("WANDB_MODE", "LD_PRELOAD"), "m.yaml"),
    /LD_PRELOAD would inject code/,
  );
  assert.throws(
    () => parseManifests(MANIFESTS.replace("WANDB_MODE", "SSL3D_RESUME"), "m.yaml"),
    /SSL3D_RESUME is reserved/,
  );
});
