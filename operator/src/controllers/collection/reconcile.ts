/**
 * Collection reconciler (pure): validates the source, optionally runs one indexing Job per spec generation
 * (`ssl3d collection-summary -d DATASET --json`), and records its summary and content hash from the container
 * termination message. Without indexing the content hash is a hash of the source spec, so Plans still notice a change.
 */
import {
  CollectionSpecSchema,
  CollectionStatusSchema,
  type CollectionSpec,
  type CollectionStatus,
} from "../../../../api/v1alpha1/collection.js";
import { LABELS } from "../../../../api/v1alpha1/group.js";
import { CollectionSummaryMessageSchema, parseTerminationJson, truncate } from "../../../../api/v1alpha1/summary.js";
import { setCondition, toKubeTime } from "../../conditions.js";
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
import {
  baseLabels,
  canonicalJson,
  controllerRef,
  jobCondition,
  podCreationFailure,
  podsOfJob,
  sha256,
  succeededMessage,
  terminationMessage,
  withSpecHash,
  type CustomResource,
  type JobView,
  type KubeObject,
  type PodView,
  type ReconcileResult,
  type PodCreationFailure,
} from "../types.js";
import { CollectionReason } from "../../../../api/v1alpha1/reasons.js";

export interface CollectionObserved {
  collection: CustomResource;
  /** Jobs owned by the Collection. */
  jobs: readonly JobView[];
  /** Pods of those Jobs. */
  pods: readonly PodView[];
  /** FailedCreate Warning Events of the Collection's Jobs (the Job controller could not create the pod). */
  podCreationFailures?: readonly PodCreationFailure[] | undefined;
  now: Date;
}

export const RAW_MOUNT = "/data/raw";
export const SUMMARY_WAIT_MS = 2_000;

export function indexJobName(name: string, generation: number): string {
  return `${name}-index-g${generation}`;
}

/** Semantic checks beyond the CRD schema (which the API server already enforces). */
export function validateCollection(spec: CollectionSpec): string | undefined {
  if (spec.indexing?.enabled === true && spec.indexing.image === undefined)
    return "spec.indexing.image: required when indexing is enabled";
  return undefined;
}

export function reconcileCollection(o: CollectionObserved): ReconcileResult<CollectionStatus> {
  const meta = o.collection.metadata;
  const gen = meta.generation ?? 1;
  const old = parseStatus(CollectionStatusSchema, o.collection.status);
  let status: CollectionStatus = { ...old, observedGeneration: gen };
  const result = (
    s: CollectionStatus,
    extra: Partial<ReconcileResult<CollectionStatus>> = {},
  ): ReconcileResult<CollectionStatus> => ({
    status: s,
    apply: extra.apply ?? [],
    delete: extra.delete ?? [],
    events: [...transitionEvents(old.conditions, s.conditions ?? []), ...(extra.events ?? [])],
    ...(extra.requeueAfterMs !== undefined ? { requeueAfterMs: extra.requeueAfterMs } : {}),
  });
  const set = (type: string, st: "True" | "False", reason: string, message: string): void => {
    status.conditions = setCondition(status.conditions, { type, status: st, reason, message }, gen, o.now);
  };

  const parsed = parseSpec(CollectionSpecSchema, o.collection.spec);
  const invalid = parsed.ok ? validateCollection(parsed.value) : parsed.message;
  if (!parsed.ok || invalid !== undefined) {
    status.phase = "Failed";
    set("Ready", "False", CollectionReason.ValidationFailed, invalid ?? "invalid spec");
    return result(status);
  }
  const spec = parsed.value;
  // Jobs of older generations are obsolete.
  const obsolete = o.jobs
    .filter((j) => j.metadata.name !== indexJobName(meta.name, gen))
    .map((j) => ({ apiVersion: "batch/v1", kind: "Job", name: j.metadata.name }));

  if (spec.indexing?.enabled !== true) {
    const hash = `sha256:${sha256(canonicalJson({ source: spec.source, dataset: spec.dataset }))}`;
    status = compact({
      ...status,
      phase: "Ready" as const,
      contentHash: hash,
      indexJobName: undefined,
      summary: undefined,
    });
    status.conditions = setCondition(
      status.conditions,
      {
        type: "Ready",
        status: "True",
        reason: CollectionReason.Validated,
        message: `Source validated (dataset ${spec.dataset}); not indexed.`,
      },
      gen,
      o.now,
    );
    return result(status, { delete: obsolete });
  }

  const jobName = indexJobName(meta.name, gen);
  const job = o.jobs.find((j) => j.metadata.name === jobName);
  if (
    old.observedGeneration === gen &&
    old.indexJobName === jobName &&
    (old.phase === "Ready" || old.phase === "Failed")
  ) {
    return result(status, { delete: obsolete }); // this generation is done
  }
  status.indexJobName = jobName;
  const desired = desiredIndexJob(o.collection, spec, jobName);
  const complete = jobCondition(job, "Complete");
  const failed = jobCondition(job, "Failed");
  const pods = podsOfJob(o.pods, jobName);
  if (failed) {
    const msg = terminationMessage(pods) ?? failed.message ?? failed.reason ?? "the indexing Job failed";
    status.phase = "Failed";
    set("Ready", "False", CollectionReason.IndexingFailed, `Indexing Job ${jobName} failed: ${truncate(msg, 900)}`);
    return result(status, { delete: obsolete });
  }
  if (complete) {
    const msg = succeededMessage(pods);
    if (msg === undefined) {
      status.phase = "Indexing";
      set(
        "Ready",
        "False",
        CollectionReason.WaitingForSummary,
        `Indexing Job ${jobName} completed; waiting for its termination message.`,
      );
      return result(status, { delete: obsolete, requeueAfterMs: SUMMARY_WAIT_MS });
    }
    const summary = parseTerminationJson(msg, CollectionSummaryMessageSchema);
    if (!summary.ok) {
      status.phase = "Failed";
      set("Ready", "False", CollectionReason.InvalidSummary, `Indexing Job ${jobName}: ${summary.error}`);
      return result(status, { delete: obsolete });
    }
    const { contentHash, ...counts } = summary.value;
    status = { ...status, phase: "Ready", summary: counts, contentHash, indexedTime: toKubeTime(o.now) };
    set(
      "Ready",
      "True",
      CollectionReason.Indexed,
      `Indexed ${counts.images} images of ${counts.subjects} subjects (${counts.bytes} bytes).`,
    );
    return result(status, { delete: obsolete });
  }
  status.phase = "Indexing";
  const notCreated = job === undefined ? undefined : podCreationFailure(job, o.pods, o.podCreationFailures ?? [], 1);
  if (notCreated !== undefined)
    set(
      "Ready",
      "False",
      CollectionReason.PodCreationFailed,
      `Job ${jobName} cannot create its pod: ${truncate(notCreated.message, 600)}`,
    );
  else set("Ready", "False", CollectionReason.Indexing, `Indexing Job ${jobName} is running.`);
  return result(status, { apply: [desired], delete: obsolete });
}

function desiredIndexJob(cr: CustomResource, spec: CollectionSpec, jobName: string): KubeObject {
  const ix = spec.indexing!;
  const labels = baseLabels({ [LABELS.collection]: cr.metadata.name, [LABELS.role]: "index" });
  const volumes: unknown[] = [];
  const mounts: unknown[] = [];
  volumes.push({ name: "raw", persistentVolumeClaim: { claimName: spec.source.pvc.claimName, readOnly: true } });
  mounts.push(compact({ name: "raw", mountPath: RAW_MOUNT, readOnly: true, subPath: spec.source.pvc.subPath }));
  const rawRoot = RAW_MOUNT;
  return withSpecHash({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName,
      namespace: cr.metadata.namespace,
      labels: withLabel(labels, KUEUE_QUEUE_LABEL, ix.queueName),
      ownerReferences: [controllerRef("Collection", cr.metadata)],
    },
    spec: compact({
      backoffLimit: ix.backoffLimit,
      activeDeadlineSeconds: ix.activeDeadlineSeconds,
      ttlSecondsAfterFinished: ix.ttlSecondsAfterFinished,
      template: {
        metadata: { labels },
        spec: compact({
          restartPolicy: "Never",
          serviceAccountName: ix.serviceAccountName,
          automountServiceAccountToken: false,
          imagePullSecrets: ix.imagePullSecrets,
          securityContext: restrictedPodSecurity(ix.securityContext),
          nodeSelector: ix.nodeSelector,
          tolerations: ix.tolerations,
          volumes: [...volumes, { name: "tmp", emptyDir: {} }],
          containers: [
            compact({
              name: "index",
              image: ix.image,
              imagePullPolicy: ix.imagePullPolicy,
              command: ["ssl3d", "collection-summary", "-d", spec.dataset, "--json"],
              env: [
                { name: "nnssl_raw", value: rawRoot },
                { name: "SSL3D_TERMINATION_LOG", value: "/dev/termination-log" },
              ],
              resources: ix.resources,
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
