/**
 * The run, not each attempt Job, is the unit Kueue admits (ADR 0088), against the REAL Kueue controller manager
 * (v0.17, scripts/setup.d/38-kueue.sh) and a real kube-apiserver: the operator (the chart's ServiceAccount and RBAC)
 * creates one Workload per run labelled kueue.x-k8s.io/queue-name; Kueue's scheduler admits it against a ClusterQueue's
 * quota; the operator starts attempts only while it is admitted, stops the attempt when Kueue evicts it, gives the quota
 * back, resumes on re-admission, and marks the Workload Finished when the run ends so the next run is admitted.
 * No kubelet and no Job controller run in this tier: the tests write the attempt's pods and Job status.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_VERSION } from "../../api/v1alpha1/group.js";
import type { KubeObject } from "../../operator/src/controllers/types.js";
import type { Manager } from "../../operator/src/kube/manager.js";
import {
  condition,
  cr,
  createNamespace,
  createPods,
  envOf,
  eventsFor,
  eventually,
  getCr,
  getJob,
  jobFinished,
  jobRunning,
  readyPlan,
  startEnv,
  startManager,
  type Env,
} from "../helpers/operator.js";
import { installKueueCrds, kueueSkipReason, startKueue, type KueueProcess } from "../helpers/kueue.js";

const IMAGE = "example.invalid/ssl3d-runtime:test";
const KUEUE_API = "kueue.x-k8s.io/v1beta2";
const skip = kueueSkipReason();
let env: Env;
let kueue: KueueProcess | undefined;
let manager: Manager | undefined;
/** The first test's namespace: its second run still holds the ClusterQueue's quota when the next test starts. */
let firstNs = "";

interface Workload extends KubeObject {
  spec: { queueName?: string; active?: boolean; podSets: { name: string; count: number; template: unknown }[] };
  status?: {
    conditions?: { type: string; status: string; reason: string; message: string }[];
    admission?: { clusterQueue: string };
  };
}

before(async () => {
  if (skip !== undefined) return;
  // The garbage collector removes a deleted attempt Job's pods (no Job controller or kubelet runs in this tier).
  env = await startEnv({ garbageCollector: true });
  await installKueueCrds(env.client);
  await env.client.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "kueue-system" } });
  kueue = await startKueue(env.cluster.kubeconfigPath, env.cluster.dir);
  ({ manager } = startManager(env, undefined, { kueue: true }));
});

after(async () => {
  await manager?.stop();
  await kueue?.stop();
  (env as Env | undefined)?.client.close();
  (env as Env | undefined)?.operatorClient.close();
  await (env as Env | undefined)?.cluster.stop();
});

function runSpec(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    planRef: { name: "plan" },
    image: IMAGE,
    numNodes: 2,
    // A gang of 2 x 2 CPUs: the ClusterQueue's 4 CPUs hold one run at a time.
    resourcesPerNode: { requests: { cpu: "2" } },
    storage: { checkpoints: { claimName: "ckpt" } },
    metrics: { scrapeIntervalSeconds: 0 },
    ...extra,
  };
}

async function queuedRun(ns: string, name: string): Promise<void> {
  await env.client.create({
    ...cr("PretrainRun", ns, name, runSpec()),
    metadata: { name, namespace: ns, labels: { "kueue.x-k8s.io/queue-name": "lq" } },
  });
}

async function workload(ns: string, run: string): Promise<Workload | undefined> {
  return env.client.get<Workload>(KUEUE_API, "Workload", ns, `pretrainrun-${run}`);
}

function wlCondition(w: Workload | undefined, type: string): { status: string; reason: string } | undefined {
  return w?.status?.conditions?.find((c) => c.type === type);
}

async function runStatus(ns: string, name: string): Promise<Record<string, unknown>> {
  return (await getCr(env.client, "PretrainRun", ns, name)).status ?? {};
}

async function describeRuns(ns: string): Promise<string> {
  const out: string[] = [];
  for (const r of ["first", "second"]) {
    const w = await workload(ns, r).catch(() => undefined);
    const s = await runStatus(ns, r).catch(() => ({}));
    out.push(`${r}: ${JSON.stringify(s)}\n  workload: ${JSON.stringify(w?.status)}`);
  }
  return out.join("\n");
}

async function queueObjects(ns: string): Promise<void> {
  await env.client.apply(
    { apiVersion: KUEUE_API, kind: "ResourceFlavor", metadata: { name: "default" }, spec: {} },
    "ssl3d-tests",
  );
  await env.client.apply(
    {
      apiVersion: KUEUE_API,
      kind: "ClusterQueue",
      metadata: { name: "cq" },
      spec: {
        namespaceSelector: {},
        resourceGroups: [
          {
            coveredResources: ["cpu"],
            flavors: [{ name: "default", resources: [{ name: "cpu", nominalQuota: "4" }] }],
          },
        ],
      },
    },
    "ssl3d-tests",
  );
  await env.client.apply(
    {
      apiVersion: KUEUE_API,
      kind: "LocalQueue",
      metadata: { name: "lq", namespace: ns },
      spec: { clusterQueue: "cq" },
    },
    "ssl3d-tests",
  );
}

describe("Kueue admits whole runs through one Workload each (real Kueue controller manager)", { skip }, () => {
  test("two runs whose gangs do not both fit: the second waits until the first finishes; eviction stops and resumes", async () => {
    const ns = await createNamespace(env.client, "kueue");
    firstNs = ns;
    await readyPlan(env.client, ns, IMAGE);
    await queueObjects(ns);
    const dump = (): Promise<string> => describeRuns(ns);

    // 1. The first run's Workload is admitted by Kueue, then its attempt Job is created (without a queue label).
    await queuedRun(ns, "first");
    const a1 = await eventually("first-a1", () => getJob(env.client, ns, "first-a1"), 60_000, dump);
    assert.equal(a1.metadata.labels?.["kueue.x-k8s.io/queue-name"], undefined, "the attempt is not queued again");
    const w1 = (await workload(ns, "first"))!;
    assert.equal(wlCondition(w1, "Admitted")?.status, "True");
    assert.equal(w1.status?.admission?.clusterQueue, "cq");
    assert.equal(w1.spec.queueName, "lq");
    assert.deepEqual(
      w1.spec.podSets.map((p) => [p.name, p.count]),
      [["trainer", 2]],
    );
    const owner = w1.metadata.ownerReferences?.[0];
    const firstRun = await getCr(env.client, "PretrainRun", ns, "first");
    assert.equal(owner?.kind, "PretrainRun");
    assert.equal(owner.uid, firstRun.metadata.uid);
    assert.equal(owner.controller, true);

    // 2. The second run does not fit: no attempt Job, a condition that names the queue and Kueue's reason.
    await queuedRun(ns, "second");
    const queued = await eventually(
      "second waits for admission",
      async () => {
        const s = await runStatus(ns, "second");
        const c = condition({ status: s }, "Queued");
        return c?.status === "True" && c.reason === "WaitingForAdmission" && /quota/i.test(c.message) ? s : undefined;
      },
      60_000,
      dump,
    );
    assert.match(condition({ status: queued }, "Queued")!.message, /LocalQueue lq/);
    assert.equal(queued.phase, "Queued");
    assert.equal(condition({ status: queued }, "Suspended")?.status, "True");
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await getJob(env.client, ns, "second-a1"), undefined, "no attempt Job before admission");
    assert.notEqual(wlCondition(await workload(ns, "second"), "QuotaReserved")?.status, "True");

    // 3. The first run completes: its Workload is Finished (the quota is released) and Kueue admits the second.
    await createPods(env.client, a1);
    await jobRunning(env.client, a1);
    await jobFinished(env.client, a1, "Complete");
    await eventually("first Succeeded", async () => (await runStatus(ns, "first")).phase === "Succeeded", 30_000, dump);
    const f = await eventually(
      "first's Workload Finished",
      async () => {
        const w = await workload(ns, "first");
        return wlCondition(w, "Finished")?.status === "True" ? w : undefined;
      },
      30_000,
      dump,
    );
    assert.equal(wlCondition(f, "Finished")?.reason, "Succeeded");
    const b1 = await eventually(
      "second-a1 after the first finished",
      () => getJob(env.client, ns, "second-a1"),
      60_000,
      dump,
    );
    assert.equal(condition({ status: await runStatus(ns, "second") }, "Suspended")?.reason, "Resumed");
    assert.ok((await eventsFor(env.client, ns, "second")).some((e) => e.reason === "Resumed"));

    // 4. Eviction: an administrator deactivates the second run's Workload. Kueue evicts it; the operator stops the
    // attempt, gives the quota back once the pods are gone, and the run waits.
    await createPods(env.client, b1);
    await jobRunning(env.client, b1);
    await eventually("second Running", async () => (await runStatus(ns, "second")).phase === "Running", 30_000, dump);
    await env.client.patch(KUEUE_API, "Workload", ns, "pretrainrun-second", { spec: { active: false } });
    await eventually(
      "second-a1 deleted",
      async () => (await getJob(env.client, ns, "second-a1")) === undefined,
      30_000,
      dump,
    );
    // The condition moves on to WaitingForAdmission once the quota is back; the Event stays.
    const ev = await eventually("an Evicted event", async () =>
      (await eventsFor(env.client, ns, "second")).find((e) => e.reason === "Evicted"),
    );
    assert.match(ev.note, /Kueue evicted Workload pretrainrun-second \(Deactivated/);
    assert.equal((await runStatus(ns, "second")).phase, "Queued");
    // Without a Job controller here, the garbage collector removes the attempt's pods; then the quota goes back.
    await eventually(
      "second's quota given back",
      async () => wlCondition(await workload(ns, "second"), "QuotaReserved")?.status === "False",
      60_000,
      dump,
    );
    assert.equal((await workload(ns, "second"))?.status?.admission, undefined);

    // 5. Re-activated: Kueue admits it again and the next attempt resumes from the latest checkpoint.
    await env.client.patch(KUEUE_API, "Workload", ns, "pretrainrun-second", { spec: { active: true } });
    const b2 = await eventually(
      "second-a2 after re-admission",
      () => getJob(env.client, ns, "second-a2"),
      60_000,
      dump,
    );
    assert.equal(envOf(b2).SSL3D_RESUME, "latest");
    const s = await runStatus(ns, "second");
    assert.equal(s.restarts ?? 0, 0, "an eviction is not a restart");
    assert.equal(s.attempt, 2);
  });

  test("a suspended queued run's Workload is inactive; deleting the run that holds the quota admits it", async () => {
    const ns = await createNamespace(env.client, "kueue-suspend");
    await readyPlan(env.client, ns, IMAGE);
    await env.client.apply(
      {
        apiVersion: KUEUE_API,
        kind: "LocalQueue",
        metadata: { name: "lq", namespace: ns },
        spec: { clusterQueue: "cq" },
      },
      "ssl3d-tests",
    );
    await env.client.create({
      ...cr("PretrainRun", ns, "held", runSpec({ suspend: true })),
      metadata: { name: "held", namespace: ns, labels: { "kueue.x-k8s.io/queue-name": "lq" } },
    });
    const w = await eventually("held's Workload", () => workload(ns, "held"), 30_000);
    assert.equal(w.spec.active, false, "a suspended run's Workload does not compete for quota");
    await new Promise((r) => setTimeout(r, 1500));
    assert.notEqual(wlCondition(await workload(ns, "held"), "QuotaReserved")?.status, "True");
    assert.equal(await getJob(env.client, ns, "held-a1"), undefined);
    assert.equal((await runStatus(ns, "held")).phase, "Suspended");
    await env.client.patch(API_VERSION, "PretrainRun", ns, "held", { spec: { suspend: false } });
    // The first test's second run still holds the ClusterQueue's quota: no admission yet.
    const released = await eventually(
      "held's Workload active again (the operator no longer owns spec.active)",
      async () => {
        const x = await workload(ns, "held");
        return x?.spec.active !== false ? x : undefined;
      },
      30_000,
    );
    assert.notEqual(released.spec.active, false);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await getJob(env.client, ns, "held-a1"), undefined, "the ClusterQueue is still full");
    assert.equal(condition({ status: await runStatus(ns, "held") }, "Queued")?.reason, "WaitingForAdmission");

    // Deleting the run that holds the quota deletes its Workload (garbage collector): Kueue admits the waiting run.
    await env.client.delete(API_VERSION, "PretrainRun", firstNs, "second", "Background");
    await eventually("held-a1 once the quota is free", () => getJob(env.client, ns, "held-a1"), 60_000);
  });
});
