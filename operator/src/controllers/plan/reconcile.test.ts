import assert from "node:assert/strict";
import { test } from "node:test";
import type { PlanStatus } from "../../../../api/v1alpha1/plan.js";
import { aJob, aPod, aResource, T0 } from "../testing.js";
import type { CustomResource, JobView, PodCreationFailure, PodView, ReconcileResult } from "../types.js";
import { reconcilePlan } from "./reconcile.js";
import { PlanReason } from "../../../../api/v1alpha1/reasons.js";

const spec = {
  collectionRef: { name: "col" },
  configurations: ["onemmiso"],
  numProcesses: 4,
  preprocess: { image: "img", queueName: "cpu", ttlSecondsAfterFinished: 600 },
  output: { pvc: { claimName: "prep", subPath: "plans/p" } },
};
const readyCond = {
  type: "Ready",
  status: "True" as const,
  reason: "Indexed",
  message: "",
  lastTransitionTime: "2026-03-01T11:00:00Z",
};
const collection = (hash = "sha256:aaa", phase = "Ready"): CustomResource =>
  aResource(
    "Collection",
    "col",
    { source: { pvc: { claimName: "raw", subPath: "r" } }, dataset: "Dataset001_Demo" },
    { phase, contentHash: hash, conditions: phase === "Ready" ? [readyCond] : [] },
  );
const started: Partial<PlanStatus> = {
  phase: "Running",
  jobName: "p-prep",
  dataset: "Dataset001_Demo",
  collectionHash: "sha256:aaa",
  startTime: "2026-03-01T11:00:00Z",
};
const job = (o: Parameters<typeof aJob>[1] = {}): JobView => aJob("p-prep", { labels: { "ssl3d.io/plan": "p" }, ...o });
const pod = (exitCode: number, message: string): PodView =>
  aPod("p-prep", 0, { phase: exitCode === 0 ? "Succeeded" : "Failed", exitCode, message });
const summary = JSON.stringify({
  images: 5,
  valid: 4,
  failed: 1,
  configurations: ["onemmiso"],
  plansFile: "/d/plans.json",
  preprocessedDir: "/d/x",
});

interface Case {
  status?: Partial<PlanStatus>;
  collection?: CustomResource | undefined;
  jobs?: JobView[];
  pods?: PodView[];
  podCreationFailures?: PodCreationFailure[];
  want: (r: ReconcileResult<PlanStatus>) => void;
}
const cond = (r: ReconcileResult<PlanStatus>, t: string) => r.status.conditions?.find((c) => c.type === t);

const cases: Record<string, Case> = {
  "Collection missing → Pending/WaitingForCollection": {
    collection: undefined,
    want: (r) => {
      assert.equal(r.status.phase, "Pending");
      assert.equal(cond(r, "Ready")?.reason, PlanReason.WaitingForCollection);
      assert.equal(r.apply.length, 0);
    },
  },
  "Collection not Ready → Pending": {
    collection: collection("sha256:aaa", "Indexing"),
    want: (r) => {
      assert.equal(r.status.phase, "Pending");
    },
  },
  "Collection Ready → one preprocessing Job with the CLI arguments and volumes": {
    want: (r) => {
      assert.equal(r.status.phase, "Running");
      assert.equal(r.status.collectionHash, "sha256:aaa");
      assert.equal(r.status.dataset, "Dataset001_Demo");
      const [j] = r.apply;
      assert.equal(j!.metadata.name, "p-prep");
      assert.equal(j!.metadata.labels?.["kueue.x-k8s.io/queue-name"], "cpu");
      const s = j!.spec as {
        ttlSecondsAfterFinished: number;
        template: {
          spec: {
            containers: {
              args: string[];
              env: { name: string; value: string }[];
              volumeMounts: { subPath?: string }[];
            }[];
          };
        };
      };
      assert.equal(s.ttlSecondsAfterFinished, 600);
      const c = s.template.spec.containers[0]!;
      assert.deepEqual(c.args, ["plan-and-preprocess", "-d", "Dataset001_Demo", "-c", "onemmiso", "-np", "4"]);
      assert.deepEqual(
        c.volumeMounts.map((m) => m.subPath),
        ["plans/p", "r", undefined],
      );
      // restricted Pod Security: read-only root with a writable /tmp, no service-account token
      const pod = s.template.spec as unknown as {
        automountServiceAccountToken: boolean;
        securityContext: { runAsNonRoot: boolean; runAsUser: number };
      };
      assert.equal(pod.automountServiceAccountToken, false);
      assert.deepEqual([pod.securityContext.runAsNonRoot, pod.securityContext.runAsUser], [true, 65532]);
      assert.ok(c.env.some((e) => e.name === "nnssl_preprocessed"));
    },
  },
  "the Job controller cannot create the preprocessing pod (FailedCreate) → Ready=False/PodCreationFailed, Warning": {
    status: started,
    jobs: [job()],
    podCreationFailures: [
      {
        job: "p-prep",
        message: 'pods "p-prep-x" is forbidden: violates PodSecurity "restricted:latest"',
        time: "2026-03-01T11:59:00Z",
      },
    ],
    want: (r) => {
      assert.equal(r.status.phase, "Running");
      assert.equal(cond(r, "Ready")?.reason, PlanReason.PodCreationFailed);
      assert.match(cond(r, "Ready")!.message, /Job p-prep cannot create its pod: .*violates PodSecurity/);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PlanReason.PodCreationFailed));
    },
  },
  "the preprocessing pod exists after the FailedCreate → Preprocessing again": {
    status: started,
    jobs: [job()],
    pods: [
      {
        ...aPod("p-prep", 0, { phase: "Pending" }),
        metadata: { name: "p-prep-0", creationTimestamp: "2026-03-01T11:59:30Z", labels: { "job-name": "p-prep" } },
      },
    ],
    podCreationFailures: [{ job: "p-prep", message: "exceeded quota", time: "2026-03-01T11:59:00Z" }],
    want: (r) => {
      assert.equal(cond(r, "Ready")?.reason, PlanReason.Preprocessing);
    },
  },
  "Job failed → Failed with the termination message": {
    status: started,
    jobs: [job({ condition: { type: "Failed", reason: "BackoffLimitExceeded" } })],
    pods: [pod(3, "DataError: a.nii.gz: bad magic")],
    want: (r) => {
      assert.equal(r.status.phase, "Failed");
      assert.equal(cond(r, "Failed")?.message, "DataError: a.nii.gz: bad magic");
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PlanReason.PreprocessingFailed));
    },
  },
  "Job complete → Ready with the summary from the termination message": {
    status: started,
    jobs: [job({ condition: { type: "Complete" } })],
    pods: [pod(0, `some log line\n${summary}`)],
    want: (r) => {
      assert.equal(r.status.phase, "Ready");
      assert.deepEqual(r.status.outputs, JSON.parse(summary));
      assert.equal(cond(r, "Stale")?.status, "False");
    },
  },
  "Job complete after retries → Ready with the succeeded pod's summary, not a failed try's message": {
    status: started,
    jobs: [job({ condition: { type: "Complete" } })],
    // a killed first try (137, no message) and a retry that met the dead pod's folder lock (exit 2), then success
    pods: [
      pod(137, ""),
      pod(2, '{"exitCode":2,"reason":"EnvironmentError","message":"folder is in use by ssl3d plan-and-preprocess"}'),
      pod(0, summary),
    ],
    want: (r) => {
      assert.equal(r.status.phase, "Ready");
      assert.deepEqual(r.status.outputs, JSON.parse(summary));
    },
  },
  "Job complete, termination message not visible yet → wait": {
    status: started,
    jobs: [job({ condition: { type: "Complete" } })],
    want: (r) => {
      assert.equal(r.status.phase, "Running");
      assert.equal(r.requeueAfterMs, 2000);
    },
  },
  "Job complete with a malformed summary → Failed/InvalidSummary": {
    status: started,
    jobs: [job({ condition: { type: "Complete" } })],
    pods: [pod(0, '{"images": "many"}')],
    want: (r) => {
      assert.equal(cond(r, "Failed")?.reason, PlanReason.InvalidSummary);
      assert.match(cond(r, "Failed")!.message, /images/);
    },
  },
  "Ready and the Collection's hash changed → Stale (not rebuilt)": {
    status: { ...started, phase: "Ready", conditions: [{ ...readyCond, reason: PlanReason.Preprocessed }] },
    collection: collection("sha256:bbb"),
    want: (r) => {
      assert.equal(r.status.phase, "Ready");
      assert.equal(cond(r, "Stale")?.status, "True");
      assert.equal(cond(r, "Stale")?.reason, PlanReason.CollectionChanged);
      assert.equal(r.apply.length, 0);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === PlanReason.CollectionChanged));
    },
  },
};

for (const [name, c] of Object.entries(cases)) {
  test(`Plan: ${name}`, () => {
    const plan = aResource("Plan", "p", spec, c.status);
    c.want(
      reconcilePlan({
        plan,
        collection: "collection" in c ? c.collection : collection(),
        jobs: c.jobs ?? [],
        pods: c.pods ?? [],
        podCreationFailures: c.podCreationFailures,
        now: T0,
      }),
    );
  });
}
