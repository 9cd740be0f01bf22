/**
 * metav1.Condition helpers: one condition per type; lastTransitionTime moves only when the status flips; every
 * condition carries the observedGeneration it was computed from.
 */
import type { Condition } from "../../api/v1alpha1/common.js";

export type ConditionStatus = Condition["status"];
export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

export function getCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return getCondition(conditions, type)?.status === "True";
}

/** Returns a new list with `input` set; order of existing types is kept, new types are appended. */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  generation: number | undefined,
  now: Date,
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === input.type);
  const old = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime: old !== undefined && old.status === input.status ? old.lastTransitionTime : toKubeTime(now),
  };
  if (generation !== undefined) next.observedGeneration = generation;
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

/** metav1.Time: RFC 3339 with second precision. */
export function toKubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface Transition {
  type: string;
  reason: string;
  message: string;
}

/** Conditions that became True, or changed reason while True, between two lists. */
export function transitionsToTrue(before: readonly Condition[] | undefined, after: readonly Condition[]): Transition[] {
  const out: Transition[] = [];
  for (const c of after) {
    if (c.status !== "True") continue;
    const old = getCondition(before, c.type);
    if (old?.status === "True" && old.reason === c.reason) continue;
    out.push({ type: c.type, reason: c.reason, message: c.message });
  }
  return out;
}
