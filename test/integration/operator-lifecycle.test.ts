/**
 * The operator against a real kube-apiserver + etcd (test/helpers/kube.ts), with kube-controller-manager's garbage
 * collector when it was built. The test plays the Job controller: it creates pods for the Jobs the operator
 * creates and writes Job and Pod status. Assertions are on resulting objects, conditions and Events.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { API_VERSION } from "../../api/v1alpha1/group.js";
import { httpStatus } from "../../operator/src/kube/client.js";
import { applyCrdYaml } from "../../operator/src/kube/crds.js";
import type { Manager } from "../../operator/src/kube/manager.js";
import type { OperatorMetrics } from "../../operator/src/metrics.js";
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
  startEnv,
  startManager,
  terminatePod,
  type Env,
  type JobObj,
} from "../helpers/operator.js";

const IMAGE = "example.invalid/ssl3d-runtime:test";
let env: Env;
let manager: Manager;
let metrics: OperatorMetrics;
let metricsServer: Server;
let metricsPort = 0;
let metricsBody = "pretrain_global_step 10\npretrain_epoch 1\npretrain_train_loss 0.9\n";

before(async () => {
  env = await startEnv({ garbageCollector: true });
  ({ manager, metrics } = startManager(env, undefined));
  metricsServer = createServer((_req, res) => {
    res.end(metricsBody);
  });
  await new Promise<void>((r) => metricsServer.listen(0, "127.0.0.1", r));
  const a = metricsServer.address();
  metricsPort = typeof a === "object" && a !== null ? a.port : 0;
});

after(async () => {
  // Parts may be missing when `before` failed half-way.
  await (manager as Manager | undefined)?.stop();
  (metricsServer as Server | undefined)?.close();
  (env as Env | undefined)?.client.close();
  await (env as Env | undefined)?.cluster.stop();
});

async function describeNs(ns: string): Promise<string> {
  const runs = await env.client.list(API_VERSION, "PretrainRun", ns);
  const jobs = await env.client.list("batch/v1", "Job", ns);
  return JSON.stringify(
    {
      runs: runs.items.map((r) => ({ name: r.metadata.name, status: r.status })),
      jobs: jobs.items.map((j) => j.metadata.name),
    },
    null,
    1,
  );
}

async function job(ns: string, name: string): Promise<JobObj> {
  return eventually(
    `Job ${ns}/${name}`,
    () => getJob(env.client, ns, name),
    20_000,
    () => describeNs(ns),
  );
}

/** A Ready Plan (Collection without indexing, preprocessing Job completed by the test). */
async function readyPlan(ns: string, name = "plan"): Promise<void> {
  await env.client.create(
    cr("Collection", ns, "col", { source: { pvc: { claimName: "raw" } }, dataset: "Dataset001_Demo" }),
  );
  await env.client.create(
    cr("Plan", ns, name, {
      collectionRef: { name: "col" },
      configurations: ["onemmiso"],
      preprocess: { image: IMAGE },
      output: { pvc: { claimName: "prep" } },
    }),
  );
  const j = await job(ns, `${name}-prep`);
  const pods = await createPods(env.client, j);
  await terminatePod(
    env.client,
    ns,
    pods[0]!.metadata.name,
    "preprocess",
    0,
    JSON.stringify({
      images: 4,
      valid: 4,
      failed: 0,
      configurations: ["onemmiso"],
      plansFile: "/p/plans.json",
      preprocessedDir: "/p/data",
    }),
  );
  await jobFinished(env.client, j, "Complete");
  await eventually("Plan Ready", async () => (await getCr(env.client, "Plan", ns, name)).status?.phase === "Ready");
}

function runSpec(
  extra: Record<string, unknown> = {},
  runPolicy: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    planRef: { name: "plan" },
    image: IMAGE,
    numNodes: 2,
    nprocPerNode: 1,
    storage: { checkpoints: { claimName: "ckpt" } },
    metrics: { port: metricsPort, scrapeIntervalSeconds: 1 },
    runPolicy: { maxRestarts: 1, ...runPolicy },
    ...extra,
  };
}

async function runStatus(ns: string, name: string): Promise<Record<string, unknown>> {
  return (await getCr(env.client, "PretrainRun", ns, name)).status ?? {};
}

describe("operator against a real API server", () => {
  test("a run deleted and created again under the same name gets a rendezvous Secret of its own", async () => {
    const ns = await createNamespace(env.client, "samename");
    await readyPlan(ns);
    const secret = async (): Promise<{ metadata: { ownerReferences?: { uid: string }[] } } | undefined> =>
      env.client.get("v1", "Secret", ns, "run-rendezvous");
    const first = await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    await eventually(
      "Secret of the first run",
      async () => (await secret())?.metadata.ownerReferences?.[0]?.uid === first.metadata.uid,
      20_000,
      () => describeNs(ns),
    );
    await env.client.delete(API_VERSION, "PretrainRun", ns, "run");
    await eventually("Secret collected with the first run", async () => (await secret()) === undefined, 60_000);
    const second = await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    // before the fix the operator remembered it had created `run-rendezvous` and the new run's pods never started
    await eventually(
      "Secret of the second run",
      async () => (await secret())?.metadata.ownerReferences?.[0]?.uid === second.metadata.uid,
      20_000,
      () => describeNs(ns),
    );
  });

  test("happy path: Collection → Plan → PretrainRun with progress from rank 0's /metrics", async () => {
    const ns = await createNamespace(env.client, "happy");
    await env.client.create(
      cr("Collection", ns, "col", {
        source: { pvc: { claimName: "raw", subPath: "raw" } },
        dataset: "Dataset001_Demo",
        indexing: { enabled: true, image: IMAGE },
      }),
    );
    const ij = await job(ns, "col-index-g1");
    assert.deepEqual(
      ij.spec.template.spec.containers[0] && (ij.spec.template.spec.containers[0] as { command?: string[] }).command,
      ["ssl3d", "collection-summary", "-d", "Dataset001_Demo", "--json"],
    );
    const hash = `sha256:${"a".repeat(64)}`;
    const ipods = await createPods(env.client, ij);
    await terminatePod(
      env.client,
      ns,
      ipods[0]!.metadata.name,
      "index",
      0,
      JSON.stringify({
        datasets: 1,
        subjects: 2,
        sessions: 2,
        images: 4,
        modalities: { T1w: 4 },
        bytes: 1000,
        contentHash: hash,
      }),
    );
    await jobFinished(env.client, ij, "Complete");
    const col = await eventually("Collection Ready", async () => {
      const c = await getCr(env.client, "Collection", ns, "col");
      return c.status?.phase === "Ready" ? c : undefined;
    });
    assert.equal(col.status?.contentHash, hash);
    assert.deepEqual((col.status.summary as { images: number }).images, 4);
    assert.equal(condition(col, "Ready")?.observedGeneration, 1);

    await env.client.create(
      cr("Plan", ns, "plan", {
        collectionRef: { name: "col" },
        configurations: ["onemmiso"],
        preprocess: { image: IMAGE, queueName: "cpu" },
        output: { pvc: { claimName: "prep" } },
      }),
    );
    const pj = await job(ns, "plan-prep");
    const args = (pj.spec.template.spec.containers[0] as { args?: string[] }).args;
    assert.deepEqual(args, ["plan-and-preprocess", "-d", "Dataset001_Demo", "-c", "onemmiso"]);
    assert.equal(pj.metadata.labels?.["kueue.x-k8s.io/queue-name"], "cpu");
    const ppods = await createPods(env.client, pj);
    await terminatePod(
      env.client,
      ns,
      ppods[0]!.metadata.name,
      "preprocess",
      0,
      JSON.stringify({
        images: 4,
        valid: 4,
        failed: 0,
        configurations: ["onemmiso"],
        plansFile: "/p/plans.json",
        preprocessedDir: "/p/data",
      }),
    );
    await jobFinished(env.client, pj, "Complete");
    const plan = await eventually("Plan Ready", async () => {
      const p = await getCr(env.client, "Plan", ns, "plan");
      return p.status?.phase === "Ready" ? p : undefined;
    });
    assert.equal(plan.status?.collectionHash, hash);
    assert.equal((plan.status.outputs as { valid: number }).valid, 4);

    await env.client.create(
      cr(
        "PretrainRun",
        ns,
        "run",
        runSpec({
          resourcesPerNode: { limits: { "nvidia.com/gpu": 1 } },
          nodeSelector: { "nvidia.com/gpu.present": "true" },
          tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
          scheduling: { queueName: "gpu" },
          training: { epochs: 10 },
        }),
      ),
    );
    const svc = await eventually("headless Service", () =>
      env.client.get<{ spec: { clusterIP: string; publishNotReadyAddresses: boolean } }>("v1", "Service", ns, "run"),
    );
    assert.equal(svc.spec.clusterIP, "None");
    assert.equal(svc.spec.publishNotReadyAddresses, true);
    const a1 = await job(ns, "run-a1");
    const spec = a1.spec as unknown as {
      completionMode: string;
      completions: number;
      parallelism: number;
      backoffLimit: number;
      template: {
        spec: {
          subdomain: string;
          nodeSelector: Record<string, string>;
          tolerations: unknown[];
          containers: { resources: { limits: Record<string, string> }; command: string[] }[];
        };
      };
    };
    assert.equal(spec.completionMode, "Indexed");
    assert.equal(spec.completions, 2);
    assert.equal(spec.parallelism, 2);
    assert.equal(spec.backoffLimit, 0);
    assert.equal(spec.template.spec.subdomain, "run");
    assert.deepEqual(spec.template.spec.nodeSelector, { "nvidia.com/gpu.present": "true" });
    assert.equal(spec.template.spec.tolerations.length, 1);
    assert.equal(spec.template.spec.containers[0]!.resources.limits["nvidia.com/gpu"], "1");
    assert.deepEqual(spec.template.spec.containers[0]!.command, [
      "ssl3d",
      "train",
      "Dataset001_Demo",
      "onemmiso",
      "-tr",
      "BaseMAETrainer",
      "--epochs",
      "10",
    ]);
    assert.equal(a1.metadata.labels?.["kueue.x-k8s.io/queue-name"], "gpu");
    const managed = (a1.metadata as { managedFields?: { manager: string; operation: string }[] }).managedFields ?? [];
    assert.ok(
      managed.some((m) => m.manager === "ssl3d-operator" && m.operation === "Apply"),
      "children are server-side applied by the operator's field manager",
    );
    const e = envOf(a1);
    assert.equal(e.PET_NNODES, "2");
    assert.equal(e.PET_NPROC_PER_NODE, "1");
    assert.equal(e.PET_MASTER_ADDR, "run-a1-0.run");
    assert.equal(e.PET_MASTER_PORT, "29500");
    assert.equal(e.SSL3D_RUN, "run");
    assert.equal(e.SSL3D_ATTEMPT, "1");
    // Every attempt resumes, the first included (issue 14): a run restarted from scratch finds its own checkpoints.
    assert.equal(e.SSL3D_RESUME, "latest");
    assert.equal(e.SSL3D_METRICS_PORT, String(metricsPort));
    // Each run has its own checkpoint folder, named after the run and its uid.
    const runUid = (await getCr(env.client, "PretrainRun", ns, "run")).metadata.uid;
    assert.equal(e.SSL3D_RUN_UID, runUid);
    assert.equal(e.SSL3D_CHECKPOINT_DIR, `/checkpoints/run-${runUid}/checkpoints`);
    const rankEnv = a1.spec.template.spec.containers[0]!.env!.find((x) => x.name === "PET_NODE_RANK") as unknown as {
      valueFrom: { fieldRef: { fieldPath: string } };
    };
    assert.match(rankEnv.valueFrom.fieldRef.fieldPath, /job-completion-index/);

    metricsBody = "pretrain_global_step 1234\npretrain_epoch 5\npretrain_train_loss 0.4321\n";
    await createPods(env.client, a1, { podIP: "127.0.0.1" });
    await jobRunning(env.client, a1);
    const running = await eventually(
      "Running with progress",
      async () => {
        const s = await runStatus(ns, "run");
        const p = s.progress as { step?: number } | undefined;
        return s.phase === "Running" && p?.step === 1234 ? s : undefined;
      },
      20_000,
      () => describeNs(ns),
    );
    assert.deepEqual(
      { ...(running.progress as object), lastUpdatedTime: undefined },
      { step: 1234, epoch: 5, loss: "0.4321", percent: 50, lastUpdatedTime: undefined },
    );
    assert.equal((running.replicas as { ready: number }).ready, 2);

    await jobFinished(env.client, a1, "Complete");
    const done = await eventually("Succeeded", async () => {
      const s = await runStatus(ns, "run");
      return s.phase === "Succeeded" ? s : undefined;
    });
    assert.ok(done.completionTime);
    // Events are recorded right after the status patch: poll for them.
    for (const r of ["JobCreated", "AllPodsReady", "Completed"])
      await eventually(`event ${r}`, async () => (await eventsFor(env.client, ns, "run")).some((x) => x.reason === r));

    // A changed Collection makes the Plan Stale (it is not rebuilt).
    const colNow = await getCr(env.client, "Collection", ns, "col");
    await env.client.patch(API_VERSION, "Collection", ns, "col", { spec: { dataset: "Dataset002_Other" } });
    assert.ok(colNow.metadata.generation === 1);
    const ij2 = await job(ns, "col-index-g2");
    const ipods2 = await createPods(env.client, ij2);
    await terminatePod(
      env.client,
      ns,
      ipods2[0]!.metadata.name,
      "index",
      0,
      JSON.stringify({
        datasets: 1,
        subjects: 3,
        sessions: 3,
        images: 6,
        modalities: { T1w: 6 },
        bytes: 2000,
        contentHash: `sha256:${"b".repeat(64)}`,
      }),
    );
    await jobFinished(env.client, ij2, "Complete");
    await eventually(
      "Plan Stale",
      async () => condition(await getCr(env.client, "Plan", ns, "plan"), "Stale")?.status === "True",
    );
    const planAfter = await getCr(env.client, "Plan", ns, "plan");
    assert.equal(planAfter.status?.phase, "Ready");
    assert.equal(condition(planAfter, "Stale")?.reason, "CollectionChanged");
  });

  test("preprocessing Job fails → Plan Failed with the termination message", async () => {
    const ns = await createNamespace(env.client, "prepfail");
    await env.client.create(cr("Collection", ns, "col", { source: { pvc: { claimName: "raw" } }, dataset: "1" }));
    await env.client.create(
      cr("Plan", ns, "plan", {
        collectionRef: { name: "col" },
        preprocess: { image: IMAGE },
        output: { pvc: { claimName: "prep" } },
      }),
    );
    const j = await job(ns, "plan-prep");
    const pods = await createPods(env.client, j);
    await terminatePod(
      env.client,
      ns,
      pods[0]!.metadata.name,
      "preprocess",
      3,
      "DataError: /data/raw/Dataset001_X/imagesTr/a.nii.gz: truncated gzip stream",
    );
    await jobFinished(env.client, j, "Failed");
    const p = await eventually("Plan Failed", async () => {
      const x = await getCr(env.client, "Plan", ns, "plan");
      return x.status?.phase === "Failed" ? x : undefined;
    });
    assert.equal(condition(p, "Failed")?.reason, "PreprocessingFailed");
    assert.match(condition(p, "Failed")?.message ?? "", /truncated gzip stream/);
    assert.equal(condition(p, "Ready")?.status, "False");
    const ev = await eventually("Warning event", async () =>
      (await eventsFor(env.client, ns, "plan")).find((e) => e.type === "Warning" && e.reason === "PreprocessingFailed"),
    );
    assert.match(ev.note, /truncated gzip/);
  });

  test("rank failure → new attempt resuming from the latest checkpoint; preemption not counted; maxRestarts exhausted → Failed", async () => {
    const ns = await createNamespace(env.client, "restarts");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "run", runSpec({}, { maxRestarts: 1 })));
    const a1 = await job(ns, "run-a1");
    const p1 = await createPods(env.client, a1);
    await jobRunning(env.client, a1);
    // Rank 1 fails (counts).
    await terminatePod(
      env.client,
      ns,
      p1[1]!.metadata.name,
      "trainer",
      1,
      "TrainingError: loss became NaN at step 120",
    );
    await terminatePod(env.client, ns, p1[0]!.metadata.name, "trainer", 137, "killed");
    await jobFinished(env.client, a1, "Failed");
    const a2 = await job(ns, "run-a2");
    assert.equal(envOf(a2).SSL3D_RESUME, "latest");
    assert.equal(envOf(a2).SSL3D_ATTEMPT, "2");
    assert.equal(envOf(a2).PET_MASTER_ADDR, "run-a2-0.run");
    let s = await runStatus(ns, "run");
    assert.equal(s.attempt, 2);
    assert.equal(s.restarts, 1);
    assert.equal(s.restartsCountTowardsMax, 1);
    assert.equal((s.lastFailure as { reason: string }).reason, "RankFailed");
    assert.match((s.lastFailure as { message: string }).message, /loss became NaN/);
    await eventually("attempt 1 Job deleted", async () => (await getJob(env.client, ns, "run-a1")) === undefined);

    // Attempt 2 is preempted: restarts, but does not count against maxRestarts (1, already used).
    const p2 = await createPods(env.client, a2);
    await jobRunning(env.client, a2);
    await terminatePod(env.client, ns, p2[0]!.metadata.name, "trainer", 143, "SIGTERM", true);
    await terminatePod(env.client, ns, p2[1]!.metadata.name, "trainer", 143, "SIGTERM", true);
    await jobFinished(env.client, a2, "Failed", {
      reason: "PodFailurePolicy",
      message: `Pod ${ns}/run-a2-0 has condition DisruptionTarget matching FailJob rule at index 0`,
    });
    const a3 = await job(ns, "run-a3");
    s = await runStatus(ns, "run");
    assert.equal(s.restarts, 2);
    assert.equal(s.restartsCountTowardsMax, 1);
    assert.equal((s.lastFailure as { reason: string }).reason, "Preempted");

    // Attempt 3 fails for real: maxRestarts (1) is exhausted.
    const p3 = await createPods(env.client, a3);
    await terminatePod(env.client, ns, p3[0]!.metadata.name, "trainer", 1, "TrainingError: out of memory");
    await terminatePod(env.client, ns, p3[1]!.metadata.name, "trainer", 137, "killed");
    await jobFinished(env.client, a3, "Failed");
    s = await eventually("Failed", async () => {
      const x = await runStatus(ns, "run");
      return x.phase === "Failed" ? x : undefined;
    });
    const failed = condition({ status: s }, "Failed");
    assert.equal(failed?.reason, "BackoffLimitExceeded");
    assert.match(failed.message, /out of memory/);
    assert.equal(s.restarts, 2);
    assert.equal(await getJob(env.client, ns, "run-a4"), undefined);
    for (const r of ["Warning/RankFailed", "Warning/Preempted", "Warning/BackoffLimitExceeded"]) {
      await eventually(`event ${r}`, async () =>
        (await eventsFor(env.client, ns, "run")).some((e) => `${e.type}/${e.reason}` === r),
      );
    }
  });

  test("suspend deletes the attempt Job, resume creates a new attempt; deadline → Failed/DeadlineExceeded", async () => {
    const ns = await createNamespace(env.client, "suspend");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "run", runSpec({}, { activeDeadlineSeconds: 3600 })));
    const a1 = await job(ns, "run-a1");
    await createPods(env.client, a1);
    await jobRunning(env.client, a1);
    await eventually("Running", async () => (await runStatus(ns, "run")).phase === "Running");
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: true } });
    await eventually("attempt Job deleted", async () => (await getJob(env.client, ns, "run-a1")) === undefined);
    // The garbage collector removes the deleted attempt's pods; without one, the test does its job.
    if (!env.cluster.garbageCollector) for (const i of [0, 1]) await env.client.delete("v1", "Pod", ns, `run-a1-${i}`);
    await eventually(
      "attempt pods gone",
      async () => (await env.client.list("v1", "Pod", ns, "ssl3d.io/attempt=1")).items.length === 0,
      30_000,
    );
    let s = await eventually("Suspended", async () => {
      const x = await runStatus(ns, "run");
      return x.phase === "Suspended" ? x : undefined;
    });
    assert.equal(condition({ status: s }, "Suspended")?.status, "True");
    assert.ok(await env.client.get("v1", "Service", ns, "run"), "the Service is kept while suspended");
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: false } });
    const a2 = await job(ns, "run-a2");
    assert.equal(envOf(a2).SSL3D_RESUME, "latest");
    s = await runStatus(ns, "run");
    assert.equal(condition({ status: s }, "Suspended")?.reason, "Resumed");
    assert.equal(s.restarts ?? 0, 0, "suspend/resume is not a restart");

    // Deadline: a second run with a 2 s deadline.
    await env.client.create(cr("PretrainRun", ns, "short", runSpec({}, { activeDeadlineSeconds: 2 })));
    const b1 = await job(ns, "short-a1");
    await createPods(env.client, b1);
    await jobRunning(env.client, b1);
    s = await eventually(
      "DeadlineExceeded",
      async () => {
        const x = await runStatus(ns, "short");
        return x.phase === "Failed" ? x : undefined;
      },
      15_000,
    );
    assert.equal(condition({ status: s }, "Failed")?.reason, "DeadlineExceeded");
    await eventually(
      "attempt Job deleted after the deadline",
      async () => (await getJob(env.client, ns, "short-a1")) === undefined,
    );
  });

  test("immutable fields and one-of sources are enforced by the API server (CEL)", async () => {
    const ns = await createNamespace(env.client, "cel");
    await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    await assert.rejects(
      env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { planRef: { name: "other" } } }),
      (err: unknown) => httpStatus(err) === 422 && /planRef is immutable/.test(String(err)),
    );
    await assert.rejects(
      env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { numNodes: 8 } }),
      (err: unknown) => httpStatus(err) === 422 && /numNodes is immutable/.test(String(err)),
    );
    await assert.rejects(
      env.client.create(
        cr("Collection", ns, "escape", { source: { pvc: { claimName: "x", subPath: "../etc" } }, dataset: "1" }),
      ),
      (err: unknown) => httpStatus(err) === 422 && /subPath must be relative/.test(String(err)),
    );
    await assert.rejects(
      env.client.create(cr("PretrainRun", ns, "Bad_Name", runSpec())),
      (err: unknown) => httpStatus(err) === 422,
    );
    // Mutable fields still update.
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { runPolicy: { maxRestarts: 5 } } });
  });

  test("an invalid PretrainRun gets a condition and a Warning event while another proceeds", async () => {
    const ns = await createNamespace(env.client, "invalid");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "bad", runSpec({ metrics: { port: 29500 } })));
    await env.client.create(
      cr("PretrainRun", ns, "bad-config", runSpec({ training: { configuration: "3d_fullres" } })),
    );
    await env.client.create(cr("PretrainRun", ns, "good", runSpec()));
    await job(ns, "good-a1");
    const bad = await eventually("ValidationFailed", async () => {
      const x = await getCr(env.client, "PretrainRun", ns, "bad");
      return condition(x, "Failed")?.reason === "ValidationFailed" ? x : undefined;
    });
    assert.match(condition(bad, "Failed")?.message ?? "", /29500 is the rendezvous port/);
    const badConfig = await eventually("ValidationFailed (cross-object)", async () => {
      const x = await getCr(env.client, "PretrainRun", ns, "bad-config");
      return condition(x, "Failed")?.reason === "ValidationFailed" ? x : undefined;
    });
    assert.match(condition(badConfig, "Failed")?.message ?? "", /3d_fullres is not one of/);
    const ev = await eventually("Warning event", async () =>
      (await eventsFor(env.client, ns, "bad")).find((e) => e.type === "Warning" && e.reason === "ValidationFailed"),
    );
    assert.match(ev.note, /29500 is the rendezvous port/);
    assert.equal(await getJob(env.client, ns, "bad-a1"), undefined);
    // Status is patched only on change: a reconcile triggered by a metadata edit leaves the resourceVersion alone.
    const reconciles = async (): Promise<number> =>
      (await metrics.reconcileTotal.get()).values
        .filter((v) => v.labels.controller === "pretrainrun")
        .reduce((n, v) => n + v.value, 0);
    // Settled: the reconcile that saw its Job has run (Running=False/PodsNotReady) and nothing is queued.
    await eventually(
      "good settled",
      async () => condition(await getCr(env.client, "PretrainRun", ns, "good"), "Running")?.reason === "PodsNotReady",
    );
    await manager.queues.PretrainRun.idle();
    const n0 = await reconciles();
    await env.client.patch(API_VERSION, "PretrainRun", ns, "good", { metadata: { annotations: { touched: "1" } } });
    const rv = (await getCr(env.client, "PretrainRun", ns, "good")).metadata.resourceVersion;
    await eventually("a reconcile after the edit", async () => (await reconciles()) > n0);
    await manager.queues.PretrainRun.idle();
    assert.equal((await getCr(env.client, "PretrainRun", ns, "good")).metadata.resourceVersion, rv);
    // Fixing the spec (a new generation) lets it proceed.
    await env.client.patch(API_VERSION, "PretrainRun", ns, "bad", { spec: { metrics: { port: metricsPort } } });
    await job(ns, "bad-a1");
  });

  test("Volcano PodGroup and Kueue admission; suspend removes the PodGroup; TTL deletes the finished run", async () => {
    const ns = await createNamespace(env.client, "gang");
    // A minimal stand-in for Volcano's CRD (the operator only applies and deletes PodGroups).
    await applyCrdYaml(
      env.client,
      [
        "apiVersion: apiextensions.k8s.io/v1",
        "kind: CustomResourceDefinition",
        "metadata: {name: podgroups.scheduling.volcano.sh}",
        "spec:",
        "  group: scheduling.volcano.sh",
        "  names: {kind: PodGroup, plural: podgroups, singular: podgroup}",
        "  scope: Namespaced",
        "  versions: [{name: v1beta1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]",
      ].join("\n"),
      "ssl3d-tests",
    );
    await readyPlan(ns);
    await env.client.create(
      cr(
        "PretrainRun",
        ns,
        "run",
        runSpec(
          { scheduling: { queueName: "gpu", gang: { scheduler: "volcano", queue: "research" } } },
          { ttlSecondsAfterFinished: 1 },
        ),
      ),
    );
    const pg = await eventually("PodGroup", () =>
      env.client.get<{ spec: { minMember: number; queue: string } }>(
        "scheduling.volcano.sh/v1beta1",
        "PodGroup",
        ns,
        "run",
      ),
    );
    assert.deepEqual(pg.spec, { minMember: 2, queue: "research" });
    const a1 = await job(ns, "run-a1");
    const tmpl = a1.spec.template as unknown as {
      metadata: { annotations: Record<string, string> };
      spec: { schedulerName: string };
    };
    assert.equal(tmpl.metadata.annotations["scheduling.k8s.io/group-name"], "run");
    assert.equal(tmpl.spec.schedulerName, "volcano");
    // Kueue suspends the Job it manages (another field manager): the run is Queued, and the operator leaves it alone.
    await env.client.patch("batch/v1", "Job", ns, "run-a1", { spec: { suspend: true } }, { fieldManager: "kueue" });
    await eventually(
      "Queued/WaitingForAdmission",
      async () =>
        condition(await getCr(env.client, "PretrainRun", ns, "run"), "Queued")?.reason === "WaitingForAdmission",
    );
    assert.equal((await getJob(env.client, ns, "run-a1"))?.spec.suspend, true);
    await env.client.patch("batch/v1", "Job", ns, "run-a1", { spec: { suspend: false } }, { fieldManager: "kueue" });
    await eventually(
      "Admitted",
      async () => condition(await getCr(env.client, "PretrainRun", ns, "run"), "Queued")?.reason === "Admitted",
    );
    // Suspending deletes the attempt and the PodGroup.
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: true } });
    await eventually(
      "PodGroup deleted",
      async () => (await env.client.get("scheduling.volcano.sh/v1beta1", "PodGroup", ns, "run")) === undefined,
    );
    await env.client.patch(API_VERSION, "PretrainRun", ns, "run", { spec: { suspend: false } });
    const a2 = await job(ns, "run-a2");
    await eventually("PodGroup re-created", () =>
      env.client.get("scheduling.volcano.sh/v1beta1", "PodGroup", ns, "run"),
    );
    await createPods(env.client, a2);
    await jobFinished(env.client, a2, "Complete");
    await eventually(
      "run deleted after its TTL",
      async () => (await env.client.get(API_VERSION, "PretrainRun", ns, "run")) === undefined,
      20_000,
    );
  });

  test("deleting a PretrainRun deletes its children (ownerReferences)", async () => {
    const ns = await createNamespace(env.client, "gc");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    const a1 = await job(ns, "run-a1");
    const run = await getCr(env.client, "PretrainRun", ns, "run");
    for (const child of [a1, await env.client.get("v1", "Service", ns, "run")]) {
      const ref = child?.metadata.ownerReferences?.[0];
      assert.equal(ref?.kind, "PretrainRun");
      assert.equal(ref.uid, run.metadata.uid);
      assert.equal(ref.controller, true);
    }
    await env.client.delete(API_VERSION, "PretrainRun", ns, "run");
    if (env.cluster.garbageCollector) {
      await eventually(
        "children garbage-collected",
        async () =>
          (await getJob(env.client, ns, "run-a1")) === undefined &&
          (await env.client.get("v1", "Service", ns, "run")) === undefined,
        30_000,
      );
    }
  });
});
