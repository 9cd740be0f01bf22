/**
 * The operator as installed (the chart's ServiceAccount and RBAC, test/helpers/operator.ts) against a real
 * kube-apiserver + etcd with RBAC authorization: the run is the unit a queue admits (spec.suspend), rank 0's metrics
 * are read outside the reconcile workers, a child the API server refuses is a condition and a Warning event, and the
 * chart's RBAC is really what the operator is allowed.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_VERSION } from "../../api/v1alpha1/group.js";
import { httpStatus } from "../../operator/src/kube/client.js";
import type { Manager } from "../../operator/src/kube/manager.js";
import {
  condition,
  cr,
  createNamespace,
  createPods,
  eventsFor,
  eventually,
  getCr,
  getJob,
  jobRunning,
  readyPlan,
  startEnv,
  startManager,
  type Env,
} from "../helpers/operator.js";

const IMAGE = "example.invalid/ssl3d-runtime:test";
let env: Env;
let manager: Manager;
/** URLs whose scrape never answers (and ignores its abort signal). */
const hanging = new Set<string>();
const scrapes: string[] = [];

before(async () => {
  env = await startEnv();
  ({ manager } = startManager(env, undefined, {
    // One reconcile worker: a reconcile that waited on a rank 0 would block every other run.
    concurrency: 1,
    scrapeConcurrency: 2,
    scrapeTimeoutMs: 60_000,
    scrape: (url) => {
      scrapes.push(url);
      if ([...hanging].some((h) => url.includes(h))) return new Promise<string>(() => undefined);
      return Promise.resolve("pretrain_global_step 7\npretrain_epoch 1\npretrain_train_loss 0.25\n");
    },
  }));
});

after(async () => {
  await (manager as Manager | undefined)?.stop();
  (env as Env | undefined)?.client.close();
  (env as Env | undefined)?.operatorClient.close();
  await (env as Env | undefined)?.cluster.stop();
});

function runSpec(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    planRef: { name: "plan" },
    image: IMAGE,
    numNodes: 2,
    storage: { checkpoints: { claimName: "ckpt" } },
    metrics: { scrapeIntervalSeconds: 1 },
    ...extra,
  };
}

async function status(ns: string, name: string): Promise<Record<string, unknown>> {
  return (await getCr(env.client, "PretrainRun", ns, name)).status ?? {};
}

describe("queue admission, progress polling, refused children and RBAC", () => {
  test("a run created suspended creates no Job and no pods; admission starts it and restarts the deadline clock", async () => {
    const ns = await createNamespace(env.client, "admission");
    await readyPlan(env.client, ns, IMAGE);
    // Whoever flips spec.suspend admits the run (a run labelled kueue.x-k8s.io/queue-name is admitted through a Kueue
    // Workload instead: test/integration/operator-kueue.test.ts).
    await env.client.create(
      cr("PretrainRun", ns, "run", runSpec({ suspend: true, runPolicy: { activeDeadlineSeconds: 3600 } })),
    );
    const s = await eventually("Suspended", async () => {
      const x = await status(ns, "run");
      return x.phase === "Suspended" ? x : undefined;
    });
    assert.equal(condition({ status: s }, "Queued")?.reason, "Suspended");
    assert.equal(s.startTime, undefined, "no deadline clock before admission");
    // Stays so: a later reconcile (the Plan's events enqueue it too) creates nothing.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await env.client.list("batch/v1", "Job", ns, "ssl3d.io/run=run")).items.length, 0);
    assert.equal((await env.client.list("v1", "Pod", ns, "ssl3d.io/run=run")).items.length, 0);

    // Admission (what a queue does): spec.suspend → false.
    const admittedAt = Date.now();
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: false } });
    const a1 = await eventually("attempt 1 Job", () => getJob(env.client, ns, "run-a1"));
    const after = await status(ns, "run");
    assert.ok(
      Date.parse(after.startTime as string) >= Math.floor(admittedAt / 1000) * 1000,
      `startTime ${String(after.startTime)} counts from admission`,
    );
    assert.equal(condition({ status: after }, "Suspended")?.reason, "Resumed");
    assert.ok((await eventsFor(env.client, ns, "run")).some((e) => e.reason === "Resumed"));

    // Suspended again (preempted by the queue): the attempt goes, no pods remain wanted; re-admission resumes.
    await createPods(env.client, a1);
    await jobRunning(env.client, a1);
    await eventually("Running", async () => (await status(ns, "run")).phase === "Running");
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: true } });
    await eventually("attempt 1 deleted", async () => (await getJob(env.client, ns, "run-a1")) === undefined);
    for (const i of [0, 1]) await env.client.delete("v1", "Pod", ns, `run-a1-${i}`);
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: false } });
    const a2 = await eventually("attempt 2 Job", () => getJob(env.client, ns, "run-a2"), 20_000);
    assert.equal(a2.spec.template.spec.containers[0]?.env?.find((e) => e.name === "SSL3D_RESUME")?.value, "latest");
    assert.equal((await status(ns, "run")).restarts ?? 0, 0, "a suspension is not a restart");
  });

  test("a rank 0 that never answers does not hold up reconciling other runs (one reconcile worker)", async () => {
    const ns = await createNamespace(env.client, "scrape");
    await readyPlan(env.client, ns, IMAGE);
    hanging.add("10.9.9.9");
    await env.client.create(cr("PretrainRun", ns, "stuck", runSpec()));
    const s1 = await eventually("stuck-a1", () => getJob(env.client, ns, "stuck-a1"));
    await createPods(env.client, s1, { podIP: "10.9.9.9" });
    await jobRunning(env.client, s1);
    await eventually("the hanging rank 0 is being scraped", () =>
      Promise.resolve(scrapes.some((u) => u.includes("10.9.9.9"))),
    );
    // With the scrape inside the reconcile, the only worker would now be stuck for good.
    await env.client.create(cr("PretrainRun", ns, "other", runSpec()));
    const o1 = await eventually(
      "other-a1 created while rank 0 of stuck hangs",
      () => getJob(env.client, ns, "other-a1"),
      20_000,
    );
    await createPods(env.client, o1, { podIP: "10.0.0.77" });
    await jobRunning(env.client, o1);
    const p = await eventually(
      "progress of the other run",
      async () => (await status(ns, "other")).progress as { step?: number } | undefined,
      20_000,
    );
    assert.equal(p.step, 7);
    assert.equal((await status(ns, "stuck")).phase, "Running", "the stuck run is still reconciled");
  });

  test("a child the API server refuses (quota) is Created=False/ChildRefused with a Warning event, and clears once accepted", async () => {
    const ns = await createNamespace(env.client, "refused");
    await readyPlan(env.client, ns, IMAGE);
    // No Jobs allowed in this namespace. The quota's status is what the quota controller would write (none runs here).
    await env.client.create({
      apiVersion: "v1",
      kind: "ResourceQuota",
      metadata: { name: "no-jobs", namespace: ns },
      spec: { hard: { "count/jobs.batch": "0" } },
    });
    await env.client.patch(
      "v1",
      "ResourceQuota",
      ns,
      "no-jobs",
      { status: { hard: { "count/jobs.batch": "0" }, used: { "count/jobs.batch": "0" } } },
      { subresource: "status" },
    );
    await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    const r = await eventually(
      "Created=False/ChildRefused",
      async () => {
        const x = await getCr(env.client, "PretrainRun", ns, "run");
        return condition(x, "Created")?.reason === "ChildRefused" ? x : undefined;
      },
      30_000,
    );
    assert.equal(condition(r, "Created")?.status, "False");
    assert.match(condition(r, "Created")!.message, /Job run-a1: .*(quota|no-jobs)/);
    assert.equal(await getJob(env.client, ns, "run-a1"), undefined);
    await eventually("a Warning event ChildRefused", async () =>
      (await eventsFor(env.client, ns, "run")).some((e) => e.type === "Warning" && e.reason === "ChildRefused"),
    );
    // The administrator lifts the quota: the retried Job is accepted and the condition clears.
    await env.client.delete("v1", "ResourceQuota", ns, "no-jobs");
    await eventually("run-a1 created after the quota is gone", () => getJob(env.client, ns, "run-a1"), 60_000);
    await eventually(
      "Created=True",
      async () => condition(await getCr(env.client, "PretrainRun", ns, "run"), "Created")?.status === "True",
      30_000,
    );
  });

  test("the operator's identity has exactly the chart's RBAC: a verb the chart does not grant is forbidden", async () => {
    const ns = await createNamespace(env.client, "rbac");
    const op = env.operatorClient;
    // Granted: list PretrainRuns, create a Secret.
    await op.list(API_VERSION, "PretrainRun", ns);
    await op.create({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s", namespace: ns },
      stringData: { k: "v" },
    });
    // Not granted: reading Secrets, creating the custom resources, touching Pods or Deployments.
    const forbidden = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      await assert.rejects(f, (err: unknown) => httpStatus(err) === 403, `${what} must be forbidden`);
    };
    await forbidden("get secrets", () => op.get("v1", "Secret", ns, "s"));
    await forbidden("create PretrainRuns", () => op.create(cr("PretrainRun", ns, "x", runSpec())));
    await forbidden("delete pods", () => op.delete("v1", "Pod", ns, "nothing"));
    await forbidden("update PretrainRun specs", () =>
      op.patch(API_VERSION, "PretrainRun", ns, "x", { spec: { suspend: true } }),
    );
    await forbidden("create namespaces", () =>
      op.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "nope" } }),
    );
  });
});
