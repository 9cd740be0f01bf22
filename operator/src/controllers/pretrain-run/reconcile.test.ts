import assert from "node:assert/strict";
import { test } from "node:test";
import type { PretrainRunStatus } from "../../../../api/v1alpha1/pretrain-run.js";
import { aJob, aPod, aResource, at, readyPlanResource, T0 } from "../testing.js";
import type { CustomResource, JobView, KubeObject, PodCreationFailure, PodView, ReconcileResult } from "../types.js";
import { reconcilePretrainRun, scrapeTarget, type ProgressSample } from "./reconcile.js";
import type { WorkloadView } from "./workload.js";
import { PretrainRunReason } from "../../../../api/v1alpha1/reasons.js";

const baseSpec = {
  planRef: { name: "plan" },
  image: "img",
  numNodes: 2,
  storage: { checkpoints: { claimName: "ckpt" } },
  runPolicy: { maxRestarts: 1 },
};
const runLabels = { "ssl3d.io/run": "run" };

function run(status?: Partial<PretrainRunStatus>, spec: Record<string, unknown> = {}, generation = 1): CustomResource {
  return aResource("PretrainRun", "run", { ...baseSpec, ...spec }, status, generation);
}

/** A run in attempt `n` whose Job exists (status as the previous reconcile left it). */
function inAttempt(n: number, extra: Partial<PretrainRunStatus> = {}): Partial<PretrainRunStatus> {
  return {
    phase: "Running",
    attempt: n,
    activeJob: `run-a${n}`,
    startTime: "2026-03-01T11:59:00Z",
    conditions: [
      {
        type: "Created",
        status: "True",
        reason: PretrainRunReason.JobCreated,
        message: "",
        lastTransitionTime: "2026-03-01T11:59:00Z",
        observedGeneration: 1,
      },
    ],
    ...extra,
  };
}
const attemptJob = (n: number, o: Parameters<typeof aJob>[1] = {}): JobView =>
  aJob(`run-a${n}`, { labels: { ...runLabels, "ssl3d.io/attempt": String(n) }, ...o });
const attemptPod = (n: number, i: number, o: Parameters<typeof aPod>[2] = {}): PodView =>
  aPod(`run-a${n}`, i, { labels: { ...runLabels, "ssl3d.io/attempt": String(n) }, ...o });

interface Case {
  run: CustomResource;
  plan?: CustomResource | undefined;
  jobs?: JobView[];
  pods?: PodView[];
  now?: Date;
  metrics?: ProgressSample;
  refused?: { kind: string; name: string; message: string };
  podCreationFailures?: PodCreationFailure[];
  workload?: WorkloadView;
  want: (r: ReconcileResult<PretrainRunStatus>) => void;
}

/** The run's Workload as Kueue leaves it after admission (ClusterQueue cq). */
const admittedWorkload: WorkloadView = {
  metadata: { name: "pretrainrun-run", namespace: "ns", generation: 1, resourceVersion: "7" },
  status: {
    admission: { clusterQueue: "cq" },
    conditions: ["QuotaReserved", "Admitted"].map((type) => ({
      type,
      status: "True" as const,
      reason: type === "Admitted" ? "Admitted" : "QuotaReserved",
      message: "",
      lastTransitionTime: "2026-03-01T11:59:00Z",
    })),
  },
};

const cond = (
  r: ReconcileResult<PretrainRunStatus>,
  type: string,
): { status: string; reason: string; message: string } | undefined => r.status.conditions?.find((c) => c.type === type);
const applied = (r: ReconcileResult<PretrainRunStatus>, kind: string): KubeObject[] =>
  r.apply.filter((o) => o.kind === kind);
const env = (job: KubeObject): Record<string, unknown> =>
  Object.fromEntries(
    (
      job.spec as {
        template: { spec: { containers: { env: { name: string; value?: string; valueFrom?: unknown }[] }[] } };
      }
    ).template.spec.containers[0]!.env.map((e) => [e.name, e.value ?? e.valueFrom]),
  );

const cases: Record<string, Case> = {
  "Plan missing → Pending, Queued/PlanNotReady, no children": {
    run: run(),
    plan: undefined,
    want: (r) => {
      assert.equal(r.status.phase, "Pending");
      assert.equal(cond(r, "Queued")?.reason, PretrainRunReason.PlanNotReady);
      assert.equal(r.apply.length, 0);
    },
  },
  "Plan Ready → attempt 1: headless Service + Indexed Job with the env contract": {
    run: run(undefined, { nprocPerNode: 4, env: [{ name: "MY_VAR", value: "x" }] }),
    want: (r) => {
      assert.equal(r.status.attempt, 1);
      assert.equal(r.status.activeJob, "run-a1");
      assert.equal(r.status.startTime, "2026-03-01T12:00:00Z");
      assert.equal(cond(r, "Created")?.status, "True");
      const [svc] = applied(r, "Service");
      assert.equal((svc!.spec as { clusterIP: string }).clusterIP, "None");
      const [job] = applied(r, "Job");
      const spec = job!.spec as {
        completions: number;
        parallelism: number;
        backoffLimit: number;
        completionMode: string;
        template: { spec: { subdomain: string; restartPolicy: string } };
      };
      assert.deepEqual(
        [spec.completions, spec.parallelism, spec.backoffLimit, spec.completionMode],
        [2, 2, 0, "Indexed"],
      );
      assert.equal(spec.template.spec.subdomain, "run");
      const e = env(job!);
      assert.equal(e.PET_NNODES, "2");
      assert.equal(e.PET_NPROC_PER_NODE, "4");
      assert.equal(e.PET_MASTER_ADDR, "run-a1-0.run");
      // Every attempt resumes, the first included: a Job deleted by hand must not restart from scratch.
      assert.equal(e.SSL3D_RESUME, "latest");
      assert.equal(e.SSL3D_RUN_UID, "run-uid");
      assert.equal(e.SSL3D_CHECKPOINT_DIR, "/checkpoints/run-run-uid/checkpoints");
      assert.equal(e.SSL3D_METRICS_ADDRESS, "0.0.0.0");
      assert.equal(e.SSL3D_ATTEMPT, "1");
      // the trainer binds its metrics to loopback unless told otherwise: pods must be scrapeable on their IP
      assert.equal(e.SSL3D_METRICS_ADDRESS, "0.0.0.0");
      assert.equal(e.MY_VAR, "x");
      assert.equal(job!.metadata.ownerReferences?.[0]?.uid, "run-uid");
      assert.ok(job!.metadata.annotations?.["ssl3d.io/spec-hash"]);
      assert.deepEqual(
        r.events.map((x) => x.reason),
        [PretrainRunReason.JobCreated],
      );
    },
  },
  "all ranks ready → Running, requeue at the scrape interval": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 2 })],
    want: (r) => {
      assert.equal(r.status.phase, "Running");
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.AllPodsReady);
      assert.equal(r.requeueAfterMs, 30_000);
      assert.equal(r.delete.length, 0);
    },
  },
  "Job suspended by Kueue → Queued/WaitingForAdmission": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { suspend: true })],
    want: (r) => {
      assert.equal(r.status.phase, "Queued");
      assert.equal(cond(r, "Queued")?.reason, PretrainRunReason.WaitingForAdmission);
    },
  },
  "a rank failed → gang restart: attempt 2 resumes, counted": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { condition: { type: "Failed", reason: "BackoffLimitExceeded" } })],
    pods: [
      attemptPod(1, 0, { phase: "Failed", exitCode: 137, message: "killed" }),
      attemptPod(1, 1, { phase: "Failed", exitCode: 1, message: "TrainingError: NaN" }),
    ],
    want: (r) => {
      assert.equal(r.status.attempt, 2);
      assert.equal(r.status.restarts, 1);
      assert.equal(r.status.restartsCountTowardsMax, 1);
      assert.equal(r.status.phase, "Restarting");
      assert.equal(r.status.lastFailure?.message, "TrainingError: NaN");
      assert.deepEqual(
        r.delete.map((d) => d.name),
        ["run-a1"],
      );
      assert.deepEqual(
        r.events.map((e) => `${e.type}/${e.reason}`),
        ["Warning/RankFailed"],
      );
      // The old ranks are terminated already, so attempt 2 is created at once.
      assert.equal(env(applied(r, "Job")[0]!).SSL3D_RESUME, "latest");
    },
  },
  "preemption (PodFailurePolicy/DisruptionTarget) restarts without counting": {
    run: run(inAttempt(2, { restarts: 1, restartsCountTowardsMax: 1 })),
    jobs: [
      attemptJob(2, {
        condition: {
          type: "Failed",
          reason: "PodFailurePolicy",
          message: "Pod ns/run-a2-0 has condition DisruptionTarget matching FailJob rule at index 0",
        },
      }),
    ],
    want: (r) => {
      assert.equal(r.status.attempt, 3);
      assert.equal(r.status.restarts, 2);
      assert.equal(r.status.restartsCountTowardsMax, 1);
      assert.equal(cond(r, "Restarting")?.reason, PretrainRunReason.Preempted);
    },
  },
  "a DisruptionTarget pod condition alone also marks a preemption": {
    run: run(inAttempt(2, { restarts: 1, restartsCountTowardsMax: 1 })),
    jobs: [attemptJob(2, { condition: { type: "Failed", reason: "BackoffLimitExceeded" } })],
    pods: [attemptPod(2, 0, { phase: "Failed", exitCode: 143, disruption: true })],
    want: (r) => {
      assert.equal(r.status.restartsCountTowardsMax, 1);
      assert.equal(r.status.attempt, 3);
    },
  },
  "a rank failed while the Plan is gone → the new attempt number is kept, nothing created yet": {
    run: run(inAttempt(1)),
    plan: undefined,
    jobs: [attemptJob(1, { condition: { type: "Failed", reason: "BackoffLimitExceeded" } })],
    want: (r) => {
      assert.equal(r.status.attempt, 2);
      assert.equal(r.status.activeJob, undefined);
      assert.equal(r.status.phase, "Restarting");
      assert.equal(applied(r, "Job").length, 0);
      assert.deepEqual(
        r.delete.map((d) => d.name),
        ["run-a1"],
      );
      assert.equal(cond(r, "Queued")?.reason, PretrainRunReason.PlanNotReady);
    },
  },
  "maxRestarts exhausted → Failed/BackoffLimitExceeded, nothing created": {
    run: run(inAttempt(2, { restarts: 1, restartsCountTowardsMax: 1 })),
    jobs: [
      attemptJob(2, {
        condition: {
          type: "Failed",
          reason: "BackoffLimitExceeded",
          message: "Job has reached the specified backoff limit",
        },
      }),
    ],
    want: (r) => {
      assert.equal(r.status.phase, "Failed");
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.BackoffLimitExceeded);
      assert.equal(r.status.restarts, 1);
      assert.equal(applied(r, "Job").length, 0);
      assert.ok(r.status.completionTime);
    },
  },
  "old attempt's pods still running → wait before creating the next attempt (blocking recreate)": {
    run: run(inAttempt(2, { activeJob: undefined, phase: "Restarting" })),
    jobs: [],
    pods: [attemptPod(1, 0, { phase: "Running" })],
    want: (r) => {
      assert.equal(applied(r, "Job").length, 0);
      assert.equal(r.requeueAfterMs, 2000);
      assert.equal(r.status.phase, "Restarting");
    },
  },
  "suspend → delete the attempt Job, keep the Service": {
    run: run(inAttempt(1), { suspend: true }, 2),
    jobs: [attemptJob(1, { ready: 2 })],
    want: (r) => {
      assert.deepEqual(
        r.delete.map((d) => `${d.kind}/${d.name}`),
        ["Job/run-a1"],
      );
      assert.equal(r.status.phase, "Suspended");
      assert.equal(r.status.activeJob, undefined);
      assert.equal(cond(r, "Suspended")?.status, "True");
      assert.equal(applied(r, "Service").length, 0);
    },
  },
  "resume → new attempt from the latest checkpoint; the deadline clock restarts": {
    run: run(
      {
        ...inAttempt(1, { phase: "Suspended", activeJob: undefined }),
        conditions: [
          {
            type: "Suspended",
            status: "True",
            reason: PretrainRunReason.Suspended,
            message: "",
            lastTransitionTime: "2026-03-01T11:00:00Z",
          },
        ],
      },
      { runPolicy: { activeDeadlineSeconds: 60 } },
      3,
    ),
    want: (r) => {
      assert.equal(r.status.attempt, 2);
      assert.equal(r.status.startTime, "2026-03-01T12:00:00Z");
      assert.equal(cond(r, "Suspended")?.reason, PretrainRunReason.Resumed);
      assert.equal(env(applied(r, "Job")[0]!).SSL3D_RESUME, "latest");
      assert.ok(r.events.some((e) => e.reason === PretrainRunReason.Resumed));
      assert.equal(r.requeueAfterMs, 60_000);
    },
  },
  "created with spec.suspend (waiting for admission) → no children, no pods, Suspended and Queued": {
    run: run(undefined, { suspend: true, runPolicy: { activeDeadlineSeconds: 60 } }),
    want: (r) => {
      assert.equal(r.apply.length, 0);
      assert.equal(r.status.phase, "Suspended");
      assert.equal(r.status.attempt, undefined);
      assert.equal(r.status.startTime, undefined, "the deadline clock does not run while suspended");
      assert.equal(cond(r, "Queued")?.reason, "Suspended");
      assert.equal(r.requeueAfterMs, undefined);
    },
  },
  "admitted (spec.suspend → false) before any attempt → attempt 1 starts now, deadline counted from admission": {
    run: run(
      {
        phase: "Suspended",
        conditions: [
          {
            type: "Suspended",
            status: "True",
            reason: "Suspended",
            message: "",
            lastTransitionTime: "2026-03-01T10:00:00Z",
          },
        ],
      },
      { runPolicy: { activeDeadlineSeconds: 600 } },
      2,
    ),
    want: (r) => {
      assert.equal(r.status.attempt, 1);
      assert.equal(applied(r, "Job")[0]?.metadata.name, "run-a1");
      assert.equal(r.status.startTime, "2026-03-01T12:00:00Z");
      assert.equal(cond(r, "Suspended")?.status, "False");
      assert.equal(r.requeueAfterMs, 600_000);
    },
  },
  "suspended longer than activeDeadlineSeconds → admission does not fail the run (the clock restarts)": {
    run: run(
      {
        ...inAttempt(1, { phase: "Suspended", activeJob: undefined, startTime: "2026-03-01T08:00:00Z" }),
        conditions: [
          {
            type: "Suspended",
            status: "True",
            reason: "Suspended",
            message: "",
            lastTransitionTime: "2026-03-01T08:01:00Z",
          },
        ],
      },
      { runPolicy: { activeDeadlineSeconds: 3600 } },
      3,
    ),
    want: (r) => {
      assert.notEqual(r.status.phase, "Failed");
      assert.equal(r.status.attempt, 2);
      assert.equal(r.status.startTime, "2026-03-01T12:00:00Z");
    },
  },
  "admission starts a fresh attempt Job, so its startup deadline counts from admission": {
    run: run(
      {
        ...inAttempt(1, { phase: "Suspended", activeJob: undefined }),
        conditions: [
          {
            type: "Suspended",
            status: "True",
            reason: "Suspended",
            message: "",
            lastTransitionTime: "2026-03-01T08:01:00Z",
          },
        ],
      },
      { runPolicy: { startupDeadlineSeconds: 60 } },
      3,
    ),
    // The stopped attempt's Job is still being deleted and never got ready.
    jobs: [{ ...attemptJob(1), status: { startTime: "2026-03-01T08:00:00Z", ready: 0 } }],
    want: (r) => {
      assert.equal(r.status.lastFailure, undefined, "the old attempt's startup deadline is not charged");
      assert.equal(r.status.restarts, undefined);
      assert.ok(r.delete.some((d) => d.name === "run-a1"));
      assert.equal(applied(r, "Job")[0]?.metadata.name, "run-a2");
    },
  },
  "a PretrainRun carrying the Kueue queue label is the admitted unit: its attempt Jobs are not queued again": {
    run: {
      ...run(undefined, { scheduling: { queueName: "gpu" } }),
      metadata: { ...run().metadata, labels: { "kueue.x-k8s.io/queue-name": "gpu" } },
    },
    workload: admittedWorkload,
    want: (r) => {
      const job = applied(r, "Job")[0]!;
      assert.equal(job.metadata.labels?.["kueue.x-k8s.io/queue-name"], undefined);
    },
  },
  "deadline passed → Failed/DeadlineExceeded and the attempt is deleted": {
    run: run(inAttempt(1), { runPolicy: { activeDeadlineSeconds: 30 } }),
    jobs: [attemptJob(1, { ready: 2 })],
    now: at(0), // startTime was 60 s ago
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.DeadlineExceeded);
      assert.deepEqual(
        r.delete.map((d) => d.name),
        ["run-a1"],
      );
    },
  },
  "deadline ahead → requeue at the deadline": {
    run: run(inAttempt(1), { runPolicy: { activeDeadlineSeconds: 90 } }),
    jobs: [attemptJob(1, { ready: 1 })],
    want: (r) => {
      assert.equal(r.requeueAfterMs, 30_000);
      assert.equal(r.status.phase, "Pending");
    },
  },
  "Job complete → Succeeded": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { condition: { type: "Complete" } })],
    want: (r) => {
      assert.equal(r.status.phase, "Succeeded");
      assert.equal(cond(r, "Succeeded")?.reason, PretrainRunReason.Completed);
    },
  },
  "TTL after finished elapsed → delete the run": {
    run: run(
      {
        ...inAttempt(1),
        phase: "Succeeded",
        completionTime: "2026-03-01T11:00:00Z",
        conditions: [
          {
            type: "Succeeded",
            status: "True",
            reason: PretrainRunReason.Completed,
            message: "",
            lastTransitionTime: "2026-03-01T11:00:00Z",
          },
        ],
      },
      { runPolicy: { ttlSecondsAfterFinished: 60 } },
    ),
    jobs: [attemptJob(1, { condition: { type: "Complete" } })],
    want: (r) => {
      assert.equal(r.deleteSelf, true);
    },
  },
  "reserved env name → ValidationFailed with a Warning event, nothing applied": {
    run: run(undefined, { env: [{ name: "SSL3D_RESUME", value: "none" }] }),
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.ValidationFailed);
      assert.match(cond(r, "Failed")!.message, /SSL3D_RESUME is reserved/);
      assert.deepEqual(
        r.events.map((e) => `${e.type}/${e.reason}`),
        ["Warning/ValidationFailed"],
      );
      assert.equal(r.apply.length, 0);
    },
  },
  "a finished run keeps its outcome when a later edit is invalid": {
    run: run(
      {
        ...inAttempt(1),
        phase: "Succeeded",
        completionTime: "2026-03-01T11:00:00Z",
        conditions: [
          {
            type: "Succeeded",
            status: "True",
            reason: PretrainRunReason.Completed,
            message: "",
            lastTransitionTime: "2026-03-01T11:00:00Z",
          },
        ],
      },
      { env: [{ name: "PET_NNODES", value: "1" }] },
      2,
    ),
    jobs: [attemptJob(1, { condition: { type: "Complete" } })],
    want: (r) => {
      assert.equal(r.status.phase, "Succeeded");
      assert.equal(cond(r, "Failed"), undefined);
      assert.deepEqual(r.events, []);
    },
  },
  "exit code 3 (input data) on one rank → Failed at once, no restart, evidence of every rank": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { condition: { type: "Failed", reason: "BackoffLimitExceeded" } })],
    pods: [
      attemptPod(1, 0, { phase: "Failed", exitCode: 143, message: "stopped" }),
      attemptPod(1, 1, {
        phase: "Failed",
        exitCode: 3,
        message: '{"exitCode":3,"reason":"DataError","message":"/data/x.zarr: truncated chunk"}',
      }),
    ],
    want: (r) => {
      assert.equal(r.status.phase, "Failed");
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.DataError);
      assert.match(cond(r, "Failed")!.message, /rank 1 exited 3: \/data\/x.zarr: truncated chunk/);
      assert.equal(r.status.restarts, 0);
      assert.equal(r.status.lastFailure?.exitCode, 3);
      const ranks: { rank: number; exitCode?: number | undefined }[] = r.status.lastFailure.ranks ?? [];
      assert.deepEqual(
        ranks.map((x) => [x.rank, x.exitCode]),
        [
          [0, 143],
          [1, 3],
        ],
      );
      assert.equal(applied(r, "Job").length, 0);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PretrainRunReason.DataError));
    },
  },
  "exit code 2 (configuration) → Failed without restarts even with budget left": {
    run: run(inAttempt(1), { runPolicy: { maxRestarts: 5 } }),
    jobs: [attemptJob(1, { condition: { type: "Failed" } })],
    pods: [attemptPod(1, 0, { phase: "Failed", exitCode: 2, message: "bad flag" })],
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.ConfigError);
      assert.equal(r.status.attempt, 1);
    },
  },
  "exit code 4 (diverged) → Failed (TrainingDiverged)": {
    run: run(inAttempt(1), { runPolicy: { maxRestarts: 5 } }),
    jobs: [attemptJob(1, { condition: { type: "Failed" } })],
    pods: [attemptPod(1, 0, { phase: "Failed", exitCode: 4 }), attemptPod(1, 1, { phase: "Failed", exitCode: 5 })],
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.TrainingDiverged);
    },
  },
  "exit code 5 (peer failed) and signals → restart": {
    run: run(inAttempt(1), { runPolicy: { maxRestarts: 5 } }),
    jobs: [attemptJob(1, { condition: { type: "Failed" } })],
    pods: [attemptPod(1, 0, { phase: "Failed", exitCode: 5 }), attemptPod(1, 1, { phase: "Failed", exitCode: 137 })],
    want: (r) => {
      assert.equal(r.status.attempt, 2);
      assert.equal(r.status.phase, "Restarting");
      assert.equal(cond(r, "Restarting")?.reason, PretrainRunReason.RankFailed);
    },
  },
  "another run's checkpoints → Failed with reason CheckpointOwnedByAnotherRun": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { condition: { type: "Failed" } })],
    pods: [
      attemptPod(1, 0, {
        phase: "Failed",
        exitCode: 2,
        message:
          '{"exitCode":2,"reason":"CheckpointOwnedByAnotherRun","message":"the checkpoint folder belongs to run a (uid 1), not to run (uid run-uid)"}',
      }),
    ],
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.CheckpointOwnedByAnotherRun);
      assert.match(cond(r, "Failed")!.message, /belongs to run a/);
    },
  },
  "ImagePullBackOff → Running=False with the reason and a Warning event": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 0 })],
    pods: [
      {
        ...attemptPod(1, 0, { phase: "Pending" }),
        status: {
          phase: "Pending",
          containerStatuses: [
            {
              name: "trainer",
              state: { waiting: { reason: "ImagePullBackOff", message: 'Back-off pulling image "nope:1"' } },
            },
          ],
        },
      },
    ],
    want: (r) => {
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.ImagePullBackOff);
      assert.match(cond(r, "Running")!.message, /nope:1/);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PretrainRunReason.ImagePullBackOff));
    },
  },
  "Unschedulable → Running=False/Unschedulable": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 0 })],
    pods: [
      {
        ...attemptPod(1, 0, { phase: "Pending" }),
        status: {
          phase: "Pending",
          conditions: [
            {
              type: "PodScheduled",
              status: "False",
              reason: "Unschedulable",
              message: "0/4 nodes: insufficient nvidia.com/gpu",
            },
          ],
        },
      },
    ],
    want: (r) => {
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.Unschedulable);
      assert.match(cond(r, "Running")!.message, /insufficient nvidia.com\/gpu/);
    },
  },
  "the Job controller cannot create the attempt's pods (FailedCreate) → Running=False/PodCreationFailed, Warning": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 0 })],
    podCreationFailures: [
      {
        job: "run-a1",
        message: 'pods "run-a1-0-x" is forbidden: exceeded quota: no-pods',
        time: "2026-03-01T11:59:50Z",
      },
    ],
    want: (r) => {
      assert.equal(cond(r, "Running")?.status, "False");
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.PodCreationFailed);
      assert.match(cond(r, "Running")!.message, /Job run-a1 cannot create pods: .*exceeded quota: no-pods/);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PretrainRunReason.PodCreationFailed));
      assert.equal(r.status.phase, "Pending");
    },
  },
  "a FailedCreate of another Job (an earlier attempt, another uid) is not this attempt's": {
    run: run(inAttempt(2)),
    jobs: [{ ...attemptJob(2, { ready: 0 }), metadata: { ...attemptJob(2).metadata, uid: "u2" } }],
    podCreationFailures: [
      { job: "run-a1", message: "exceeded quota", time: "2026-03-01T11:59:50Z" },
      { job: "run-a2", jobUid: "u-old", message: "exceeded quota", time: "2026-03-01T11:59:50Z" },
    ],
    want: (r) => {
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.PodsNotReady);
    },
  },
  "pods created after the last FailedCreate clear PodCreationFailed (the quota was lifted)": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 0 })],
    pods: [
      {
        ...attemptPod(1, 0, { phase: "Pending" }),
        metadata: { ...attemptPod(1, 0).metadata, creationTimestamp: "2026-03-01T11:59:55Z" },
      },
      {
        ...attemptPod(1, 1, { phase: "Pending" }),
        metadata: { ...attemptPod(1, 1).metadata, creationTimestamp: "2026-03-01T11:59:55Z" },
      },
    ],
    podCreationFailures: [{ job: "run-a1", message: "exceeded quota", time: "2026-03-01T11:59:50Z" }],
    want: (r) => {
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.PodsNotReady);
    },
  },
  "some pods created, the rest refused after them → still PodCreationFailed": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 0 })],
    pods: [
      {
        ...attemptPod(1, 0, { phase: "Pending" }),
        metadata: { ...attemptPod(1, 0).metadata, creationTimestamp: "2026-03-01T11:59:40Z" },
      },
    ],
    podCreationFailures: [{ job: "run-a1", message: "exceeded quota: pods=1", time: "2026-03-01T11:59:50Z" }],
    want: (r) => {
      assert.equal(cond(r, "Running")?.reason, PretrainRunReason.PodCreationFailed);
      assert.match(cond(r, "Running")!.message, /pods=1/);
    },
  },
  "a suspended (queued) attempt is not PodCreationFailed": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { suspend: true })],
    podCreationFailures: [{ job: "run-a1", message: "exceeded quota", time: "2026-03-01T11:59:50Z" }],
    want: (r) => {
      assert.notEqual(cond(r, "Running")?.reason, PretrainRunReason.PodCreationFailed);
      assert.equal(cond(r, "Queued")?.reason, PretrainRunReason.WaitingForAdmission);
    },
  },
  "a gang not ready within the startup deadline → the attempt is restarted (StartupDeadlineExceeded)": {
    run: run(inAttempt(1), { runPolicy: { maxRestarts: 2, startupDeadlineSeconds: 60 } }),
    jobs: [{ ...attemptJob(1, { ready: 1 }), status: { ready: 1, active: 2, startTime: "2026-03-01T11:58:00Z" } }],
    want: (r) => {
      assert.equal(r.status.attempt, 2);
      assert.equal(r.status.lastFailure?.reason, PretrainRunReason.StartupDeadlineExceeded);
      assert.deepEqual(
        r.delete.map((d) => d.name),
        ["run-a1"],
      );
    },
  },
  "the startup deadline clock waits while the Job is suspended by its queue": {
    run: run(inAttempt(1), { runPolicy: { startupDeadlineSeconds: 60 } }),
    jobs: [{ ...attemptJob(1, { suspend: true }), status: { startTime: "2026-03-01T11:00:00Z" } }],
    want: (r) => {
      assert.equal(r.status.attempt, 1);
      assert.equal(cond(r, "Queued")?.reason, PretrainRunReason.WaitingForAdmission);
    },
  },
  "a child the API server refused → Created=False/ChildRefused": {
    run: run(inAttempt(1)),
    jobs: [attemptJob(1, { ready: 2 })],
    refused: { kind: "NetworkPolicy", name: "run", message: "forbidden: quota exceeded" },
    want: (r) => {
      assert.equal(cond(r, "Created")?.status, "False");
      assert.equal(cond(r, "Created")?.reason, PretrainRunReason.ChildRefused);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PretrainRunReason.ChildRefused));
    },
  },
  "the attempt Job itself was refused → Created stays False/ChildRefused while the Job is retried": {
    run: run({ ...inAttempt(1, { phase: "Pending" }), activeJob: "run-a1" }),
    refused: { kind: "Job", name: "run-a1", message: 'jobs.batch "run-a1" is forbidden: exceeded quota: no-jobs' },
    want: (r) => {
      assert.equal(applied(r, "Job")[0]?.metadata.name, "run-a1", "the Job is applied again");
      assert.equal(cond(r, "Created")?.status, "False");
      assert.match(cond(r, "Created")!.message, /exceeded quota/);
    },
  },
  "NODE_OPTIONS in spec.env → ValidationFailed": {
    run: run(undefined, { env: [{ name: "NODE_OPTIONS", value: "--require /x.js" }] }),
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.ValidationFailed);
      assert.match(cond(r, "Failed")!.message, /inject code/);
    },
  },
  "nprocPerNode above the nvidia.com/gpu limit → ValidationFailed": {
    run: run(undefined, { nprocPerNode: 8, resourcesPerNode: { limits: { "nvidia.com/gpu": 4 } } }),
    want: (r) => {
      assert.match(cond(r, "Failed")?.message ?? "", /exceeds the nvidia.com\/gpu limit/);
    },
  },
  "configuration not in the Plan → ValidationFailed": {
    run: run(undefined, { training: { configuration: "3d" } }),
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PretrainRunReason.ValidationFailed);
    },
  },
  "volcano gang → PodGroup (minMember = numNodes) and the group annotation": {
    run: run(undefined, { scheduling: { queueName: "gpu", gang: { scheduler: "volcano", queue: "q" } } }),
    want: (r) => {
      const [pg] = applied(r, "PodGroup");
      assert.equal(pg!.apiVersion, "scheduling.volcano.sh/v1beta1");
      assert.equal((pg!.spec as { minMember: number }).minMember, 2);
      const job = applied(r, "Job")[0]!;
      const tmpl = (
        job.spec as { template: { metadata: { annotations: Record<string, string> }; spec: { schedulerName: string } } }
      ).template;
      assert.equal(tmpl.metadata.annotations["scheduling.k8s.io/group-name"], "run");
      assert.equal(tmpl.spec.schedulerName, "volcano");
      assert.equal(job.metadata.labels?.["kueue.x-k8s.io/queue-name"], "gpu");
    },
  },
  "rank 0 metrics → status.progress": {
    run: run(inAttempt(1), { training: { epochs: 20 } }),
    jobs: [attemptJob(1, { ready: 2 })],
    metrics: { attempt: 1, step: 500, epoch: 5, loss: 0.123456789, time: T0 },
    want: (r) => {
      assert.deepEqual(r.status.progress, {
        step: 500,
        epoch: 5,
        loss: "0.12346",
        percent: 25,
        lastUpdatedTime: "2026-03-01T12:00:00Z",
      });
    },
  },
  "metrics of an older attempt are ignored": {
    run: run(inAttempt(2)),
    jobs: [attemptJob(2, { ready: 2 })],
    metrics: { attempt: 1, step: 500, time: T0 },
    want: (r) => {
      assert.equal(r.status.progress, undefined);
    },
  },
};

for (const [name, c] of Object.entries(cases)) {
  test(`PretrainRun: ${name}`, () => {
    const r = reconcilePretrainRun({
      run: c.run,
      plan: "plan" in c ? c.plan : readyPlanResource(),
      jobs: c.jobs ?? [],
      pods: c.pods ?? [],
      now: c.now ?? T0,
      metrics: c.metrics,
      refused: c.refused,
      podCreationFailures: c.podCreationFailures,
      workload: c.workload,
    });
    c.want(r);
  });
}

test("PretrainRun: reconciling its own output again is a fixed point (same status, no events, same children)", () => {
  const observed = {
    run: run(inAttempt(1)),
    plan: readyPlanResource(),
    jobs: [attemptJob(1, { ready: 2 })],
    pods: [],
    now: T0,
  };
  const r1 = reconcilePretrainRun(observed);
  const r2 = reconcilePretrainRun({ ...observed, run: { ...observed.run, status: r1.status }, now: at(10) });
  assert.deepEqual(r2.status, r1.status, "lastTransitionTime does not move without a flip");
  assert.deepEqual(r2.events, []);
  assert.deepEqual(r2.apply, r1.apply);
});

test("PretrainRun: child names and hashes are deterministic", () => {
  const a = reconcilePretrainRun({ run: run(), plan: readyPlanResource(), jobs: [], pods: [], now: T0 });
  const b = reconcilePretrainRun({ run: run(), plan: readyPlanResource(), jobs: [], pods: [], now: at(5) });
  assert.deepEqual(
    a.apply.map((o) => [o.metadata.name, o.metadata.annotations?.["ssl3d.io/spec-hash"]]),
    b.apply.map((o) => [o.metadata.name, o.metadata.annotations?.["ssl3d.io/spec-hash"]]),
  );
});

test("PretrainRun: the scrape target is rank 0 of the current attempt", () => {
  const o = {
    run: run(inAttempt(2)),
    plan: readyPlanResource(),
    jobs: [],
    pods: [
      attemptPod(1, 0, { podIP: "10.0.0.1" }),
      attemptPod(2, 1, { podIP: "10.0.0.3" }),
      attemptPod(2, 0, { podIP: "10.0.0.2" }),
    ],
    now: T0,
  };
  assert.deepEqual(scrapeTarget(o), { attempt: 2, url: "http://10.0.0.2:9090/metrics", intervalMs: 30_000 });
  assert.equal(scrapeTarget({ ...o, pods: [attemptPod(2, 0, { phase: "Pending", podIP: "10.0.0.2" })] }), undefined);
});
