/**
 * Plan reconciler (pure): waits for a Ready Collection, runs one preprocessing Job
 * (`ssl3d plan-and-preprocess -d DATASET ...`), reads the summary JSON from the container termination message, fails
 * with the message when the Job fails, and marks itself Stale when the Collection's content hash changes afterwards
 * (the spec is immutable: a changed Collection needs a new Plan, nothing is rebuilt silently).
 */
import { CollectionSpecSchema, CollectionStatusSchema } from "../../../../api/v1alpha1/collection.js";
import { LABELS } from "../../../../api/v1alpha1/group.js";
import { PlanSpecSchema, PlanStatusSchema, type PlanSpec, type PlanStatus } from "../../../../api/v1alpha1/plan.js";
import { PreprocessSummarySchema, parseTerminationJson, truncate } from "../../../../api/v1alpha1/summary.js";
import { isTrue, setCondition, toKubeTime } from "../../conditions.js";
import {
  compact,
  KUEUE_QUEUE_LABEL,
  withLabel,
  parseSpec,
  parseStatus,
  transitionEvents,
  restrictedContainerSecurity,
  restrictedPodSecurity,
} from "../common.js";
import { RAW_MOUNT } from "../collection/reconcile.js";
import {
  baseLabels,
  controllerRef,
  jobCondition,
  podCreationFailure,
  podsOfJob,
  succeededMessage,
  terminationMessage,
  withSpecHash,
  type CustomResource,
  type JobView,
  type KubeObject,
  type PodCreationFailure,
  type PodView,
  type ReconcileResult,
} from "../types.js";
import { PlanReason } from "../../../../api/v1alpha1/reasons.js";

export interface PlanObserved {
  plan: CustomResource;
  /** The referenced Collection, undefined when it does not exist. */
  collection: CustomResource | undefined;
  jobs: readonly JobView[];
  pods: readonly PodView[];
  /** FailedCreate Warning Events of the Plan's Jobs (the Job controller could not create the pod). */
  podCreationFailures?: readonly PodCreationFailure[] | undefined;
  now: Date;
}

export const PREPROCESSED_MOUNT = "/data/preprocessed";
export const WAIT_MS = 2_000;

export function prepJobName(plan: string): string {
  return `${plan}-prep`;
}

export function reconcilePlan(o: PlanObserved): ReconcileResult<PlanStatus> {
  const meta = o.plan.metadata;
  const gen = meta.generation ?? 1;
  const old = parseStatus(PlanStatusSchema, o.plan.status);
  const status: PlanStatus = { ...old, observedGeneration: gen };
  const set = (type: string, st: "True" | "False", reason: string, message: string): void => {
    status.conditions = setCondition(status.conditions, { type, status: st, reason, message }, gen, o.now);
  };
  const result = (extra: Partial<ReconcileResult<PlanStatus>> = {}): ReconcileResult<PlanStatus> => ({
    status,
    apply: extra.apply ?? [],
    delete: [],
    events: transitionEvents(old.conditions, status.conditions ?? []),
    ...(extra.requeueAfterMs !== undefined ? { requeueAfterMs: extra.requeueAfterMs } : {}),
  });

  const parsed = parseSpec(PlanSpecSchema, o.plan.spec);
  if (!parsed.ok) {
    status.phase = "Failed";
    set("Ready", "False", PlanReason.ValidationFailed, parsed.message);
    set("Failed", "True", PlanReason.ValidationFailed, parsed.message);
    return result();
  }
  const spec = parsed.value;
  const colName = spec.collectionRef.name;
  const colStatus = o.collection ? parseStatus(CollectionStatusSchema, o.collection.status) : undefined;
  const colSpec = o.collection ? CollectionSpecSchema.safeParse(o.collection.spec) : undefined;
  const colHash = colStatus?.contentHash;

  // Terminal: only staleness can still change.
  if (old.phase === "Ready" || old.phase === "Failed") {
    if (old.phase === "Ready") markStaleness(set, colName, colHash, old.collectionHash, o.collection !== undefined);
    return result();
  }

  const jobName = prepJobName(meta.name);
  const job = o.jobs.find((j) => j.metadata.name === jobName);
  if (job === undefined && old.jobName === undefined) {
    // Not started yet: needs a Ready Collection.
    if (
      o.collection === undefined ||
      colStatus?.phase !== "Ready" ||
      !isTrue(colStatus.conditions, "Ready") ||
      colSpec?.success !== true
    ) {
      status.phase = "Pending";
      const why =
        o.collection === undefined ? `Collection ${colName} does not exist.` : `Collection ${colName} is not Ready.`;
      set("Ready", "False", PlanReason.WaitingForCollection, why);
      return result();
    }
    status.dataset = colSpec.data.dataset;
    status.collectionHash = colHash;
    status.startTime = toKubeTime(o.now);
  }
  status.jobName = jobName;
  if (status.dataset === undefined || o.collection === undefined || colSpec?.success !== true) {
    if (job === undefined) {
      status.phase = "Pending";
      set(
        "Ready",
        "False",
        PlanReason.WaitingForCollection,
        `Collection ${colName} is needed to (re)create Job ${jobName}.`,
      );
      return result();
    }
  }
  const finished = finishedPrepJob(status, set, o, job, jobName, colName);
  if (finished !== undefined) return result(finished);
  status.phase = "Running";
  setRunningReady(set, o, job, jobName);
  const apply: KubeObject[] = [];
  if (o.collection !== undefined && colSpec?.success === true && status.dataset !== undefined) {
    apply.push(desiredPrepJob(o.plan, spec, colSpec.data.source.pvc, status.dataset, jobName));
  }
  return result({ apply });
}

type SetCondition = (type: string, st: "True" | "False", reason: string, message: string) => void;

/** Ready=False while the preprocessing Job runs: queued, its pod refused by the Job controller, or preprocessing. */
function setRunningReady(set: SetCondition, o: PlanObserved, job: JobView | undefined, jobName: string): void {
  const suspended = job?.spec?.suspend === true;
  const notCreated =
    job === undefined || suspended ? undefined : podCreationFailure(job, o.pods, o.podCreationFailures ?? [], 1);
  if (notCreated !== undefined)
    set(
      "Ready",
      "False",
      PlanReason.PodCreationFailed,
      `Job ${jobName} cannot create its pod: ${truncate(notCreated.message, 600)}`,
    );
  else
    set(
      "Ready",
      "False",
      suspended ? PlanReason.WaitingForAdmission : PlanReason.Preprocessing,
      suspended ? `Job ${jobName} is suspended (queued).` : `Preprocessing Job ${jobName} is running.`,
    );
}

/** A Ready Plan is Stale when its Collection changed or went away (a Plan is never rebuilt in place). */
function markStaleness(
  set: SetCondition,
  colName: string,
  colHash: string | undefined,
  builtFrom: string | undefined,
  collectionExists: boolean,
): void {
  if (colHash !== undefined && builtFrom !== undefined && colHash !== builtFrom) {
    set(
      "Stale",
      "True",
      PlanReason.CollectionChanged,
      `Collection ${colName} changed (content hash ${colHash}); this Plan was built from ${builtFrom}: create a new Plan.`,
    );
  } else if (!collectionExists) {
    set("Stale", "True", PlanReason.CollectionDeleted, `Collection ${colName} no longer exists.`);
  } else {
    set("Stale", "False", PlanReason.UpToDate, `Built from the current content of Collection ${colName}.`);
  }
}

/**
 * The preprocessing Job failed or completed: the Plan's outcome from its termination message (the summary), or
 * undefined while the Job runs. The returned object is what the reconcile result adds (a requeue while the summary
 * is not yet visible).
 */
function finishedPrepJob(
  status: PlanStatus,
  set: SetCondition,
  o: PlanObserved,
  job: JobView | undefined,
  jobName: string,
  colName: string,
): { requeueAfterMs?: number } | undefined {
  const pods = podsOfJob(o.pods, jobName);
  const failed = jobCondition(job, "Failed");
  if (failed) {
    const msg = terminationMessage(pods) ?? failed.message ?? failed.reason ?? "unknown failure";
    status.phase = "Failed";
    status.completionTime = toKubeTime(o.now);
    set("Ready", "False", PlanReason.PreprocessingFailed, `Preprocessing Job ${jobName} failed.`);
    set("Failed", "True", PlanReason.PreprocessingFailed, truncate(msg, 1000));
    return {};
  }
  if (!jobCondition(job, "Complete")) return undefined;
  const msg = succeededMessage(pods);
  if (msg === undefined) {
    set(
      "Ready",
      "False",
      PlanReason.WaitingForSummary,
      `Preprocessing Job ${jobName} completed; waiting for its termination message.`,
    );
    return { requeueAfterMs: WAIT_MS };
  }
  const summary = parseTerminationJson(msg, PreprocessSummarySchema);
  status.completionTime = toKubeTime(o.now);
  if (!summary.ok) {
    status.phase = "Failed";
    set("Ready", "False", PlanReason.InvalidSummary, `Preprocessing Job ${jobName} completed without a valid summary.`);
    set("Failed", "True", PlanReason.InvalidSummary, summary.error);
    return {};
  }
  status.phase = "Ready";
  status.outputs = summary.value;
  set(
    "Ready",
    "True",
    PlanReason.Preprocessed,
    `Preprocessed ${summary.value.valid} of ${summary.value.images} images (${summary.value.failed} failed).`,
  );
  set("Stale", "False", PlanReason.UpToDate, `Built from the current content of Collection ${colName}.`);
  return {};
}

export function desiredPrepJob(
  plan: CustomResource,
  spec: PlanSpec,
  rawPvc: { claimName: string; subPath?: string | undefined },
  dataset: string,
  jobName: string,
): KubeObject {
  const p = spec.preprocess;
  const labels = baseLabels({ [LABELS.plan]: plan.metadata.name, [LABELS.role]: "preprocess" });
  const volumes: unknown[] = [
    { name: "preprocessed", persistentVolumeClaim: { claimName: spec.output.pvc.claimName } },
  ];
  const mounts: unknown[] = [
    compact({ name: "preprocessed", mountPath: PREPROCESSED_MOUNT, subPath: spec.output.pvc.subPath }),
  ];
  {
    volumes.push({ name: "raw", persistentVolumeClaim: { claimName: rawPvc.claimName, readOnly: true } });
    mounts.push(compact({ name: "raw", mountPath: RAW_MOUNT, readOnly: true, subPath: rawPvc.subPath }));
  }
  const args = ["plan-and-preprocess", "-d", dataset];
  for (const c of spec.configurations ?? []) args.push("-c", c);
  if (spec.plansName !== undefined) args.push("-p", spec.plansName);
  if (spec.numProcesses !== undefined) args.push("-np", String(spec.numProcesses));
  args.push(...(spec.extraArgs ?? []));
  return withSpecHash({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName,
      namespace: plan.metadata.namespace,
      labels: withLabel(labels, KUEUE_QUEUE_LABEL, p.queueName),
      ownerReferences: [controllerRef("Plan", plan.metadata)],
    },
    spec: compact({
      backoffLimit: p.backoffLimit,
      activeDeadlineSeconds: p.activeDeadlineSeconds,
      ttlSecondsAfterFinished: p.ttlSecondsAfterFinished,
      template: {
        metadata: { labels },
        spec: compact({
          restartPolicy: "Never",
          serviceAccountName: p.serviceAccountName,
          automountServiceAccountToken: false,
          imagePullSecrets: p.imagePullSecrets,
          securityContext: restrictedPodSecurity(p.securityContext),
          nodeSelector: p.nodeSelector,
          tolerations: p.tolerations,
          volumes: [...volumes, { name: "tmp", emptyDir: {} }],
          containers: [
            compact({
              name: "preprocess",
              image: p.image,
              imagePullPolicy: p.imagePullPolicy,
              command: ["ssl3d"],
              args,
              env: [
                { name: "nnssl_raw", value: RAW_MOUNT },
                { name: "nnssl_preprocessed", value: PREPROCESSED_MOUNT },
                { name: "SSL3D_TERMINATION_LOG", value: "/dev/termination-log" },
              ],
              resources: p.resources,
              securityContext: restrictedContainerSecurity(),
              volumeMounts: [...mounts, { name: "tmp", mountPath: "/tmp" }],
              terminationMessagePolicy: "FallbackToLogsOnError",
            }),
          ],
        }),
      },
    }),
  });
}
