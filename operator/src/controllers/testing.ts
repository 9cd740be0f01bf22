/** Builders for reconciler tests (kubeflow-style wrappers): plain objects as the API server would return them. */
import { API_VERSION } from "../../../api/v1alpha1/group.js";
import type { CustomResource, JobView, PodView } from "./types.js";
import { PlanReason } from "../../../api/v1alpha1/reasons.js";

export const T0 = new Date("2026-03-01T12:00:00Z");
export const at = (s: number): Date => new Date(T0.getTime() + s * 1000);

export function aResource(kind: string, name: string, spec: unknown, status?: unknown, generation = 1): CustomResource {
  return {
    apiVersion: API_VERSION,
    kind,
    metadata: { name, namespace: "ns", uid: `${name}-uid`, generation },
    spec,
    ...(status !== undefined ? { status } : {}),
  };
}

export function aJob(
  name: string,
  opts: {
    labels?: Record<string, string>;
    condition?: { type: string; reason?: string; message?: string };
    ready?: number;
    suspend?: boolean;
  } = {},
): JobView {
  return {
    metadata: { name, namespace: "ns", labels: opts.labels ?? {} },
    spec: { ...(opts.suspend !== undefined ? { suspend: opts.suspend } : {}) },
    status: {
      ...(opts.ready !== undefined ? { ready: opts.ready, active: opts.ready } : {}),
      ...(opts.condition ? { conditions: [{ status: "True", ...opts.condition }] } : {}),
    },
  };
}

export function aPod(
  job: string,
  index: number,
  opts: {
    phase?: string;
    exitCode?: number;
    message?: string;
    disruption?: boolean;
    labels?: Record<string, string>;
    podIP?: string;
  } = {},
): PodView {
  return {
    metadata: {
      name: `${job}-${index}`,
      namespace: "ns",
      labels: { "job-name": job, "batch.kubernetes.io/job-completion-index": String(index), ...(opts.labels ?? {}) },
    },
    status: {
      phase: opts.phase ?? "Running",
      ...(opts.podIP !== undefined ? { podIP: opts.podIP } : {}),
      conditions: opts.disruption === true ? [{ type: "DisruptionTarget", status: "True" }] : [],
      containerStatuses:
        opts.exitCode !== undefined
          ? [{ name: "c", state: { terminated: { exitCode: opts.exitCode, message: opts.message ?? "" } } }]
          : [],
    },
  };
}

export function readyPlanResource(name = "plan"): CustomResource {
  return aResource(
    "Plan",
    name,
    {
      collectionRef: { name: "col" },
      plansName: "nnsslPlans",
      preprocess: { image: "img" },
      output: { pvc: { claimName: "prep", subPath: "p" } },
    },
    {
      phase: "Ready",
      dataset: "Dataset001_Demo",
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: PlanReason.Preprocessed,
          message: "",
          lastTransitionTime: "2026-03-01T11:00:00Z",
        },
      ],
      outputs: { images: 2, valid: 2, failed: 0, configurations: ["onemmiso"], plansFile: "x", preprocessedDir: "y" },
    },
  );
}
