/**
 * Reading a failed or stuck attempt (pure): exit codes and termination messages of every rank → the failure policy
 * of api/termination.ts; Pending pods → why they wait; the startup deadline of a gang that never became ready.
 */
import {
  decideOnExitCodes,
  FailureMessageSchema,
  parseTerminationJson,
  truncate,
  type Decision,
} from "../../../../api/termination.js";
import { COMPLETION_INDEX_ANNOTATION } from "./desired.js";
import { jobCondition, terminationMessage, type JobView, type PodView } from "../types.js";
import { PretrainRunReason } from "../../../../api/v1alpha1/reasons.js";

export interface ChildRefusal {
  kind: string;
  name: string;
  message: string;
}

export interface RankEvidence {
  rank: number;
  exitCode?: number | undefined;
  reason?: string | undefined;
  message?: string | undefined;
}

export interface AttemptFailure {
  decision: Decision;
  /** Preempted (DisruptionTarget), RankFailed, or for Fail the runtime's reason (ConfigError, DataError, ...). */
  reason: string;
  exitCode: number | undefined;
  message: string;
  ranks: RankEvidence[];
}

function rankOf(p: PodView): number {
  const v = p.metadata.annotations?.[COMPLETION_INDEX_ANNOTATION] ?? p.metadata.labels?.[COMPLETION_INDEX_ANNOTATION];
  const n = Number(v);
  return Number.isInteger(n) ? n : -1;
}

export function isDisruption(job: JobView, pods: readonly PodView[]): boolean {
  const failed = jobCondition(job, "Failed");
  if (failed?.reason === "PodFailurePolicy" && /DisruptionTarget/.test(failed.message ?? "")) return true;
  return pods.some(
    (p) => p.status?.conditions?.some((c) => c.type === "DisruptionTarget" && c.status === "True") === true,
  );
}

/** Evidence of each rank: exit code and termination message of the trainer container. */
export function rankEvidence(pods: readonly PodView[]): RankEvidence[] {
  const out: RankEvidence[] = [];
  for (const p of pods) {
    const t =
      p.status?.containerStatuses?.find((c) => c.name === "trainer")?.state?.terminated ??
      p.status?.containerStatuses?.[0]?.state?.terminated;
    if (t === undefined) continue;
    out.push({
      rank: rankOf(p),
      exitCode: t.exitCode,
      reason: t.reason,
      message: t.message === undefined ? undefined : truncate(t.message.trim(), 300),
    });
  }
  return out.sort((a, b) => a.rank - b.rank).slice(0, 16);
}

const FAIL_REASON: Record<number, PretrainRunReason> = {
  2: PretrainRunReason.ConfigError,
  3: PretrainRunReason.DataError,
  4: PretrainRunReason.TrainingDiverged,
};

/** The failure policy applied to a Failed attempt Job. */
export function attemptFailure(job: JobView, pods: readonly PodView[]): AttemptFailure {
  const failed = jobCondition(job, "Failed");
  const ranks = rankEvidence(pods);
  const fallback = truncate(terminationMessage(pods) ?? failed?.message ?? failed?.reason ?? "a rank failed", 600);
  if (isDisruption(job, pods))
    return { decision: "Restart", reason: PretrainRunReason.Preempted, exitCode: undefined, message: fallback, ranks };
  const { decision, exitCode } = decideOnExitCodes(
    ranks.map((r) => r.exitCode).filter((c): c is number => c !== undefined),
  );
  if (decision === "Restart")
    return { decision, reason: PretrainRunReason.RankFailed, exitCode, message: fallback, ranks };
  const deciding = ranks.find((r) => r.exitCode === exitCode);
  const parsed = parseTerminationJson(deciding?.message, FailureMessageSchema);
  const reason =
    parsed.ok && parsed.value.reason === PretrainRunReason.CheckpointOwnedByAnotherRun
      ? parsed.value.reason
      : (FAIL_REASON[exitCode ?? 0] ?? PretrainRunReason.RankFailed);
  const message = parsed.ok ? parsed.value.message : (deciding?.message ?? fallback);
  return {
    decision,
    reason,
    exitCode,
    message: `rank ${deciding?.rank ?? "?"} exited ${exitCode ?? "?"}: ${truncate(message, 600)}`,
    ranks,
  };
}

const IMAGE_REASONS = new Set(["ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"]);
const CONFIG_REASONS = new Set(["CreateContainerConfigError", "CreateContainerError"]);

/** Why the attempt's pods wait, when it is something a user must fix (not plain scheduling latency). */
export function pendingProblem(pods: readonly PodView[]): { reason: string; message: string } | undefined {
  for (const p of pods) {
    for (const cs of p.status?.containerStatuses ?? []) {
      const w = cs.state?.waiting;
      if (w?.reason !== undefined && (IMAGE_REASONS.has(w.reason) || CONFIG_REASONS.has(w.reason))) {
        return {
          reason: IMAGE_REASONS.has(w.reason)
            ? PretrainRunReason.ImagePullBackOff
            : PretrainRunReason.CreateContainerConfigError,
          message: `Pod ${p.metadata.name}: ${w.reason}: ${truncate(w.message ?? "", 400)}`,
        };
      }
    }
  }
  for (const p of pods) {
    const c = p.status?.conditions?.find(
      (x) => x.type === "PodScheduled" && x.status === "False" && x.reason === "Unschedulable",
    );
    if (c !== undefined)
      return {
        reason: PretrainRunReason.Unschedulable,
        message: `Pod ${p.metadata.name} cannot be scheduled: ${truncate(c.message ?? "", 400)}`,
      };
  }
  return undefined;
}

/** The gang did not become ready within the startup deadline, counted from the Job's admission (status.startTime). */
export function startupDeadlineExceeded(
  job: JobView,
  numNodes: number,
  deadlineSeconds: number | undefined,
  now: Date,
): { exceeded: boolean; dueMs: number | undefined } {
  if (deadlineSeconds === undefined || job.spec?.suspend === true) return { exceeded: false, dueMs: undefined };
  const start = job.status?.startTime;
  if (start === undefined || (job.status?.ready ?? 0) >= numNodes) return { exceeded: false, dueMs: undefined };
  const due = Date.parse(start) + deadlineSeconds * 1000;
  return { exceeded: now.getTime() >= due, dueMs: due - now.getTime() };
}
