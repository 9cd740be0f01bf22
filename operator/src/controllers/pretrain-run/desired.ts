/** Pure builders of a PretrainRun's children: headless Service, PodGroup, and the Indexed Job of one attempt. */
import { LABELS } from "../../api/v1alpha1/group.js";
import type { PretrainRunSpec } from "../../api/v1alpha1/pretrain-run.js";
import type { PvcMount } from "../../api/v1alpha1/common.js";
import { compact, KUEUE_QUEUE_LABEL, withLabel } from "../common.js";
import { baseLabels, controllerRef, withSpecHash, type CustomResource, type KubeObject } from "../types.js";

export const MASTER_PORT = 29500;
export const DATA_MOUNT = "/data/preprocessed";
export const CHECKPOINT_MOUNT = "/checkpoints";
export const COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index";
export const VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name";
export const COSCHEDULING_GROUP_LABEL = "scheduling.x-k8s.io/pod-group";

export function attemptJobName(run: string, attempt: number): string {
  return `${run}-a${attempt}`;
}

/** What the Job needs from the Plan. */
export interface PlanInputs {
  dataset: string;
  configuration: string;
  plansName: string | undefined;
  dataPvc: PvcMount;
}

export function runLabels(run: string): Record<string, string> {
  return baseLabels({ [LABELS.run]: run });
}

export function desiredService(cr: CustomResource, spec: PretrainRunSpec): KubeObject {
  const name = cr.metadata.name;
  return withSpecHash({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: cr.metadata.namespace, labels: runLabels(name), ownerReferences: [controllerRef("PretrainRun", cr.metadata)] },
    spec: {
      clusterIP: "None",
      // Rank 0's DNS name must resolve before the pods are Ready (rendezvous happens before readiness).
      publishNotReadyAddresses: true,
      selector: { [LABELS.run]: name },
      ports: [
        { name: "rendezvous", port: MASTER_PORT, targetPort: MASTER_PORT, protocol: "TCP" },
        { name: "metrics", port: spec.metrics.port, targetPort: spec.metrics.port, protocol: "TCP" },
      ],
    },
  });
}

export function desiredPodGroup(cr: CustomResource, spec: PretrainRunSpec): KubeObject | undefined {
  const gang = spec.scheduling.gang;
  const name = cr.metadata.name;
  const meta = { name, namespace: cr.metadata.namespace, labels: runLabels(name), ownerReferences: [controllerRef("PretrainRun", cr.metadata)] };
  switch (gang.scheduler) {
    case "none":
      return undefined;
    case "volcano":
      return withSpecHash({
        apiVersion: "scheduling.volcano.sh/v1beta1",
        kind: "PodGroup",
        metadata: meta,
        spec: compact({ minMember: spec.numNodes, queue: gang.queue, priorityClassName: spec.priorityClassName }),
      });
    case "coscheduling":
      return withSpecHash({
        apiVersion: "scheduling.x-k8s.io/v1alpha1",
        kind: "PodGroup",
        metadata: meta,
        spec: { minMember: spec.numNodes, scheduleTimeoutSeconds: gang.scheduleTimeoutSeconds },
      });
  }
}

export function trainCommand(spec: PretrainRunSpec, plan: PlanInputs): string[] {
  if (spec.command !== undefined) return spec.command;
  const cmd = ["ssl3d", "train", plan.dataset, plan.configuration, "-tr", spec.training.trainer];
  if (plan.plansName !== undefined) cmd.push("-p", plan.plansName);
  if (spec.training.epochs !== undefined) cmd.push("--epochs", String(spec.training.epochs));
  if (spec.training.preflight) cmd.push("--preflight");
  if (spec.training.modalities !== undefined) cmd.push("--modalities", spec.training.modalities.join(","));
  cmd.push(...(spec.training.args ?? []));
  return cmd;
}

export function desiredAttemptJob(cr: CustomResource, spec: PretrainRunSpec, plan: PlanInputs, attempt: number, resume: "latest" | "none"): KubeObject {
  const run = cr.metadata.name;
  const jobName = attemptJobName(run, attempt);
  const labels = { ...runLabels(run), [LABELS.attempt]: String(attempt), [LABELS.role]: "trainer" };
  const gang = spec.scheduling.gang;
  const podLabels: Record<string, string> = { ...labels };
  const podAnnotations: Record<string, string> = {};
  let schedulerName = gang.schedulerName;
  if (gang.scheduler === "volcano") {
    podAnnotations[VOLCANO_GROUP_ANNOTATION] = run;
    schedulerName ??= "volcano";
  } else if (gang.scheduler === "coscheduling") {
    podLabels[COSCHEDULING_GROUP_LABEL] = run;
  }
  const data = spec.storage.data ?? { ...plan.dataPvc, readOnly: true };
  const ckpt = spec.storage.checkpoints;
  const env = [
    { name: "PET_NNODES", value: String(spec.numNodes) },
    { name: "PET_NPROC_PER_NODE", value: String(spec.nprocPerNode) },
    { name: "PET_NODE_RANK", valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${COMPLETION_INDEX_ANNOTATION}']` } } },
    { name: "PET_MASTER_ADDR", value: `${jobName}-0.${run}` },
    { name: "PET_MASTER_PORT", value: String(MASTER_PORT) },
    { name: "SSL3D_RUN", value: run },
    { name: "SSL3D_ATTEMPT", value: String(attempt) },
    { name: "SSL3D_CHECKPOINT_DIR", value: CHECKPOINT_MOUNT },
    { name: "SSL3D_RESUME", value: resume },
    { name: "SSL3D_METRICS_PORT", value: String(spec.metrics.port) },
    // the trainer binds its endpoint to loopback unless told otherwise; in a pod Prometheus scrapes the pod IP
    { name: "SSL3D_METRICS_ADDRESS", value: "0.0.0.0" },
    { name: "SSL3D_TERMINATION_LOG", value: "/dev/termination-log" },
    { name: "nnssl_preprocessed", value: DATA_MOUNT },
    { name: "nnssl_results", value: CHECKPOINT_MOUNT },
    ...(spec.env ?? []).map((e) => compact({ name: e.name, value: e.value ?? "" })),
  ];
  return withSpecHash({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName,
      namespace: cr.metadata.namespace,
      labels: withLabel(labels, KUEUE_QUEUE_LABEL, spec.scheduling.queueName),
      ownerReferences: [controllerRef("PretrainRun", cr.metadata)],
    },
    spec: {
      completionMode: "Indexed",
      completions: spec.numNodes,
      parallelism: spec.numNodes,
      // The first failed rank fails the Job; the operator restarts the whole gang as a new attempt.
      backoffLimit: 0,
      // Marks preemptions/evictions in the Job's own Failed condition (reason PodFailurePolicy), so a disruption is
      // recognised even when the pods are already gone. FailJob, not Ignore: a lone replacement pod would join a
      // broken rendezvous.
      podFailurePolicy: { rules: [{ action: "FailJob", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] }] },
      template: {
        metadata: compact({ labels: podLabels, annotations: Object.keys(podAnnotations).length > 0 ? podAnnotations : undefined }),
        spec: compact({
          restartPolicy: "Never",
          subdomain: run,
          schedulerName,
          serviceAccountName: spec.serviceAccountName,
          priorityClassName: spec.priorityClassName,
          nodeSelector: spec.nodeSelector,
          tolerations: spec.tolerations,
          volumes: [
            { name: "data", persistentVolumeClaim: { claimName: data.claimName, readOnly: data.readOnly ?? true } },
            { name: "checkpoints", persistentVolumeClaim: { claimName: ckpt.claimName } },
            { name: "dshm", emptyDir: { medium: "Memory" } },
          ],
          containers: [
            compact({
              name: "trainer",
              image: spec.image,
              imagePullPolicy: spec.imagePullPolicy,
              command: trainCommand(spec, plan),
              env,
              resources: spec.resourcesPerNode,
              ports: [
                { name: "rendezvous", containerPort: MASTER_PORT, protocol: "TCP" },
                { name: "metrics", containerPort: spec.metrics.port, protocol: "TCP" },
              ],
              volumeMounts: [
                compact({ name: "data", mountPath: DATA_MOUNT, readOnly: data.readOnly ?? true, subPath: data.subPath }),
                compact({ name: "checkpoints", mountPath: CHECKPOINT_MOUNT, subPath: ckpt.subPath }),
                { name: "dshm", mountPath: "/dev/shm" },
              ],
              terminationMessagePolicy: "FallbackToLogsOnError",
            }),
          ],
        }),
      },
    },
  });
}
