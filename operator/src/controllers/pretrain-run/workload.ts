/**
 * The run-level Kueue Workload (pure): a PretrainRun labelled `kueue.x-k8s.io/queue-name` is admitted by Kueue as one
 * unit. The operator plays the part Kueue's job framework plays for the kinds Kueue knows
 * (`pkg/controller/jobframework/reconciler.go` in sigs.k8s.io/kueue): it creates one Workload owned by the run whose
 * single pod set is the gang (numNodes pods with the trainer's requests), starts attempts only while the Workload is
 * admitted, stops the attempt when Kueue evicts it and then gives the quota back (clears the admission), and marks the
 * Workload Finished when the run ends. Kueue's scheduler admits, evicts and releases quota; see ADR 0088.
 */
import type { Condition } from "../../../../api/v1alpha1/common.js";
import type { PretrainRunSpec } from "../../../../api/v1alpha1/pretrain-run.js";
import { getCondition, isTrue, setCondition } from "../../conditions.js";
import { compact, KUEUE_QUEUE_LABEL } from "../common.js";
import {
  controllerRef,
  withSpecHash,
  type ChildStatusUpdate,
  type CustomResource,
  type KubeObject,
  type ObjectMeta,
} from "../types.js";
import { runLabels } from "./desired.js";

/** Kueue's storage version since v0.15 (v1beta1 is still served, through a conversion webhook). */
export const WORKLOAD_API_VERSION = "kueue.x-k8s.io/v1beta2";
/** Kueue's label for a WorkloadPriorityClass (its value orders Workloads in a ClusterQueue). */
export const KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class";
/** The single pod set of a run's Workload: the gang of training ranks. */
export const WORKLOAD_POD_SET = "trainer";

/** Kueue's condition reasons the operator writes on a Workload, as Kueue's job framework writes them. */
const KUEUE_REASON = {
  Pending: "Pending",
  NoReservation: "NoReservation",
  Succeeded: "Succeeded",
  Failed: "Failed",
} as const;
export type WorkloadFinishedReason = typeof KUEUE_REASON.Succeeded | typeof KUEUE_REASON.Failed;

/** The fields of a kueue.x-k8s.io Workload the operator reads. */
export interface WorkloadView {
  metadata: ObjectMeta;
  spec?: { active?: boolean; queueName?: string };
  status?: {
    conditions?: Condition[];
    admission?: { clusterQueue?: string } | null;
  };
}

/** Deterministic: one Workload per run (Kueue names its own `<kind>-<name>-<hash>`; a run has exactly one). */
export function workloadName(run: string): string {
  return `pretrainrun-${run}`;
}

/** The LocalQueue that admits the whole run (the run's own queue-name label), or undefined (no run-level Workload). */
export function runQueueName(cr: CustomResource): string | undefined {
  const q = cr.metadata.labels?.[KUEUE_QUEUE_LABEL];
  return q === undefined || q === "" ? undefined : q;
}

/**
 * The Workload of a queued run. The pod template carries what Kueue accounts and places by: the trainer's resources,
 * node selector, tolerations, affinity, runtime class (pod overhead) and priority class; it does not change between
 * attempts, so the Workload stays the same object for the life of the run. A suspended run's Workload is inactive
 * (`active: false`: Kueue evicts it and the quota goes back); otherwise `active` is not set by the operator, so an
 * administrator or Kueue itself may deactivate the Workload.
 */
export function desiredWorkload(cr: CustomResource, spec: PretrainRunSpec, queue: string): KubeObject {
  const run = cr.metadata.name;
  const wpc = cr.metadata.labels?.[KUEUE_PRIORITY_CLASS_LABEL];
  const priorityClassRef =
    wpc !== undefined && wpc !== ""
      ? { group: "kueue.x-k8s.io", kind: "WorkloadPriorityClass", name: wpc }
      : spec.priorityClassName !== undefined
        ? { group: "scheduling.k8s.io", kind: "PriorityClass", name: spec.priorityClassName }
        : undefined;
  return withSpecHash({
    apiVersion: WORKLOAD_API_VERSION,
    kind: "Workload",
    metadata: {
      name: workloadName(run),
      namespace: cr.metadata.namespace,
      labels: runLabels(run),
      ownerReferences: [controllerRef("PretrainRun", cr.metadata)],
    },
    spec: compact({
      queueName: queue,
      // Owned only while suspended: otherwise the field is left to Kueue and administrators (deactivation).
      active: spec.suspend ? false : undefined,
      priorityClassRef,
      podSets: [
        {
          name: WORKLOAD_POD_SET,
          count: spec.numNodes,
          template: {
            spec: compact({
              restartPolicy: "Never",
              priorityClassName: spec.priorityClassName,
              runtimeClassName: spec.runtimeClassName,
              nodeSelector: spec.nodeSelector,
              tolerations: spec.tolerations,
              affinity: spec.affinity,
              containers: [compact({ name: "trainer", image: spec.image, resources: spec.resourcesPerNode })],
            }),
          },
        },
      ],
    }),
  });
}

export type WorkloadAdmission =
  | { kind: "absent" }
  | { kind: "pending"; message: string }
  | { kind: "admitted"; clusterQueue: string }
  | { kind: "evicted"; reason: string; message: string; reserved: boolean }
  | { kind: "finished" };

/** Where Kueue stands with the Workload, read from its conditions (Kueue's own `workload.IsAdmitted`, `IsEvicted`). */
export function workloadAdmission(wl: WorkloadView | undefined): WorkloadAdmission {
  if (wl === undefined) return { kind: "absent" };
  const c = wl.status?.conditions;
  if (isTrue(c, "Finished")) return { kind: "finished" };
  const reserved = isTrue(c, "QuotaReserved") || (wl.status?.admission ?? undefined) !== undefined;
  const evicted = getCondition(c, "Evicted");
  if (evicted?.status === "True" && reserved)
    return { kind: "evicted", reason: evicted.reason, message: evicted.message, reserved };
  if (isTrue(c, "Admitted") && reserved)
    return { kind: "admitted", clusterQueue: wl.status?.admission?.clusterQueue ?? "" };
  const why = getCondition(c, "QuotaReserved")?.message ?? getCondition(c, "Admitted")?.message ?? "";
  return { kind: "pending", message: why };
}

function statusOf(wl: WorkloadView): Record<string, unknown> {
  return { ...wl.status };
}

/**
 * After an eviction, once no pod of the run runs: the quota goes back to the ClusterQueue (QuotaReserved=False,
 * Admitted=False, the admission removed, Requeued as Kueue's job framework sets it), and Kueue queues the Workload
 * again.
 */
export function clearedAdmission(wl: WorkloadView, reason: string, message: string, now: Date): ChildStatusUpdate {
  const gen = wl.metadata.generation;
  let conditions = wl.status?.conditions ?? [];
  const requeued = reason === "Preempted" || reason === "NodeFailures";
  conditions = setCondition(
    conditions,
    { type: "Requeued", status: requeued ? "True" : "False", reason, message },
    gen,
    now,
  );
  conditions = setCondition(
    conditions,
    { type: "QuotaReserved", status: "False", reason: KUEUE_REASON.Pending, message },
    gen,
    now,
  );
  conditions = setCondition(
    conditions,
    {
      type: "Admitted",
      status: "False",
      reason: KUEUE_REASON.NoReservation,
      message: "The workload has no reservation",
    },
    gen,
    now,
  );
  return {
    apiVersion: WORKLOAD_API_VERSION,
    kind: "Workload",
    name: wl.metadata.name,
    from: statusOf(wl),
    to: { ...statusOf(wl), conditions, admission: null },
    resourceVersion: wl.metadata.resourceVersion,
  };
}

/** The run ended: Finished=True (reason Succeeded or Failed) makes Kueue release the quota. */
export function finishedWorkload(
  wl: WorkloadView,
  outcome: WorkloadFinishedReason,
  message: string,
  now: Date,
): ChildStatusUpdate {
  const conditions = setCondition(
    wl.status?.conditions,
    { type: "Finished", status: "True", reason: outcome, message },
    wl.metadata.generation,
    now,
  );
  return {
    apiVersion: WORKLOAD_API_VERSION,
    kind: "Workload",
    name: wl.metadata.name,
    from: statusOf(wl),
    to: { ...statusOf(wl), conditions },
    resourceVersion: wl.metadata.resourceVersion,
  };
}
