/**
 * PretrainRun reconciler (pure): observed run, Plan, owned Jobs and Pods, rank 0's metrics and `now` → desired
 * children, status, events and a requeue time. One Indexed Job per attempt (`<run>-a<N>`); a failed attempt is
 * replaced by a new one that resumes from the latest checkpoint (gang restart), bounded by `maxRestarts`, where
 * preemptions (DisruptionTarget) are not counted. Suspend deletes the attempt Job; resume starts a new attempt and
 * restarts the deadline clock.
 */
import { PlanSpecSchema, PlanStatusSchema } from "../../../../api/v1alpha1/plan.js";
import {
  PretrainRunSpecSchema,
  PretrainRunStatusSchema,
  type PretrainRunSpec,
  type PretrainRunStatus,
} from "../../../../api/v1alpha1/pretrain-run.js";
import { envNameProblem } from "../../../../api/pod.js";
import { truncate } from "../../../../api/termination.js";
import { getCondition, isTrue, setCondition, toKubeTime } from "../../conditions.js";
import { compact, parseSpec, parseStatus, transitionEvents } from "../common.js";
import {
  jobCondition,
  podCreationFailure,
  podsOfJob,
  type ChildRef,
  type ChildStatusUpdate,
  type CustomResource,
  type EventSpec,
  type JobView,
  type KubeObject,
  type PodCreationFailure,
  type PodView,
  type ReconcileResult,
} from "../types.js";
import {
  attemptJobName,
  desiredAttemptJob,
  desiredNetworkPolicy,
  desiredPodGroup,
  desiredRunSecret,
  desiredService,
  OPERATOR_VOLUMES,
  type PlanInputs,
} from "./desired.js";
import { attemptFailure, pendingProblem, startupDeadlineExceeded, type ChildRefusal } from "./failures.js";
import {
  clearedAdmission,
  desiredWorkload,
  finishedWorkload,
  runQueueName,
  workloadAdmission,
  workloadName,
  type WorkloadView,
} from "./workload.js";
import { PretrainRunReason } from "../../../../api/v1alpha1/reasons.js";

/** Values the shell scraped from rank 0's /metrics. */
export interface ProgressSample {
  attempt: number;
  step?: number | undefined;
  epoch?: number | undefined;
  loss?: number | undefined;
  time: Date;
}

export interface PretrainRunObserved {
  run: CustomResource;
  /** The referenced Plan, undefined when it does not exist. */
  plan: CustomResource | undefined;
  /** Jobs owned by the run (all attempts still present). */
  jobs: readonly JobView[];
  /** Pods of the run (label ssl3d.io/run). */
  pods: readonly PodView[];
  metrics?: ProgressSample | undefined;
  /** A child the API server refused on the last apply (cleared when an apply succeeds). */
  refused?: ChildRefusal | undefined;
  /** FailedCreate Warning Events of the run's Jobs (the Job controller could not create pods). */
  podCreationFailures?: readonly PodCreationFailure[] | undefined;
  /** The run's Kueue Workload (runs labelled kueue.x-k8s.io/queue-name), undefined when absent or not watched. */
  workload?: WorkloadView | undefined;
  now: Date;
}

export const WAIT_FOR_PODS_MS = 2_000;

type PlanResolution =
  { kind: "ok"; inputs: PlanInputs } | { kind: "wait"; message: string } | { kind: "invalid"; message: string };

export function resolvePlan(spec: PretrainRunSpec, plan: CustomResource | undefined): PlanResolution {
  const name = spec.planRef.name;
  if (plan === undefined) return { kind: "wait", message: `Plan ${name} does not exist.` };
  const ps = parseStatus(PlanStatusSchema, plan.status);
  const pspec = PlanSpecSchema.safeParse(plan.spec);
  if (ps.phase !== "Ready" || !isTrue(ps.conditions, "Ready") || !pspec.success || ps.dataset === undefined) {
    return { kind: "wait", message: `Plan ${name} is not Ready.` };
  }
  const configs = ps.outputs?.configurations ?? [];
  const configuration = spec.training.configuration ?? configs[0];
  if (configuration === undefined)
    return { kind: "invalid", message: `Plan ${name} lists no configuration; set spec.training.configuration.` };
  if (configs.length > 0 && !configs.includes(configuration)) {
    return {
      kind: "invalid",
      message: `spec.training.configuration: ${configuration} is not one of Plan ${name}'s configurations (${configs.join(", ")}).`,
    };
  }
  return {
    kind: "ok",
    inputs: { dataset: ps.dataset, configuration, plansName: pspec.data.plansName, dataPvc: pspec.data.output.pvc },
  };
}

/** Checks the API server's schema cannot express cheaply; a failure is a ValidationFailed condition. */
export function validateRun(spec: PretrainRunSpec): string | undefined {
  for (const [i, e] of (spec.env ?? []).entries()) {
    const problem = envNameProblem(e.name);
    if (problem !== undefined) return `spec.env[${i}].name: ${problem}.`;
  }
  if (spec.metrics.port === 29500) return "spec.metrics.port: 29500 is the rendezvous port.";
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    if ((OPERATOR_VOLUMES as readonly string[]).includes(v.name))
      return `spec.volumes[${i}].name: ${v.name} is one of the operator's volumes (${OPERATOR_VOLUMES.join(", ")}).`;
  }
  for (const k of Object.keys(spec.podLabels ?? {})) {
    if (k.startsWith("ssl3d.io/")) return `spec.podLabels: ${k} is the operator's label.`;
  }
  return undefined;
}

/** Rank 0 of the current attempt, when it runs and has an IP: where the shell scrapes progress. */
export function scrapeTarget(o: PretrainRunObserved): { attempt: number; url: string; intervalMs: number } | undefined {
  const spec = PretrainRunSpecSchema.safeParse(o.run.spec);
  const status = parseStatus(PretrainRunStatusSchema, o.run.status);
  if (
    !spec.success ||
    spec.data.metrics.scrapeIntervalSeconds === 0 ||
    status.attempt === undefined ||
    status.attempt === 0
  )
    return undefined;
  const job = attemptJobName(o.run.metadata.name, status.attempt);
  const rank0 = podsOfJob(o.pods, job).find(
    (p) =>
      p.metadata.labels?.["batch.kubernetes.io/job-completion-index"] === "0" ||
      p.metadata.annotations?.["batch.kubernetes.io/job-completion-index"] === "0",
  );
  const ip = rank0?.status?.podIP;
  if (rank0?.status?.phase !== "Running" || ip === undefined || ip === "") return undefined;
  const host = ip.includes(":") ? `[${ip}]` : ip;
  return {
    attempt: status.attempt,
    url: `http://${host}:${spec.data.metrics.port}${spec.data.metrics.path}`,
    intervalMs: spec.data.metrics.scrapeIntervalSeconds * 1000,
  };
}

function isActivePod(p: PodView): boolean {
  const phase = p.status?.phase;
  return phase === undefined || phase === "Pending" || phase === "Running" || phase === "Unknown";
}

/** The state one reconcile builds up: the next status, children to apply and delete, extra events, a requeue. */
class Step {
  s: PretrainRunStatus;
  readonly old: PretrainRunStatus;
  readonly apply: KubeObject[] = [];
  readonly del: ChildRef[] = [];
  readonly events: EventSpec[] = [];
  readonly statusUpdates: ChildStatusUpdate[] = [];
  readonly gen: number;
  readonly nowIso: string;
  requeue: number | undefined;
  deleteSelf = false;

  constructor(readonly o: PretrainRunObserved) {
    this.gen = o.run.metadata.generation ?? 1;
    this.old = parseStatus(PretrainRunStatusSchema, o.run.status);
    this.s = { ...this.old, observedGeneration: this.gen };
    this.nowIso = toKubeTime(o.now);
  }

  get run(): string {
    return this.o.run.metadata.name;
  }
  wake(ms: number): void {
    this.requeue = this.requeue === undefined ? Math.max(0, ms) : Math.min(this.requeue, Math.max(0, ms));
  }
  set(type: string, st: "True" | "False", reason: string, message: string): void {
    this.s.conditions = setCondition(this.s.conditions, { type, status: st, reason, message }, this.gen, this.o.now);
  }
  setIfPresent(type: string, st: "True" | "False", reason: string, message: string): void {
    if (getCondition(this.s.conditions, type) !== undefined) this.set(type, st, reason, message);
  }
  deleteJob(name: string): void {
    this.del.push({ apiVersion: "batch/v1", kind: "Job", name });
  }
  done(): ReconcileResult<PretrainRunStatus> {
    return {
      status: this.s,
      apply: this.apply,
      delete: this.del,
      // Restarts get one explicit event each (the Restarting condition may stay True across several).
      events: [...transitionEvents(this.old.conditions, this.s.conditions ?? [], ["Restarting"]), ...this.events],
      ...(this.requeue !== undefined ? { requeueAfterMs: this.requeue } : {}),
      ...(this.statusUpdates.length > 0 ? { statusUpdates: this.statusUpdates } : {}),
      ...(this.deleteSelf ? { deleteSelf: true } : {}),
    };
  }
}

export function reconcilePretrainRun(o: PretrainRunObserved): ReconcileResult<PretrainRunStatus> {
  const st = new Step(o);
  const spec = validated(st);
  if (spec === undefined) return st.done();
  const attemptNow = st.s.attempt ?? 0;
  const current =
    attemptNow > 0 ? o.jobs.find((j) => j.metadata.name === attemptJobName(st.run, attemptNow)) : undefined;
  if (isTrue(st.s.conditions, "Succeeded") || isTrue(st.s.conditions, "Failed")) {
    finishedRun(st, spec);
    return st.done();
  }
  recordRefusal(st);
  // Jobs of earlier attempts are obsolete.
  for (const j of o.jobs) if (j !== current) st.deleteJob(j.metadata.name);
  const queue = queueGate(st, spec);
  if (spec.suspend) {
    suspended(st, spec, current);
    return st.done();
  }
  if (queue.kind === "waiting") {
    waitingForKueue(st, spec, current, queue.reason, queue.message);
    return st.done();
  }
  let { attempt, job } = admitted(st, attemptNow, current, queue.note);
  if (deadlineExceeded(st, spec, job)) return st.done();
  if (job !== undefined && jobCondition(job, "Complete")) {
    completed(st, spec, job, attempt);
    return st.done();
  }
  if (job !== undefined) {
    const next = failedOrStuck(st, spec, job, attempt);
    if (next === "stop") return st.done();
    if (next === "restart") {
      attempt += 1;
      job = undefined;
    }
  }
  if (job === undefined) startAttempt(st, spec, attempt);
  else observeAttempt(st, spec, job, attempt);
  return st.done();
}

/**
 * 1. Validation (schema, then semantic rules). Not terminal: a corrected spec (new generation) proceeds. A run that
 * already succeeded or failed at run time keeps that outcome whatever later (invalid) edits say.
 */
function validated(st: Step): PretrainRunSpec | undefined {
  const oldFailed = getCondition(st.old.conditions, "Failed");
  const finished =
    isTrue(st.old.conditions, "Succeeded") || (oldFailed?.status === "True" && oldFailed.reason !== "ValidationFailed");
  const parsed = parseSpec(PretrainRunSpecSchema, st.o.run.spec);
  if (!parsed.ok && finished) return undefined;
  const invalid = parsed.ok ? validateRun(parsed.value) : parsed.message;
  if (!parsed.ok || (invalid !== undefined && !finished)) {
    st.s.phase = "Failed";
    st.set("Failed", "True", PretrainRunReason.ValidationFailed, invalid ?? "invalid spec");
    return undefined;
  }
  if (oldFailed?.status === "True" && oldFailed.reason === "ValidationFailed") {
    st.set("Failed", "False", PretrainRunReason.Validated, "The spec is valid.");
    st.s.phase = "Pending";
  }
  return parsed.value;
}

/**
 * 2. Terminal: keep the record, stop any attempt still running, release the run's Kueue quota (Workload Finished),
 * delete the run after its TTL.
 */
function finishedRun(st: Step, spec: PretrainRunSpec): void {
  for (const j of st.o.jobs)
    if (!jobCondition(j, "Complete") && !jobCondition(j, "Failed")) st.deleteJob(j.metadata.name);
  const wl = st.o.workload;
  if (wl !== undefined && workloadAdmission(wl).kind !== "finished") {
    const ok = isTrue(st.s.conditions, "Succeeded");
    const c = getCondition(st.s.conditions, ok ? "Succeeded" : "Failed");
    st.statusUpdates.push(
      finishedWorkload(
        wl,
        ok ? "Succeeded" : "Failed",
        c?.message ?? `The run ${ok ? "succeeded" : "failed"}.`,
        st.o.now,
      ),
    );
  }
  const ttl = spec.runPolicy.ttlSecondsAfterFinished;
  if (ttl !== undefined && st.s.completionTime !== undefined) {
    const due = Date.parse(st.s.completionTime) + ttl * 1000;
    if (st.o.now.getTime() >= due) st.deleteSelf = true;
    else st.wake(due - st.o.now.getTime());
  }
}

/**
 * A child the API server refused (Pod Security admission, quota, a policy webhook) is a condition, not a silent
 * retry behind Created=True.
 */
function recordRefusal(st: Step): void {
  const r = st.o.refused;
  if (r !== undefined) {
    st.set(
      "Created",
      "False",
      PretrainRunReason.ChildRefused,
      `The API server refused ${r.kind} ${r.name}: ${truncate(r.message, 600)}`,
    );
  } else if (getCondition(st.s.conditions, "Created")?.reason === "ChildRefused") {
    st.set("Created", "True", PretrainRunReason.ChildrenApplied, "All children were accepted.");
  }
}

/**
 * 3. Suspended (spec.suspend, by a user or a queue): no pod runs. The attempt Job and the PodGroup are deleted (ranks
 * checkpoint on SIGTERM); the Service, NetworkPolicy and Secret stay. Admission later starts a new attempt.
 */
function suspended(st: Step, spec: PretrainRunSpec, current: JobView | undefined): void {
  const attemptNow = st.s.attempt ?? 0;
  if (current !== undefined) st.deleteJob(current.metadata.name);
  const podGroup = desiredPodGroup(st.o.run, spec);
  if (podGroup !== undefined) st.del.push({ apiVersion: podGroup.apiVersion, kind: podGroup.kind, name: st.run });
  st.s = compact({ ...st.s, phase: "Suspended" as const, activeJob: undefined, replicas: undefined });
  st.set(
    "Suspended",
    "True",
    PretrainRunReason.Suspended,
    attemptNow > 0
      ? `Suspended; attempt ${attemptNow} was stopped and the next attempt resumes from the latest checkpoint.`
      : "Suspended before the first attempt: no pods are created until the run is admitted (spec.suspend: false).",
  );
  st.set("Queued", "True", PretrainRunReason.Suspended, "The run waits for admission (spec.suspend is true).");
  st.setIfPresent("Running", "False", PretrainRunReason.Suspended, "The run is suspended.");
}

type QueueGate = { kind: "open"; note: string } | { kind: "waiting"; reason: string; message: string };

/**
 * 3a. Kueue admits the whole run (its kueue.x-k8s.io/queue-name label, ADR 0088): the run's Workload is applied
 * (inactive while spec.suspend) and attempts run only while Kueue admits it. After an eviction, once no attempt and no
 * pod of the run is left, the operator gives the quota back (what Kueue's job framework does for the kinds it knows).
 */
function queueGate(st: Step, spec: PretrainRunSpec): QueueGate {
  const queue = runQueueName(st.o.run);
  if (queue === undefined) return { kind: "open", note: "spec.suspend is false" };
  // No quota is held for a run that could not start anyway: before the first attempt, the Workload waits for the Plan
  // (startAttempt reports Queued/PlanNotReady or the invalid configuration).
  if ((st.s.attempt ?? 0) === 0 && resolvePlan(spec, st.o.plan).kind !== "ok")
    return { kind: "open", note: "spec.suspend is false; the Workload is created once the Plan is Ready" };
  st.apply.push(desiredWorkload(st.o.run, spec, queue));
  const wl = st.o.workload;
  const name = workloadName(st.run);
  const a = workloadAdmission(wl);
  const waiting = (reason: string, message: string): QueueGate => ({ kind: "waiting", reason, message });
  switch (a.kind) {
    case "admitted":
      return { kind: "open", note: `Kueue admitted Workload ${name} in ClusterQueue ${a.clusterQueue}` };
    case "absent":
      return waiting(
        PretrainRunReason.WaitingForAdmission,
        `Workload ${name} is being created in LocalQueue ${queue}; no pods until Kueue admits it.`,
      );
    case "pending":
      return waiting(
        PretrainRunReason.WaitingForAdmission,
        `Workload ${name} waits for admission in LocalQueue ${queue}${a.message !== "" ? `: ${a.message}` : "."}`,
      );
    case "evicted": {
      const running = st.o.jobs.some((j) => !jobCondition(j, "Complete") && !jobCondition(j, "Failed"));
      if (wl !== undefined && !running && !st.o.pods.some(isActivePod))
        st.statusUpdates.push(clearedAdmission(wl, a.reason, a.message, st.o.now));
      return waiting(
        PretrainRunReason.Evicted,
        `Kueue evicted Workload ${name} (${a.reason}: ${a.message}); the run waits to be admitted again in LocalQueue ${queue}.`,
      );
    }
    case "finished":
      return waiting(
        PretrainRunReason.WorkloadFinished,
        `Workload ${name} is Finished but the run is not; delete the Workload to queue the run again.`,
      );
  }
}

/**
 * 3b. Waiting for Kueue: like a suspension (no attempt Job, no PodGroup; the ranks of a stopped attempt checkpoint on
 * SIGTERM), and admission later starts the next attempt, which resumes from the latest checkpoint.
 */
function waitingForKueue(
  st: Step,
  spec: PretrainRunSpec,
  current: JobView | undefined,
  reason: string,
  message: string,
): void {
  const attemptNow = st.s.attempt ?? 0;
  if (current !== undefined) st.deleteJob(current.metadata.name);
  const podGroup = desiredPodGroup(st.o.run, spec);
  if (podGroup !== undefined) st.del.push({ apiVersion: podGroup.apiVersion, kind: podGroup.kind, name: st.run });
  st.s = compact({ ...st.s, phase: "Queued" as const, activeJob: undefined, replicas: undefined });
  const stopped =
    attemptNow > 0 ? ` Attempt ${attemptNow} is stopped; the next attempt resumes from the latest checkpoint.` : "";
  st.set("Suspended", "True", reason, `${message}${stopped}`);
  st.set("Queued", "True", reason, message);
  st.setIfPresent("Running", "False", reason, "The run waits for Kueue.");
}

/**
 * Admission (spec.suspend turned false): the deadline clocks restart now — status.startTime for
 * activeDeadlineSeconds, and the next attempt Job's own startTime for startupDeadlineSeconds.
 */
function admitted(
  st: Step,
  attemptNow: number,
  current: JobView | undefined,
  by: string,
): { attempt: number; job: JobView | undefined } {
  if (!isTrue(st.old.conditions, "Suspended")) return { attempt: attemptNow, job: current };
  st.set("Suspended", "False", PretrainRunReason.Resumed, `The run was admitted (${by}).`);
  st.events.push({
    type: "Normal",
    reason: PretrainRunReason.Resumed,
    note: `Admitted (${by}); the deadline clock restarts now.`,
    action: "Resume",
  });
  st.s.startTime = st.nowIso;
  if (attemptNow === 0) return { attempt: attemptNow, job: current };
  // The stopped attempt's Job may still be in the cache (its deletion not yet observed): it is not the new attempt.
  if (current !== undefined) st.deleteJob(current.metadata.name);
  return { attempt: attemptNow + 1, job: undefined };
}

/** 4. Deadline, counted from the start or the last admission. */
function deadlineExceeded(st: Step, spec: PretrainRunSpec, job: JobView | undefined): boolean {
  const ads = spec.runPolicy.activeDeadlineSeconds;
  if (ads === undefined || st.s.startTime === undefined) return false;
  const deadline = Date.parse(st.s.startTime) + ads * 1000;
  if (st.o.now.getTime() < deadline) {
    st.wake(deadline - st.o.now.getTime());
    return false;
  }
  if (job !== undefined) st.deleteJob(job.metadata.name);
  st.s = compact({ ...st.s, phase: "Failed" as const, completionTime: st.nowIso, activeJob: undefined });
  st.set(
    "Failed",
    "True",
    PretrainRunReason.DeadlineExceeded,
    `The run exceeded runPolicy.activeDeadlineSeconds (${ads} s).`,
  );
  st.setIfPresent("Running", "False", PretrainRunReason.DeadlineExceeded, "The run exceeded its deadline.");
  st.setIfPresent("Restarting", "False", PretrainRunReason.DeadlineExceeded, "The run exceeded its deadline.");
  return true;
}

/** 5. The current attempt finished. */
function completed(st: Step, spec: PretrainRunSpec, job: JobView, attempt: number): void {
  st.s = { ...st.s, phase: "Succeeded", completionTime: st.nowIso };
  st.set(
    "Succeeded",
    "True",
    PretrainRunReason.Completed,
    `Attempt ${attempt} completed on all ${spec.numNodes} nodes.`,
  );
  st.setIfPresent("Running", "False", PretrainRunReason.Completed, "The run completed.");
  st.setIfPresent("Restarting", "False", PretrainRunReason.Completed, "The run completed.");
  st.s.replicas = replicaCounts(job);
  const ttl = spec.runPolicy.ttlSecondsAfterFinished;
  if (ttl !== undefined) st.wake(ttl * 1000);
}

/**
 * 5b. A failed attempt, or a gang that never became ready within the startup deadline (failed like a rank): the
 * failure policy decides between failing the run ("stop") and a gang restart ("restart").
 */
function failedOrStuck(st: Step, spec: PretrainRunSpec, job: JobView, attempt: number): "stop" | "restart" | "running" {
  let stuck: { reason: string; message: string } | undefined;
  if (!jobCondition(job, "Failed")) {
    const sd = startupDeadlineExceeded(job, spec.numNodes, spec.runPolicy.startupDeadlineSeconds, st.o.now);
    if (sd.exceeded)
      stuck = {
        reason: PretrainRunReason.StartupDeadlineExceeded,
        message: `not all ${spec.numNodes} ranks were ready within runPolicy.startupDeadlineSeconds (${spec.runPolicy.startupDeadlineSeconds} s)${describePending(podsOfJob(st.o.pods, job.metadata.name))}`,
      };
    else if (sd.dueMs !== undefined) st.wake(sd.dueMs);
    if (stuck === undefined) return "running";
  }
  const f =
    stuck === undefined
      ? attemptFailure(job, podsOfJob(st.o.pods, job.metadata.name))
      : { decision: "Restart" as const, reason: stuck.reason, exitCode: undefined, message: stuck.message, ranks: [] };
  const preempted = f.reason === "Preempted";
  const msg = truncate(f.message, 600);
  st.s.lastFailure = compact({
    attempt,
    reason: f.reason,
    message: msg,
    time: st.nowIso,
    exitCode: f.exitCode,
    ranks: f.ranks.length > 0 ? f.ranks : undefined,
  });
  const counted = st.s.restartsCountTowardsMax ?? 0;
  if (f.decision === "Fail" || (!preempted && counted >= spec.runPolicy.maxRestarts)) {
    st.s = { ...st.s, phase: "Failed", completionTime: st.nowIso, restarts: st.s.restarts ?? 0 };
    if (f.decision === "Fail")
      st.set(
        "Failed",
        "True",
        f.reason,
        `Attempt ${attempt} failed with a non-retryable error (exit code ${f.exitCode ?? "?"}; not restarted): ${msg}`,
      );
    else
      st.set(
        "Failed",
        "True",
        PretrainRunReason.BackoffLimitExceeded,
        `Attempt ${attempt} failed (${msg}) and runPolicy.maxRestarts (${spec.runPolicy.maxRestarts}) is exhausted.`,
      );
    st.setIfPresent("Running", "False", PretrainRunReason.Failed, "The run failed.");
    st.setIfPresent("Restarting", "False", f.decision === "Fail" ? f.reason : "BackoffLimitExceeded", "No restart.");
    st.s.replicas = replicaCounts(job);
    if (stuck !== undefined || !jobCondition(job, "Failed")) st.deleteJob(job.metadata.name);
    return "stop";
  }
  st.s.restarts = (st.s.restarts ?? 0) + 1;
  st.s.restartsCountTowardsMax = preempted ? counted : counted + 1;
  const note = `Attempt ${attempt} failed${preempted ? " (preempted; not counted against maxRestarts)" : ""}: ${msg}`;
  st.set("Restarting", "True", f.reason, note);
  st.events.push({
    type: "Warning",
    reason: f.reason,
    note: `${note} Starting attempt ${attempt + 1}.`,
    action: "Restart",
  });
  st.setIfPresent("Running", "False", f.reason, `Attempt ${attempt} failed.`);
  st.deleteJob(job.metadata.name);
  return "restart";
}

/** 6. Ensure the children of the current attempt (no Job for it yet). */
function startAttempt(st: Step, spec: PretrainRunSpec, attemptIn: number): void {
  let attempt = attemptIn;
  const plan = resolvePlan(spec, st.o.plan);
  if (plan.kind === "invalid") {
    st.s.phase = "Failed";
    st.set("Failed", "True", PretrainRunReason.ValidationFailed, plan.message);
    return;
  }
  if (plan.kind === "wait") {
    // Keep a new attempt number (after a failure or resume): the next reconcile must not resurrect the old attempt.
    st.s = compact({ ...st.s, attempt, activeJob: undefined });
    st.s.phase = isTrue(st.s.conditions, "Restarting") ? "Restarting" : "Pending";
    st.set("Queued", "True", PretrainRunReason.PlanNotReady, plan.message);
    return;
  }
  if (attempt === 0) {
    attempt = 1;
    st.s.startTime = st.nowIso;
  }
  st.s.attempt = attempt;
  // BlockingRecreate: new ranks start only after the previous attempt's pods are gone, or rendezvous breaks.
  // With no Job for this attempt, every active pod of the run is a leftover: of an earlier attempt, or of this
  // attempt's Job deleted by hand (its pods go away with it).
  const lingering = st.o.pods.filter(isActivePod);
  applyRunChildren(st, spec);
  if (lingering.length > 0) {
    st.s = compact({ ...st.s, phase: "Restarting" as const, activeJob: undefined });
    st.wake(WAIT_FOR_PODS_MS);
    return;
  }
  const resume = spec.runPolicy.resume === "Latest";
  const desired = desiredAttemptJob(st.o.run, spec, plan.inputs, attempt);
  st.apply.push(desired);
  st.s.activeJob = desired.metadata.name;
  // A refused child keeps Created=False/ChildRefused (recordRefusal) until an apply succeeds: no Created=True over a
  // silent retry.
  if (st.o.refused === undefined) {
    st.set(
      "Created",
      "True",
      PretrainRunReason.JobCreated,
      `Created Job ${desired.metadata.name} (attempt ${attempt}${resume ? ", resuming from the latest checkpoint if there is one" : ""}).`,
    );
    st.set("Queued", "False", PretrainRunReason.JobCreated, `Job ${desired.metadata.name} was created.`);
  }
  st.s.replicas = { active: 0, ready: 0, succeeded: 0, failed: 0 };
  st.s.phase = isTrue(st.s.conditions, "Restarting") ? "Restarting" : "Pending";
}

/** 7. The attempt exists and runs: keep the run's children applied, derive status from the Job and rank 0's metrics. */
function observeAttempt(st: Step, spec: PretrainRunSpec, job: JobView, attempt: number): void {
  applyRunChildren(st, spec);
  st.s.attempt = attempt;
  st.s.activeJob = job.metadata.name;
  st.s.replicas = replicaCounts(job);
  const queued = job.spec?.suspend === true;
  if (queued)
    st.set(
      "Queued",
      "True",
      PretrainRunReason.WaitingForAdmission,
      `Job ${job.metadata.name} is suspended by its queue.`,
    );
  else st.set("Queued", "False", PretrainRunReason.Admitted, `Job ${job.metadata.name} is admitted.`);
  const ready = st.s.replicas.ready;
  if (ready >= spec.numNodes && !queued) {
    st.set(
      "Running",
      "True",
      PretrainRunReason.AllPodsReady,
      `All ${spec.numNodes} ranks of attempt ${attempt} are ready.`,
    );
    st.setIfPresent("Restarting", "False", PretrainRunReason.Restarted, `Attempt ${attempt} is running.`);
  } else {
    const problem = notCreated(st, spec, job) ?? pendingProblem(podsOfJob(st.o.pods, job.metadata.name));
    if (problem !== undefined) st.set("Running", "False", problem.reason, problem.message);
    else
      st.set(
        "Running",
        "False",
        PretrainRunReason.PodsNotReady,
        `${ready} of ${spec.numNodes} ranks of attempt ${attempt} are ready.`,
      );
  }
  const c = st.s.conditions;
  st.s.phase = isTrue(c, "Restarting")
    ? "Restarting"
    : isTrue(c, "Running")
      ? "Running"
      : isTrue(c, "Queued")
        ? "Queued"
        : "Pending";
  progress(st, spec, attempt);
}

/** The Job controller cannot create the attempt's pods (a FailedCreate Event): the event's message says why. */
function notCreated(st: Step, spec: PretrainRunSpec, job: JobView): { reason: string; message: string } | undefined {
  if (job.spec?.suspend === true) return undefined;
  const f = podCreationFailure(job, st.o.pods, st.o.podCreationFailures ?? [], spec.numNodes);
  if (f === undefined) return undefined;
  return {
    reason: PretrainRunReason.PodCreationFailed,
    message: `Job ${job.metadata.name} cannot create pods: ${truncate(f.message, 600)}`,
  };
}

/** 8. Progress from rank 0's metrics (read by the shell's poller, outside the reconcile workers). */
function progress(st: Step, spec: PretrainRunSpec, attempt: number): void {
  const m = st.o.metrics;
  if (m !== undefined && m.attempt === attempt) {
    const epochs = spec.training.epochs;
    const p = st.s.progress;
    st.s.progress = compact({
      step: m.step !== undefined ? Math.round(m.step) : p?.step,
      epoch: m.epoch !== undefined ? Math.round(m.epoch) : p?.epoch,
      loss: m.loss !== undefined ? formatLoss(m.loss) : p?.loss,
      percent:
        epochs !== undefined && m.epoch !== undefined
          ? Math.min(100, Math.floor((m.epoch / epochs) * 100))
          : p?.percent,
      lastUpdatedTime: toKubeTime(m.time),
    });
  }
  // A periodic look even when no new sample arrives (the poller also enqueues the run on each new sample).
  if (spec.metrics.scrapeIntervalSeconds > 0 && isTrue(st.s.conditions, "Running"))
    st.wake(spec.metrics.scrapeIntervalSeconds * 1000);
}

function applyRunChildren(st: Step, spec: PretrainRunSpec): void {
  st.apply.push(...runChildren(st.o.run, spec));
  const podGroup = desiredPodGroup(st.o.run, spec);
  if (podGroup !== undefined) st.apply.push(podGroup);
}

/** The run's children that live as long as the run: Service, NetworkPolicy, rendezvous Secret. */
function runChildren(cr: CustomResource, spec: PretrainRunSpec): KubeObject[] {
  return [desiredService(cr, spec), desiredNetworkPolicy(cr, spec), desiredRunSecret(cr)];
}

function describePending(pods: readonly PodView[]): string {
  const p = pendingProblem(pods);
  return p === undefined ? "" : `; ${p.reason}: ${p.message}`;
}

function replicaCounts(job: JobView): { active: number; ready: number; succeeded: number; failed: number } {
  return {
    active: job.status?.active ?? 0,
    ready: job.status?.ready ?? 0,
    succeeded: job.status?.succeeded ?? 0,
    failed: job.status?.failed ?? 0,
  };
}

export function formatLoss(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return Number(x.toPrecision(5)).toString();
}
