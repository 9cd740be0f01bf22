/**
 * Plain-data views of the Kubernetes objects the reconcilers read, and what a reconcile returns. The reconcilers
 * never import the Kubernetes client; the shell (operator/src/kube) converts to and from these shapes.
 */
import { createHash } from "node:crypto";
import { FailureMessageSchema, parseTerminationJson } from "../../../api/termination.js";
import { API_VERSION, LABELS, MANAGED_BY_VALUE } from "../../../api/v1alpha1/group.js";

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  /** Absent on cluster-scoped objects; a child copies its owner's as it is. */
  namespace?: string | undefined;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

/** Any object the operator applies (plain JSON, as sent to the API server). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

/** A custom resource as read from the API server: spec and status are validated by the reconciler. */
export interface CustomResource {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
}

export interface JobCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface JobView {
  metadata: ObjectMeta;
  spec?: { suspend?: boolean; completions?: number; parallelism?: number };
  status?: {
    active?: number;
    ready?: number;
    succeeded?: number;
    failed?: number;
    startTime?: string;
    completionTime?: string;
    conditions?: JobCondition[];
  };
}

export interface PodView {
  metadata: ObjectMeta;
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: JobCondition[];
    containerStatuses?: {
      name: string;
      ready?: boolean;
      state?: {
        terminated?: { exitCode?: number; reason?: string; message?: string };
        waiting?: { reason?: string; message?: string };
      };
    }[];
  };
}

/**
 * A core/v1 Warning Event with reason FailedCreate about one of the operator's Jobs: the Job controller could not
 * create a pod (Pod Security admission, a ResourceQuota, a LimitRange, a webhook). The only trace of such a refusal.
 */
export interface PodCreationFailure {
  /** The Job's name and uid (involvedObject). */
  job: string;
  jobUid?: string | undefined;
  message: string;
  /** When it last happened (lastTimestamp, eventTime or creationTimestamp). */
  time?: string | undefined;
}

export interface EventSpec {
  type: "Normal" | "Warning";
  reason: string;
  /** One sentence (events.k8s.io/v1 `note`). */
  note: string;
  /** What the operator did or saw, e.g. "Reconcile", "CreateJob". */
  action: string;
}

export interface ChildRef {
  apiVersion: string;
  kind: string;
  name: string;
}

/**
 * A status merge patch of a child the operator does not own the status of (the Workload's, shared with Kueue).
 */
export interface ChildStatusUpdate {
  apiVersion: string;
  kind: string;
  name: string;
  /** The status the update was computed from (the merge patch is the difference) and its resourceVersion. */
  from: Record<string, unknown>;
  to: Record<string, unknown>;
  resourceVersion?: string | undefined;
}

export interface ReconcileResult<S> {
  /** The complete desired status (the shell patches only when it differs from the observed one). */
  status: S;
  /** Children to server-side apply. */
  apply: KubeObject[];
  /** Children to delete (absent ones are fine). */
  delete: ChildRef[];
  events: EventSpec[];
  /** Reconcile again after this many milliseconds even without a watch event. */
  requeueAfterMs?: number;
  /** Status updates of children whose status another controller writes too (merge patch, optimistic concurrency). */
  statusUpdates?: ChildStatusUpdate[];
  /** Delete the custom resource itself (TTL after finished). */
  deleteSelf?: boolean;
}

export function controllerRef(kind: string, meta: ObjectMeta): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind,
    name: meta.name,
    uid: meta.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function baseLabels(extra: Record<string, string>): Record<string, string> {
  return { [LABELS.managedBy]: MANAGED_BY_VALUE, ...extra };
}

/** Stable JSON (sorted keys) for hashing. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Stamps the desired object with a hash of itself so the shell can skip re-applying an unchanged child. */
export function withSpecHash(obj: KubeObject): KubeObject {
  const hash = sha256(canonicalJson(obj)).slice(0, 16);
  return {
    ...obj,
    metadata: { ...obj.metadata, annotations: { ...obj.metadata.annotations, [LABELS.specHash]: hash } },
  };
}

export function jobCondition(job: JobView | undefined, type: string): JobCondition | undefined {
  return job?.status?.conditions?.find((c) => c.type === type && c.status === "True");
}

/**
 * The termination message of the pod that succeeded (a completed Job's summary): a Job with `backoffLimit > 0` may
 * also hold failed pods (a killed first try, a retry that met the dead pod's lock), whose messages are not the summary.
 */
export function succeededMessage(pods: readonly PodView[]): string | undefined {
  for (const p of pods) {
    if (p.status?.phase !== "Succeeded") continue;
    for (const cs of p.status.containerStatuses ?? []) {
      const m = cs.state?.terminated?.exitCode === 0 ? cs.state.terminated.message?.trim() : undefined;
      if (m !== undefined && m !== "") return m;
    }
  }
  return undefined;
}

/**
 * The most telling termination message of a set of pods: a failed container that was not merely killed (137/143 are
 * the SIGKILL/SIGTERM of ranks stopped because another rank failed) first, then any failed one, then any.
 */
export function terminationMessage(pods: readonly PodView[]): string | undefined {
  let best: { score: number; message: string } | undefined;
  for (const p of pods) {
    for (const cs of p.status?.containerStatuses ?? []) {
      const t = cs.state?.terminated;
      const m = t?.message?.trim();
      if (t === undefined || m === undefined || m === "") continue;
      const code = t.exitCode ?? 0;
      const score = code !== 0 && code !== 137 && code !== 143 ? 3 : code !== 0 || p.status?.phase === "Failed" ? 2 : 1;
      if (best === undefined || score > best.score) best = { score, message: m };
    }
  }
  if (best === undefined) return undefined;
  // A failed `ssl3d` command writes {"exitCode","reason","message"} (api/termination.ts): show its sentence.
  const f = parseTerminationJson(best.message, FailureMessageSchema);
  return f.ok ? f.value.message : best.message;
}

export function podsOfJob(pods: readonly PodView[], jobName: string): PodView[] {
  return pods.filter(
    (p) =>
      p.metadata.labels?.["job-name"] === jobName || p.metadata.labels?.["batch.kubernetes.io/job-name"] === jobName,
  );
}

/**
 * Why a Job's pods are missing: the newest FailedCreate of this Job (by uid when known) that is not older than the
 * Job's newest pod, while the Job has fewer pods than it wants. Undefined once the pods exist.
 */
export function podCreationFailure(
  job: JobView,
  pods: readonly PodView[],
  failures: readonly PodCreationFailure[],
  want: number,
): PodCreationFailure | undefined {
  const mine = podsOfJob(pods, job.metadata.name);
  if (mine.length >= want) return undefined;
  const newestPod = Math.max(0, ...mine.map((p) => Date.parse(p.metadata.creationTimestamp ?? "") || 0));
  let best: PodCreationFailure | undefined;
  for (const f of failures) {
    if (f.job !== job.metadata.name) continue;
    if (f.jobUid !== undefined && job.metadata.uid !== undefined && f.jobUid !== job.metadata.uid) continue;
    const t = Date.parse(f.time ?? "") || 0;
    if (mine.length > 0 && t < newestPod) continue;
    if (best === undefined || t >= (Date.parse(best.time ?? "") || 0)) best = f;
  }
  return best;
}
