/**
 * The run-level Kueue Workload decisions of the PretrainRun reconciler (ADR 0088): the Workload it applies, when an
 * attempt may run, what eviction stops and gives back, and the Finished mark that releases the quota.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Condition } from "../../../../api/v1alpha1/common.js";
import type { PretrainRunStatus } from "../../../../api/v1alpha1/pretrain-run.js";
import { PretrainRunReason } from "../../../../api/v1alpha1/reasons.js";
import { aJob, aPod, aResource, readyPlanResource, T0 } from "../testing.js";
import type { CustomResource, JobView, KubeObject, PodView, ReconcileResult } from "../types.js";
import { reconcilePretrainRun } from "./reconcile.js";
import { workloadAdmission, type WorkloadView } from "./workload.js";

const QUEUE = { "kueue.x-k8s.io/queue-name": "lq" };
const runLabels = { "ssl3d.io/run": "run" };
const spec = {
  planRef: { name: "plan" },
  image: "img",
  numNodes: 2,
  resourcesPerNode: { requests: { cpu: "2" } },
  priorityClassName: "high",
  storage: { checkpoints: { claimName: "ckpt" } },
};

function queuedRun(
  status?: Partial<PretrainRunStatus>,
  extra: Record<string, unknown> = {},
  labels: Record<string, string> = QUEUE,
): CustomResource {
  const r = aResource("PretrainRun", "run", { ...spec, ...extra }, status);
  return { ...r, metadata: { ...r.metadata, labels } };
}

const cond = (type: string, status: "True" | "False", reason = type, message = ""): Condition => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: "2026-03-01T11:59:00Z",
});

function wl(conditions: Condition[], admitted = true): WorkloadView {
  return {
    metadata: { name: "pretrainrun-run", namespace: "ns", generation: 1, resourceVersion: "42" },
    status: { conditions, ...(admitted ? { admission: { clusterQueue: "cq" } } : {}) },
  };
}
const ADMITTED = wl([cond("QuotaReserved", "True"), cond("Admitted", "True")]);
const PENDING = wl(
  [cond("QuotaReserved", "False", "Pending", "couldn't assign flavors to pod set trainer: insufficient quota for cpu")],
  false,
);
const EVICTED = wl([
  cond("QuotaReserved", "True"),
  cond("Admitted", "True"),
  cond("Evicted", "True", "Deactivated", "The workload is deactivated"),
]);

const running = (n: number): Partial<PretrainRunStatus> => ({
  phase: "Running",
  attempt: n,
  activeJob: `run-a${n}`,
  startTime: "2026-03-01T11:00:00Z",
});
const attemptJob = (n: number, o: Parameters<typeof aJob>[1] = {}): JobView =>
  aJob(`run-a${n}`, { labels: { ...runLabels, "ssl3d.io/attempt": String(n) }, ...o });
const attemptPod = (n: number, i: number): PodView =>
  aPod(`run-a${n}`, i, { labels: { ...runLabels, "ssl3d.io/attempt": String(n) } });

function reconcile(
  run: CustomResource,
  workload: WorkloadView | undefined,
  jobs: JobView[] = [],
  pods: PodView[] = [],
): ReconcileResult<PretrainRunStatus> {
  return reconcilePretrainRun({ run, plan: readyPlanResource(), jobs, pods, workload, now: T0 });
}
const c = (r: ReconcileResult<PretrainRunStatus>, type: string): Condition | undefined =>
  r.status.conditions?.find((x) => x.type === type);
const applied = (r: ReconcileResult<PretrainRunStatus>, kind: string): KubeObject[] =>
  r.apply.filter((o) => o.kind === kind);

test("Workload: one per run, owned by it, the gang as one pod set with the trainer's requests and priority", () => {
  const r = reconcile(queuedRun(), undefined);
  const [w] = applied(r, "Workload");
  assert.ok(w);
  assert.equal(w.apiVersion, "kueue.x-k8s.io/v1beta2");
  assert.equal(w.metadata.name, "pretrainrun-run");
  assert.deepEqual(w.metadata.ownerReferences?.[0], {
    apiVersion: "ssl3d.io/v1alpha1",
    kind: "PretrainRun",
    name: "run",
    uid: "run-uid",
    controller: true,
    blockOwnerDeletion: true,
  });
  const s = w.spec as {
    queueName: string;
    active?: boolean;
    priorityClassRef?: unknown;
    podSets: { name: string; count: number; template: { spec: Record<string, unknown> } }[];
  };
  assert.equal(s.queueName, "lq");
  assert.equal(s.active, undefined, "active is left to Kueue and administrators while the run is not suspended");
  assert.deepEqual(s.priorityClassRef, { group: "scheduling.k8s.io", kind: "PriorityClass", name: "high" });
  assert.equal(s.podSets.length, 1);
  assert.equal(s.podSets[0]!.name, "trainer");
  assert.equal(s.podSets[0]!.count, 2);
  const tpl = s.podSets[0]!.template.spec as { priorityClassName: string; containers: { resources: unknown }[] };
  assert.equal(tpl.priorityClassName, "high");
  assert.deepEqual(tpl.containers[0]!.resources, { requests: { cpu: "2" } });
  // A Kueue WorkloadPriorityClass label wins over the pod PriorityClass.
  const wpc = reconcile(queuedRun(undefined, {}, { ...QUEUE, "kueue.x-k8s.io/priority-class": "urgent" }), undefined);
  assert.deepEqual((applied(wpc, "Workload")[0]!.spec as { priorityClassRef: unknown }).priorityClassRef, {
    group: "kueue.x-k8s.io",
    kind: "WorkloadPriorityClass",
    name: "urgent",
  });
  // The same Workload for every attempt (nothing attempt-specific in it).
  const later = reconcile(queuedRun(running(3)), ADMITTED, [attemptJob(3, { ready: 2 })]);
  assert.deepEqual(applied(later, "Workload")[0], w);
});

test("Workload: not admitted yet → no attempt Job, Queued and Suspended with Kueue's reason naming the queue", () => {
  for (const workload of [undefined, PENDING]) {
    const r = reconcile(queuedRun(), workload);
    assert.equal(applied(r, "Job").length, 0);
    assert.equal(r.status.phase, "Queued");
    assert.equal(r.status.attempt, undefined);
    assert.equal(r.status.startTime, undefined, "the deadline clock does not run while queued");
    assert.equal(c(r, "Queued")?.status, "True");
    assert.equal(c(r, "Queued")?.reason, PretrainRunReason.WaitingForAdmission);
    assert.match(c(r, "Queued")!.message, /Workload pretrainrun-run .*LocalQueue lq/);
    assert.equal(c(r, "Suspended")?.status, "True");
  }
  assert.match(c(reconcile(queuedRun(), PENDING), "Queued")!.message, /insufficient quota for cpu/);
});

test("Workload: none while the Plan is not Ready (no quota held by a run that cannot start)", () => {
  const r = reconcilePretrainRun({ run: queuedRun(), plan: undefined, jobs: [], pods: [], now: T0 });
  assert.equal(applied(r, "Workload").length, 0);
  assert.equal(c(r, "Queued")?.reason, PretrainRunReason.PlanNotReady);
});

test("Workload: admitted → attempt 1 starts (Resumed event, deadline clock starts); no queue label on the Job", () => {
  const waiting = reconcile(queuedRun(), PENDING);
  const r = reconcile(queuedRun(waiting.status, { scheduling: { queueName: "other" } }), ADMITTED);
  const [job] = applied(r, "Job");
  assert.equal(job?.metadata.name, "run-a1");
  assert.equal(job.metadata.labels?.["kueue.x-k8s.io/queue-name"], undefined);
  assert.equal(c(r, "Suspended")?.status, "False");
  assert.equal(r.status.startTime, "2026-03-01T12:00:00Z");
  assert.ok(r.events.some((e) => e.reason === PretrainRunReason.Resumed && /ClusterQueue cq/.test(e.note)));
});

test("Workload: evicted → the attempt Job is deleted; the quota is given back only once no pod is left", () => {
  const withPods = reconcile(queuedRun(running(1)), EVICTED, [attemptJob(1, { ready: 2 })], [attemptPod(1, 0)]);
  assert.ok(withPods.delete.some((d) => d.kind === "Job" && d.name === "run-a1"));
  assert.equal(applied(withPods, "Job").length, 0);
  assert.equal(c(withPods, "Suspended")?.reason, PretrainRunReason.Evicted);
  assert.match(c(withPods, "Suspended")!.message, /Deactivated.*Attempt 1 is stopped/);
  assert.equal(withPods.statusUpdates, undefined, "the quota stays reserved while ranks still run");
  assert.ok(withPods.events.some((e) => e.reason === PretrainRunReason.Evicted));

  const gone = reconcile(queuedRun(withPods.status), EVICTED);
  const [u] = gone.statusUpdates ?? [];
  assert.ok(u);
  assert.equal(u.kind, "Workload");
  assert.equal(u.name, "pretrainrun-run");
  assert.equal(u.resourceVersion, "42");
  const status = u.to as { admission?: { clusterQueue?: string } | null; conditions: Condition[] };
  const after: WorkloadView = { ...EVICTED, status };
  assert.equal(status.admission, null);
  const reserved = status.conditions.find((x) => x.type === "QuotaReserved");
  assert.deepEqual([reserved?.status, reserved?.reason], ["False", "Pending"]);
  assert.equal(status.conditions.find((x) => x.type === "Admitted")?.status, "False");
  assert.equal(status.conditions.find((x) => x.type === "Requeued")?.status, "False");
  assert.equal(workloadAdmission(after).kind, "pending");

  // Re-admitted: the next attempt resumes; an eviction is not a restart.
  const back = reconcile(queuedRun(gone.status), ADMITTED);
  assert.equal(applied(back, "Job")[0]?.metadata.name, "run-a2");
  assert.equal(back.status.restarts, undefined);
});

test("Workload: a preemption is requeued (Requeued=True), as Kueue's job framework does", () => {
  const pre = wl([cond("QuotaReserved", "True"), cond("Admitted", "True"), cond("Evicted", "True", "Preempted", "x")]);
  const r = reconcile(queuedRun({ ...running(1), activeJob: undefined }), pre);
  const requeued = (r.statusUpdates?.[0]?.to.conditions as Condition[]).find((x) => x.type === "Requeued");
  assert.deepEqual([requeued?.status, requeued?.reason], ["True", "Preempted"]);
});

test("Workload: a suspended run's Workload is inactive and no attempt runs", () => {
  const r = reconcile(queuedRun(running(1), { suspend: true }), ADMITTED, [attemptJob(1, { ready: 2 })]);
  assert.equal((applied(r, "Workload")[0]!.spec as { active?: boolean }).active, false);
  assert.ok(r.delete.some((d) => d.name === "run-a1"));
  assert.equal(r.status.phase, "Suspended");
});

test("Workload: the run's end marks it Finished (Succeeded or Failed) so Kueue releases the quota; once", () => {
  const done = reconcile(queuedRun(running(1)), ADMITTED, [attemptJob(1, { condition: { type: "Complete" } })]);
  assert.equal(done.status.phase, "Succeeded");
  const next = reconcile(queuedRun(done.status), ADMITTED);
  const [u] = next.statusUpdates ?? [];
  const fin = (u?.to.conditions as Condition[]).find((x) => x.type === "Finished");
  assert.deepEqual([fin?.status, fin?.reason], ["True", "Succeeded"]);
  assert.equal(applied(next, "Workload").length, 0, "a finished run no longer applies its Workload");
  const finished = wl([...(ADMITTED.status?.conditions ?? []), cond("Finished", "True", "Succeeded")]);
  assert.equal(reconcile(queuedRun(done.status), finished).statusUpdates, undefined);

  const failed = reconcile(queuedRun(running(1), { runPolicy: { maxRestarts: 0 } }), ADMITTED, [
    attemptJob(1, { condition: { type: "Failed", reason: "BackoffLimitExceeded" } }),
  ]);
  assert.equal(failed.status.phase, "Failed");
  const f = (reconcile(queuedRun(failed.status), ADMITTED).statusUpdates?.[0]?.to.conditions as Condition[]).find(
    (x) => x.type === "Finished",
  );
  assert.equal(f?.reason, "Failed");
});

test("Workload: a run without the queue label gets none (scheduling.queueName keeps labelling each attempt Job)", () => {
  const r = reconcile(queuedRun(undefined, { scheduling: { queueName: "gpu" } }, {}), undefined);
  assert.equal(applied(r, "Workload").length, 0);
  assert.equal(applied(r, "Job")[0]?.metadata.labels?.["kueue.x-k8s.io/queue-name"], "gpu");
});
