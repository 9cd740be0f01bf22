/**
 * Pods the Job controller cannot create: the real kube-controller-manager Job controller runs here (the other
 * operator tests write Job and Pod status themselves), a ResourceQuota of `pods: 0` makes its pod creation fail, and
 * its FailedCreate Warning Event on the Job is the only trace. The operator (the chart's ServiceAccount and RBAC)
 * turns it into Plan `Ready=False/PodCreationFailed` and PretrainRun `Running=False/PodCreationFailed` with a Warning
 * Event, and both clear once the quota is lifted and the pods exist.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Manager } from "../../operator/src/kube/manager.js";
import type { KubeObject } from "../../operator/src/controllers/types.js";
import {
  condition,
  cr,
  createNamespace,
  eventsFor,
  eventually,
  getCr,
  startEnv,
  startManager,
  terminatePod,
  type Env,
} from "../helpers/operator.js";

const IMAGE = "example.invalid/ssl3d-runtime:test";
let env: Env | undefined;
let manager: Manager | undefined;
let skip: string | false = false;

before(async () => {
  env = await startEnv({ jobController: true });
  // k3s runs without the Job controller (the other tests create pods themselves); an external cluster is unknown.
  if (!env.cluster.jobController) {
    skip = `the Job controller runs only in the local test cluster (mode ${env.cluster.mode})`;
    return;
  }
  ({ manager } = startManager(env, undefined));
});

after(async () => {
  await manager?.stop();
  env?.client.close();
  env?.operatorClient.close();
  await env?.cluster.stop();
});

/** `pods: 0`, with the status the quota controller would write (the quota admission refuses against it). */
async function noPods(ns: string): Promise<void> {
  const hard = { pods: "0" };
  await env!.client.create({
    apiVersion: "v1",
    kind: "ResourceQuota",
    metadata: { name: "no-pods", namespace: ns },
    spec: { hard },
  });
  await env!.client.patch(
    "v1",
    "ResourceQuota",
    ns,
    "no-pods",
    { status: { hard, used: { pods: "0" } } },
    { subresource: "status" },
  );
}

async function podsOf(ns: string, job: string): Promise<KubeObject[]> {
  return (await env!.client.list("v1", "Pod", ns, `batch.kubernetes.io/job-name=${job}`)).items;
}

async function reasonOf(kind: "Plan" | "PretrainRun", ns: string, name: string, type: string): Promise<string> {
  return condition(await getCr(env!.client, kind, ns, name), type)?.reason ?? "";
}

describe("pods the Job controller cannot create (FailedCreate)", () => {
  test("a quota refusing the pods is PodCreationFailed with a Warning event on the Plan and the run, and clears once lifted", async (t) => {
    if (skip !== false) {
      t.skip(skip);
      return;
    }
    const client = env!.client;
    const ns = await createNamespace(client, "nopods");
    await noPods(ns);
    await client.create(
      cr("Collection", ns, "col", { source: { pvc: { claimName: "raw" } }, dataset: "Dataset001_Demo" }),
    );
    await client.create(
      cr("Plan", ns, "plan", {
        collectionRef: { name: "col" },
        configurations: ["onemmiso"],
        preprocess: { image: IMAGE },
        output: { pvc: { claimName: "prep" } },
      }),
    );
    // The preprocessing Job exists, its pod is refused: the Plan says why.
    await eventually(
      "Plan Ready=False/PodCreationFailed",
      async () => (await reasonOf("Plan", ns, "plan", "Ready")) === "PodCreationFailed",
      60_000,
      async () => JSON.stringify((await getCr(client, "Plan", ns, "plan")).status),
    );
    const planReady = condition(await getCr(client, "Plan", ns, "plan"), "Ready")!;
    assert.equal(planReady.status, "False");
    assert.match(planReady.message, /Job plan-prep cannot create its pod: .*exceeded quota: no-pods/);
    await eventually("a Warning event PodCreationFailed on the Plan", async () =>
      (await eventsFor(client, ns, "plan")).some((e) => e.type === "Warning" && e.reason === "PodCreationFailed"),
    );
    assert.equal((await podsOf(ns, "plan-prep")).length, 0);

    // Lifted: the Job controller's retry creates the pod and the Plan is Preprocessing again; it then completes.
    await client.delete("v1", "ResourceQuota", ns, "no-pods");
    const [prep] = await eventually(
      "the preprocessing pod",
      async () => {
        const p = await podsOf(ns, "plan-prep");
        return p.length > 0 ? p : undefined;
      },
      90_000,
    );
    await eventually(
      "Plan Ready=False/Preprocessing",
      async () => (await reasonOf("Plan", ns, "plan", "Ready")) === "Preprocessing",
      30_000,
    );
    const summary = {
      images: 1,
      valid: 1,
      failed: 0,
      configurations: ["onemmiso"],
      plansFile: "p",
      preprocessedDir: "d",
    };
    await terminatePod(client, ns, prep!.metadata.name, "preprocess", 0, JSON.stringify(summary));
    await eventually(
      "Plan Ready",
      async () => (await getCr(client, "Plan", ns, "plan")).status?.phase === "Ready",
      60_000,
      async () => JSON.stringify((await getCr(client, "Plan", ns, "plan")).status),
    );

    // The run's attempt Job is created, its pods are refused.
    await noPods(ns);
    await client.create(
      cr("PretrainRun", ns, "run", {
        planRef: { name: "plan" },
        image: IMAGE,
        numNodes: 2,
        storage: { checkpoints: { claimName: "ckpt" } },
      }),
    );
    await eventually(
      "Running=False/PodCreationFailed",
      async () => (await reasonOf("PretrainRun", ns, "run", "Running")) === "PodCreationFailed",
      60_000,
      async () => JSON.stringify((await getCr(client, "PretrainRun", ns, "run")).status),
    );
    const run = await getCr(client, "PretrainRun", ns, "run");
    assert.equal(condition(run, "Running")?.status, "False");
    assert.match(condition(run, "Running")!.message, /Job run-a1 cannot create pods: .*exceeded quota: no-pods/);
    assert.equal(condition(run, "Created")?.status, "True", "the Job itself was accepted");
    await eventually("a Warning event PodCreationFailed on the run", async () =>
      (await eventsFor(client, ns, "run")).some((e) => e.type === "Warning" && e.reason === "PodCreationFailed"),
    );
    assert.equal((await podsOf(ns, "run-a1")).length, 0);

    // Lifted: both ranks' pods are created and the condition moves on (they stay Pending: no scheduler here).
    await client.delete("v1", "ResourceQuota", ns, "no-pods");
    await eventually("both ranks' pods", async () => (await podsOf(ns, "run-a1")).length === 2, 90_000);
    await eventually(
      "Running=False/PodsNotReady",
      async () => (await reasonOf("PretrainRun", ns, "run", "Running")) === "PodsNotReady",
      30_000,
      async () => JSON.stringify((await getCr(client, "PretrainRun", ns, "run")).status),
    );
  });
});
