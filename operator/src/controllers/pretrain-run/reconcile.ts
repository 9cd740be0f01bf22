/**
 * PretrainRun reconciler (pure): observed run, Plan, owned Jobs and Pods, rank 0's metrics and `now` → desired
 * children, status, events and a requeue time. One Indexed Job per attempt (`<run>-a<N>`); a failed attempt is
 * replaced by a new one that resumes from the latest checkpoint (gang restart), bounded by `maxRestarts`, where
 * preemptions (DisruptionTarget) are not counted. Suspend deletes the attempt Job; resume starts a new attempt and
 * restarts the deadline clock.
 */
import { PlanSpecSchema, PlanStatusSchema } from "../../../../api/v1alpha1/plan.js";
import { PretrainRunSpecSchema, PretrainRunStatusSchema, type PretrainRunSpec, type PretrainRunStatus } from "../../../../api/v1alpha1/pretrain-run.js";
import { envNameProblem } from "../../../../api/pod.js";
import { truncate } from "../../../../api/termination.js";
import { getCondition, isTrue, setCondition, toKubeTime } from "../../conditions.js";
import { compact, parseSpec, parseStatus, transitionEvents } from "../common.js";
import { jobCondition, podsOfJob, type ChildRef, type CustomResource, type EventSpec, type JobView, type KubeObject, type PodView, type ReconcileResult } from "../types.js";
import { attemptJobName, desiredAttemptJob, desiredNetworkPolicy, desiredPodGroup, desiredRunSecret, desiredService, OPERATOR_VOLUMES, type PlanInputs } from "./desired.js";
import { attemptFailure, pendingProblem, startupDeadlineExceeded, type ChildRefusal } from "./failures.js";
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
  now: Date;
}

export const WAIT_FOR_PODS_MS = 2_000;

type PlanResolution = { kind: "ok"; inputs: PlanInputs } | { kind: "wait"; message: string } | { kind: "invalid"; message: string };

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
  if (configuration === undefined) return { kind: "invalid", message: `Plan ${name} lists no configuration; set spec.training.configuration.` };
  if (configs.length > 0 && !configs.includes(configuration)) {
    return { kind: "invalid", message: `spec.training.configuration: ${configuration} is not one of Plan ${name}'s configurations (${configs.join(", ")}).` };
  }
  return { kind: "ok", inputs: { dataset: ps.dataset, configuration, plansName: pspec.data.plansName, dataPvc: pspec.data.output.pvc } };
}

/** Checks the API server's schema cannot express cheaply; a failure is a ValidationFailed condition. */
export function validateRun(spec: PretrainRunSpec): string | undefined {
  for (const [i, e] of (spec.env ?? []).entries()) {
    const problem = envNameProblem(e.name);
    if (problem !== undefined) return `spec.env[${i}].name: ${problem}.`;
  }
  if (spec.metrics.port === 29500) return "spec.metrics.port: 29500 is the rendezvous port.";
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    if ((OPERATOR_VOLUMES as readonly string[]).includes(v.name)) return `spec.volumes[${i}].name: ${v.name} is one of the operator's volumes (${OPERATOR_VOLUMES.join(", ")}).`;
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
  if (!spec.success || spec.data.metrics.scrapeIntervalSeconds === 0 || status.attempt === undefined || status.attempt === 0) return undefined;
  const job = attemptJobName(o.run.metadata.name, status.attempt);
  const rank0 = podsOfJob(o.pods, job).find((p) => p.metadata.labels?.["batch.kubernetes.io/job-completion-index"] === "0" || p.metadata.annotations?.["batch.kubernetes.io/job-completion-index"] === "0");
  const ip = rank0?.status?.podIP;
  if (rank0?.status?.phase !== "Running" || ip === undefined || ip === "") return undefined;
  const host = ip.includes(":") ? `[${ip}]` : ip;
  return { attempt: status.attempt, url: `http://${host}:${spec.data.metrics.port}${spec.data.metrics.path}`, intervalMs: spec.data.metrics.scrapeIntervalSeconds * 1000 };
}

function isActivePod(p: PodView): boolean {
  const phase = p.status?.phase;
  return phase === undefined || phase === "Pending" || phase === "Running" || phase === "Unknown";
}

export function reconcilePretrainRun(o: PretrainRunObserved): ReconcileResult<PretrainRunStatus> {
  const meta = o.run.metadata;
  const run = meta.name;
  const gen = meta.generation ?? 1;
  const old = parseStatus(PretrainRunStatusSchema, o.run.status);
  let s: PretrainRunStatus = { ...old, observedGeneration: gen };
  const nowIso = toKubeTime(o.now);
  const apply: KubeObject[] = [];
  const del: ChildRef[] = [];
  const extraEvents: EventSpec[] = [];
  let requeue: number | undefined;
  const wake = (ms: number): void => {
    requeue = requeue === undefined ? Math.max(0, ms) : Math.min(requeue, Math.max(0, ms));
  };
  const set = (type: string, st: "True" | "False", reason: string, message: string): void => {
    s.conditions = setCondition(s.conditions, { type, status: st, reason, message }, gen, o.now);
  };
  const setIfPresent = (type: string, st: "True" | "False", reason: string, message: string): void => {
    if (getCondition(s.conditions, type) !== undefined) set(type, st, reason, message);
  };
  const done = (): ReconcileResult<PretrainRunStatus> => ({
    status: s,
    apply,
    delete: del,
    // Restarts get one explicit event each (the Restarting condition may stay True across several).
    events: [...transitionEvents(old.conditions, s.conditions ?? [], ["Restarting"]), ...extraEvents],
    ...(requeue !== undefined ? { requeueAfterMs: requeue } : {}),
  });
  const jobRef = (name: string): ChildRef => ({ apiVersion: "batch/v1", kind: "Job", name });

  // 1. Validation (schema, then semantic rules). Not terminal: a corrected spec (new generation) proceeds. A run that
  // already succeeded or failed at run time keeps that outcome whatever later edits say.
  const oldFailed = getCondition(old.conditions, "Failed");
  const finished = isTrue(old.conditions, "Succeeded") || (oldFailed?.status === "True" && oldFailed.reason !== PretrainRunReason.ValidationFailed);
  const parsed = parseSpec(PretrainRunSpecSchema, o.run.spec);
  // A finished run keeps its record whatever later (invalid) edits say.
  if (!parsed.ok && finished) return done();
  const invalid = parsed.ok ? validateRun(parsed.value) : parsed.message;
  if (!parsed.ok || (invalid !== undefined && !finished)) {
    s.phase = "Failed";
    set("Failed", "True", PretrainRunReason.ValidationFailed, invalid ?? "invalid spec");
    return done();
  }
  const spec = parsed.value;
  const failedCond = getCondition(old.conditions, "Failed");
  if (failedCond?.status === "True" && failedCond.reason === PretrainRunReason.ValidationFailed) {
    set("Failed", "False", PretrainRunReason.Validated, "The spec is valid.");
    s.phase = "Pending";
  }

  // 2. Terminal: keep the record, stop any attempt still running, delete the run after its TTL.
  const terminal = isTrue(s.conditions, "Succeeded") || isTrue(s.conditions, "Failed");
  const attemptNow = s.attempt ?? 0;
  const current = attemptNow > 0 ? o.jobs.find((j) => j.metadata.name === attemptJobName(run, attemptNow)) : undefined;
  if (terminal) {
    for (const j of o.jobs) if (!jobCondition(j, "Complete") && !jobCondition(j, "Failed")) del.push(jobRef(j.metadata.name));
    const ttl = spec.runPolicy.ttlSecondsAfterFinished;
    if (ttl !== undefined && s.completionTime !== undefined) {
      const due = Date.parse(s.completionTime) + ttl * 1000;
      if (o.now.getTime() >= due) return { ...done(), deleteSelf: true };
      wake(due - o.now.getTime());
    }
    return done();
  }

  // A child the API server refused (Pod Security admission, quota, a policy webhook) is a condition, not a silent
  // retry behind Created=True.
  if (o.refused !== undefined) {
    set("Created", "False", PretrainRunReason.ChildRefused, `The API server refused ${o.refused.kind} ${o.refused.name}: ${truncate(o.refused.message, 600)}`);
  } else if (getCondition(s.conditions, "Created")?.reason === PretrainRunReason.ChildRefused) {
    set("Created", "True", PretrainRunReason.ChildrenApplied, "All children were accepted.");
  }

  // Jobs of earlier attempts are obsolete.
  for (const j of o.jobs) if (j !== current) del.push(jobRef(j.metadata.name));
  const podGroup = desiredPodGroup(o.run, spec);

  // 3. Suspend: delete the attempt (and the PodGroup), keep the Service.
  if (spec.runPolicy.suspend) {
    if (current !== undefined) del.push(jobRef(current.metadata.name));
    if (podGroup !== undefined) del.push({ apiVersion: podGroup.apiVersion, kind: podGroup.kind, name: run });
    s = compact({ ...s, phase: "Suspended" as const, activeJob: undefined, replicas: undefined });
    set("Suspended", "True", PretrainRunReason.Suspended, attemptNow > 0 ? `Suspended; attempt ${attemptNow} was stopped and the next attempt resumes from the latest checkpoint.` : "Suspended before the first attempt.");
    setIfPresent("Running", "False", PretrainRunReason.Suspended, "The run is suspended.");
    return done();
  }
  let attempt = attemptNow;
  let job = current;
  if (isTrue(old.conditions, "Suspended")) {
    set("Suspended", "False", PretrainRunReason.Resumed, "The run was resumed.");
    extraEvents.push({ type: "Normal", reason: PretrainRunReason.Resumed, note: `Resumed; the deadline clock restarts now.`, action: "Resume" });
    s.startTime = nowIso;
    if (attempt > 0) {
      attempt += 1;
      job = undefined;
    }
  }

  // 4. Deadline, counted from the start or the last resume.
  const ads = spec.runPolicy.activeDeadlineSeconds;
  if (ads !== undefined && s.startTime !== undefined) {
    const deadline = Date.parse(s.startTime) + ads * 1000;
    if (o.now.getTime() >= deadline) {
      if (job !== undefined) del.push(jobRef(job.metadata.name));
      s = compact({ ...s, phase: "Failed" as const, completionTime: nowIso, activeJob: undefined });
      set("Failed", "True", PretrainRunReason.DeadlineExceeded, `The run exceeded runPolicy.activeDeadlineSeconds (${ads} s).`);
      setIfPresent("Running", "False", PretrainRunReason.DeadlineExceeded, "The run exceeded its deadline.");
      setIfPresent("Restarting", "False", PretrainRunReason.DeadlineExceeded, "The run exceeded its deadline.");
      return done();
    }
    wake(deadline - o.now.getTime());
  }

  // 5. The current attempt finished?
  if (job !== undefined && jobCondition(job, "Complete")) {
    s = { ...s, phase: "Succeeded", completionTime: nowIso };
    set("Succeeded", "True", PretrainRunReason.Completed, `Attempt ${attempt} completed on all ${spec.numNodes} nodes.`);
    setIfPresent("Running", "False", PretrainRunReason.Completed, "The run completed.");
    setIfPresent("Restarting", "False", PretrainRunReason.Completed, "The run completed.");
    s.replicas = replicaCounts(job);
    const ttl = spec.runPolicy.ttlSecondsAfterFinished;
    if (ttl !== undefined) wake(ttl * 1000);
    return done();
  }
  // 5b. A gang that never became ready within the startup deadline fails like a rank (and is restarted).
  let stuck: { reason: string; message: string } | undefined;
  if (job !== undefined && !jobCondition(job, "Failed")) {
    const sd = startupDeadlineExceeded(job, spec.numNodes, spec.runPolicy.startupDeadlineSeconds, o.now);
    if (sd.exceeded) stuck = { reason: PretrainRunReason.StartupDeadlineExceeded, message: `not all ${spec.numNodes} ranks were ready within runPolicy.startupDeadlineSeconds (${spec.runPolicy.startupDeadlineSeconds} s)${describePending(podsOfJob(o.pods, job.metadata.name))}` };
    else if (sd.dueMs !== undefined) wake(sd.dueMs);
  }
  if (job !== undefined && (jobCondition(job, "Failed") || stuck !== undefined)) {
    const jobPods = podsOfJob(o.pods, job.metadata.name);
    const f = stuck === undefined ? attemptFailure(job, jobPods) : { decision: "Restart" as const, reason: stuck.reason, exitCode: undefined, message: stuck.message, ranks: [] };
    const preempted = f.reason === PretrainRunReason.Preempted;
    const msg = truncate(f.message, 600);
    s.restarts = (s.restarts ?? 0) + 1;
    s.lastFailure = compact({ attempt, reason: f.reason, message: msg, time: nowIso, exitCode: f.exitCode, ranks: f.ranks.length > 0 ? f.ranks : undefined });
    const counted = s.restartsCountTowardsMax ?? 0;
    if (f.decision === "Fail" || (!preempted && counted >= spec.runPolicy.maxRestarts)) {
      s.restarts -= 1; // no restart happens
      s = { ...s, phase: "Failed", completionTime: nowIso };
      if (f.decision === "Fail") set("Failed", "True", f.reason, `Attempt ${attempt} failed with a non-retryable error (exit code ${f.exitCode ?? "?"}; not restarted): ${msg}`);
      else set("Failed", "True", PretrainRunReason.BackoffLimitExceeded, `Attempt ${attempt} failed (${msg}) and runPolicy.maxRestarts (${spec.runPolicy.maxRestarts}) is exhausted.`);
      setIfPresent("Running", "False", PretrainRunReason.Failed, "The run failed.");
      setIfPresent("Restarting", "False", f.decision === "Fail" ? f.reason : PretrainRunReason.BackoffLimitExceeded, "No restart.");
      s.replicas = replicaCounts(job);
      if (stuck !== undefined || !jobCondition(job, "Failed")) del.push(jobRef(job.metadata.name));
      return done();
    }
    if (!preempted) s.restartsCountTowardsMax = counted + 1;
    else s.restartsCountTowardsMax = counted;
    const note = `Attempt ${attempt} failed${preempted ? " (preempted; not counted against maxRestarts)" : ""}: ${msg}`;
    set("Restarting", "True", f.reason, note);
    extraEvents.push({ type: "Warning", reason: f.reason, note: `${note} Starting attempt ${attempt + 1}.`, action: "Restart" });
    setIfPresent("Running", "False", f.reason, `Attempt ${attempt} failed.`);
    del.push(jobRef(job.metadata.name));
    attempt += 1;
    job = undefined;
  }

  // 6. Ensure the children of the current attempt.
  if (job === undefined) {
    const plan = resolvePlan(spec, o.plan);
    if (plan.kind === "invalid") {
      s.phase = "Failed";
      set("Failed", "True", PretrainRunReason.ValidationFailed, plan.message);
      return done();
    }
    if (plan.kind === "wait") {
      // Keep a new attempt number (after a failure or resume): the next reconcile must not resurrect the old attempt.
      s = compact({ ...s, attempt, activeJob: undefined });
      s.phase = isTrue(s.conditions, "Restarting") ? "Restarting" : "Pending";
      set("Queued", "True", PretrainRunReason.PlanNotReady, plan.message);
      return done();
    }
    if (attempt === 0) {
      attempt = 1;
      s.startTime = nowIso;
    }
    s.attempt = attempt;
    // BlockingRecreate: new ranks start only after the previous attempt's pods are gone, or rendezvous breaks.
    // With no Job for this attempt, every active pod of the run is a leftover: of an earlier attempt, or of this
    // attempt's Job deleted by hand (its pods go away with it).
    const lingering = o.pods.filter(isActivePod);
    apply.push(...runChildren(o.run, spec));
    if (podGroup !== undefined) apply.push(podGroup);
    if (lingering.length > 0) {
      s = compact({ ...s, phase: "Restarting" as const, activeJob: undefined });
      wake(WAIT_FOR_PODS_MS);
      return done();
    }
    const resume = spec.runPolicy.resume === "Latest";
    const desired = desiredAttemptJob(o.run, spec, plan.inputs, attempt);
    apply.push(desired);
    s.activeJob = desired.metadata.name;
    set("Created", "True", PretrainRunReason.JobCreated, `Created Job ${desired.metadata.name} (attempt ${attempt}${resume ? ", resuming from the latest checkpoint if there is one" : ""}).`);
    set("Queued", "False", PretrainRunReason.JobCreated, `Job ${desired.metadata.name} was created.`);
    s.replicas = { active: 0, ready: 0, succeeded: 0, failed: 0 };
    s.phase = isTrue(s.conditions, "Restarting") ? "Restarting" : "Pending";
    return done();
  }

  // 7. The attempt exists and runs: keep Service/NetworkPolicy/Secret/PodGroup applied, derive status from the Job.
  apply.push(...runChildren(o.run, spec));
  if (podGroup !== undefined) apply.push(podGroup);
  s.attempt = attempt;
  s.activeJob = job.metadata.name;
  s.replicas = replicaCounts(job);
  if (job.spec?.suspend === true) {
    set("Queued", "True", PretrainRunReason.WaitingForAdmission, `Job ${job.metadata.name} is suspended by its queue.`);
  } else {
    set("Queued", "False", PretrainRunReason.Admitted, `Job ${job.metadata.name} is admitted.`);
  }
  const ready = s.replicas.ready;
  if (ready >= spec.numNodes && job.spec?.suspend !== true) {
    set("Running", "True", PretrainRunReason.AllPodsReady, `All ${spec.numNodes} ranks of attempt ${attempt} are ready.`);
    setIfPresent("Restarting", "False", PretrainRunReason.Restarted, `Attempt ${attempt} is running.`);
  } else {
    const problem = pendingProblem(podsOfJob(o.pods, job.metadata.name));
    if (problem !== undefined) set("Running", "False", problem.reason, problem.message);
    else set("Running", "False", PretrainRunReason.PodsNotReady, `${ready} of ${spec.numNodes} ranks of attempt ${attempt} are ready.`);
  }
  s.phase = isTrue(s.conditions, "Restarting") ? "Restarting" : isTrue(s.conditions, "Running") ? "Running" : isTrue(s.conditions, "Queued") ? "Queued" : "Pending";

  // 8. Progress from rank 0's metrics (scraped by the shell).
  if (o.metrics !== undefined && o.metrics.attempt === attempt) {
    const m = o.metrics;
    const epochs = spec.training.epochs;
    s.progress = compact({
      step: m.step !== undefined ? Math.round(m.step) : s.progress?.step,
      epoch: m.epoch !== undefined ? Math.round(m.epoch) : s.progress?.epoch,
      loss: m.loss !== undefined ? formatLoss(m.loss) : s.progress?.loss,
      percent: epochs !== undefined && m.epoch !== undefined ? Math.min(100, Math.floor((m.epoch / epochs) * 100)) : s.progress?.percent,
      lastUpdatedTime: toKubeTime(m.time),
    });
  }
  if (spec.metrics.scrapeIntervalSeconds > 0 && isTrue(s.conditions, "Running")) wake(spec.metrics.scrapeIntervalSeconds * 1000);
  return done();
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
  return { active: job.status?.active ?? 0, ready: job.status?.ready ?? 0, succeeded: job.status?.succeeded ?? 0, failed: job.status?.failed ?? 0 };
}

export function formatLoss(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return Number(x.toPrecision(5)).toString();
}
