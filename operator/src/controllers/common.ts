/** Pieces shared by the three reconcilers: spec validation, Job pod templates, events from condition flips. */
import { z } from "zod";
import type { Condition } from "../../../api/v1alpha1/common.js";
import { transitionsToTrue } from "../conditions.js";
import type { EventSpec } from "./types.js";
import { CollectionReason, PlanReason, PretrainRunReason } from "../../../api/v1alpha1/reasons.js";

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

export function parseSpec<T>(schema: z.ZodType<T>, spec: unknown): Parsed<T> {
  const r = schema.safeParse(spec ?? {});
  if (r.success) return { ok: true, value: r.data };
  const first = r.error.issues[0];
  const where = first === undefined ? "spec" : ["spec", ...first.path.map(String)].join(".");
  return { ok: false, message: `${where}: ${first?.message ?? "invalid"}` };
}

/** Status from the API server; a status this operator cannot read is treated as empty (it is rewritten). */
export function parseStatus<T>(schema: z.ZodType<T>, status: unknown): T {
  const r = schema.safeParse(status ?? {});
  return r.success ? r.data : schema.parse({});
}

/** Condition types whose turning True is worth a Warning event. */
const WARNING_TYPES = new Set(["Failed", "Stale", "Restarting"]);
/** Reasons that are failures even on a condition turning False (e.g. Ready=False/ValidationFailed). */
const WARNING_REASONS = new Set<string>([
  CollectionReason.ValidationFailed,
  CollectionReason.IndexingFailed,
  CollectionReason.InvalidSummary,
  PlanReason.ValidationFailed,
  PlanReason.InvalidSummary,
  PlanReason.PreprocessingFailed,
  PretrainRunReason.ValidationFailed,
  // Pending reasons and refused children: someone must act.
  PretrainRunReason.ChildRefused,
  PretrainRunReason.ImagePullBackOff,
  PretrainRunReason.Unschedulable,
  PretrainRunReason.CreateContainerConfigError,
  PretrainRunReason.PodCreationFailed,
  PlanReason.PodCreationFailed,
  CollectionReason.PodCreationFailed,
]);

/**
 * One Event per transition: a condition that became True (or changed reason while True), and a condition that moved
 * to a failure reason while False.
 */
export function transitionEvents(
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
  skipTypes: readonly string[] = [],
): EventSpec[] {
  const out: EventSpec[] = transitionsToTrue(before, after)
    .filter((t) => !skipTypes.includes(t.type))
    .map((t) => ({
      type: WARNING_TYPES.has(t.type) || WARNING_REASONS.has(t.reason) ? "Warning" : "Normal",
      reason: t.reason,
      note: t.message,
      action: t.type,
    }));
  for (const c of after) {
    if (c.status !== "False" || !WARNING_REASONS.has(c.reason) || skipTypes.includes(c.type)) continue;
    const old = before?.find((b) => b.type === c.type);
    if (old?.status === "False" && old.reason === c.reason) continue;
    if (out.some((e) => e.reason === c.reason)) continue;
    out.push({ type: "Warning", reason: c.reason, note: c.message, action: c.type });
  }
  return out;
}

export interface ToleratedPod {
  nodeSelector?: Record<string, string>;
  tolerations?: readonly Record<string, unknown>[];
}

/** Drops undefined fields so desired objects compare and hash stably. */
export function compact<T extends Record<string, unknown>>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export const KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name";

/** Labels plus an optional one (absent when the value is undefined). */
export function withLabel(
  labels: Record<string, string>,
  key: string,
  value: string | undefined,
): Record<string, string> {
  return value === undefined ? { ...labels } : { ...labels, [key]: value };
}

/** Pod-level part of the restricted Pod Security Standard, with the image's user by default. */
export function restrictedPodSecurity(id: {
  runAsUser: number;
  runAsGroup: number;
  fsGroup: number;
}): Record<string, unknown> {
  return {
    runAsNonRoot: true,
    runAsUser: id.runAsUser,
    runAsGroup: id.runAsGroup,
    fsGroup: id.fsGroup,
    fsGroupChangePolicy: "OnRootMismatch",
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** Container-level part of the restricted Pod Security Standard: read-only root, no privileges. */
export function restrictedContainerSecurity(): Record<string, unknown> {
  return {
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}
