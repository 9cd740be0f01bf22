/**
 * Integration-test harness for the operator: a real API server (test/helpers/kube.ts) with the generated CRDs
 * installed, an in-process controller manager watching one namespace, and helpers that play the Job controller
 * (the tests write Job and Pod status, since no kube-controller-manager Job controller runs).
 *
 * The operator runs as the chart's ServiceAccount with exactly the chart's RBAC: `startEnv` renders the chart's
 * ServiceAccount, (Cluster)Roles and bindings (`helm template`), applies them, and gives the operator a client
 * authenticated by a token of that ServiceAccount (TokenRequest), on an API server with --authorization-mode=RBAC.
 * The tests themselves act as cluster admin (`env.client`).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { generatedFiles } from "../../scripts/gen-crds.js";
import { API_VERSION, FIELD_MANAGER } from "../../api/v1alpha1/group.js";
import type { CustomResource, KubeObject } from "../../operator/src/controllers/types.js";
import { KubeClient } from "../../operator/src/kube/client.js";
import { applyCrdYaml } from "../../operator/src/kube/crds.js";
import { Manager, type ManagerOptions } from "../../operator/src/kube/manager.js";
import { OperatorMetrics } from "../../operator/src/metrics.js";
import { helmTemplate, NAMESPACE as RELEASE_NAMESPACE, parseManifests, RELEASE } from "./chart.js";
import { startTestCluster, type TestCluster } from "./kube.js";

export interface Env {
  cluster: TestCluster;
  /** Cluster admin: what the tests use to play users and the Job controller. */
  client: KubeClient;
  /** The chart's ServiceAccount (token auth, the chart's RBAC only): what the operator uses. */
  operatorClient: KubeClient;
  /** A kubeconfig file for the chart's ServiceAccount (for operator processes). */
  operatorKubeconfigPath: string;
  /** Namespace of the chart's release (its ServiceAccount and leader-election Lease). */
  operatorNamespace: string;
}

/** Values the tests need from the chart (the optional PodGroup rules; everything else is the default chart). */
export const CHART_RBAC_VALUES = ["--set", "rbac.volcano=true", "--set", "rbac.coscheduling=true"];

export async function startEnv(opts: { garbageCollector?: boolean; jobController?: boolean } = {}): Promise<Env> {
  const cluster = await startTestCluster(opts);
  const client = KubeClient.fromFile(cluster.kubeconfigPath);
  let operatorKubeconfigPath: string;
  try {
    await installCrds(client);
    await cluster.startGarbageCollector();
    operatorKubeconfigPath = await installChartRbac(client, cluster);
  } catch (err) {
    // A half-started environment must not keep etcd and the API server (and the test process) alive.
    client.close();
    await cluster.stop();
    throw err;
  }
  return {
    cluster,
    client,
    operatorClient: KubeClient.fromFile(operatorKubeconfigPath),
    operatorKubeconfigPath,
    operatorNamespace: RELEASE_NAMESPACE,
  };
}

const RBAC_KINDS = new Set(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]);

/**
 * Applies the chart's ServiceAccount and RBAC objects (rendered by `helm template`, nothing added) and returns a
 * kubeconfig that authenticates as that ServiceAccount with a bound token.
 */
export async function installChartRbac(client: KubeClient, cluster: TestCluster): Promise<string> {
  const objects = parseManifests(helmTemplate(CHART_RBAC_VALUES)).filter((o) => RBAC_KINDS.has(o.kind));
  const sa = objects.find((o) => o.kind === "ServiceAccount");
  if (sa === undefined) throw new Error("the chart renders no ServiceAccount");
  if ((await client.get("v1", "Namespace", undefined, RELEASE_NAMESPACE)) === undefined) {
    await client.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: RELEASE_NAMESPACE } });
  }
  for (const o of objects) await client.apply(o, "ssl3d-tests");
  const tr = await client.request<{ status: { token: string } }>(
    "POST",
    `/api/v1/namespaces/${RELEASE_NAMESPACE}/serviceaccounts/${sa.metadata.name}/token`,
    { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 24 * 3600 } },
  );
  const admin = new KubeConfig();
  admin.loadFromFile(cluster.kubeconfigPath);
  const c = admin.getCurrentCluster();
  if (c === null) throw new Error(`${cluster.kubeconfigPath}: no current cluster`);
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [c],
    users: [{ name: `${RELEASE}-operator`, token: tr.status.token }],
    contexts: [{ name: "operator", cluster: c.name, user: `${RELEASE}-operator`, namespace: RELEASE_NAMESPACE }],
    currentContext: "operator",
  });
  const path = join(cluster.dir, "operator.kubeconfig");
  writeFileSync(path, kc.exportConfig());
  return path;
}

export async function installCrds(client: KubeClient): Promise<void> {
  const yaml = [...generatedFiles()]
    .filter(([p]) => p.startsWith("crds/"))
    .map(([, t]) => t)
    .join("\n---\n");
  await applyCrdYaml(client, yaml, "ssl3d-tests");
}

const RUN_ID = Math.random().toString(36).slice(2, 7);

/** Creates a namespace and returns its name; on an external cluster (SSL3D_TEST_KUBECONFIG) a unique suffix is added. */
export async function createNamespace(client: KubeClient, base: string): Promise<string> {
  const name = process.env.SSL3D_TEST_KUBECONFIG ? `${base}-${RUN_ID}` : base;
  await client.create({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
  return name;
}

export function startManager(
  env: Env,
  namespace: string | undefined,
  extra: Partial<ManagerOptions> = {},
): { manager: Manager; metrics: OperatorMetrics } {
  const metrics = new OperatorMetrics(false);
  const log = pino({ level: process.env.SSL3D_TEST_LOG_LEVEL ?? "silent" });
  const manager = new Manager({
    client: env.operatorClient,
    log,
    metrics,
    namespace,
    identity: "test",
    concurrency: 4,
    ...extra,
  });
  void manager.start();
  return { manager, metrics };
}

/** Polls until `fn` returns a value other than undefined/false; fails with the last value's description. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
  describe?: () => Promise<string>,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > until) {
      const extra = describe ? await describe().catch(() => "") : "";
      throw new Error(
        `timed out waiting for ${what}${lastErr !== undefined ? ` (last error: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)})` : ""}${extra ? `\n${extra}` : ""}`,
      );
    }
    await sleep(100);
  }
}

export function cr(
  kind: "Collection" | "Plan" | "PretrainRun",
  namespace: string,
  name: string,
  spec: unknown,
): KubeObject {
  return { apiVersion: API_VERSION, kind, metadata: { name, namespace }, spec };
}

export async function getCr(
  client: KubeClient,
  kind: "Collection" | "Plan" | "PretrainRun",
  ns: string,
  name: string,
): Promise<CustomResource & { status?: Record<string, unknown> }> {
  const o = await client.get<CustomResource & { status?: Record<string, unknown> }>(API_VERSION, kind, ns, name);
  if (o === undefined) throw new Error(`${kind} ${ns}/${name} not found`);
  return o;
}

export function condition(
  o: { status?: unknown },
  type: string,
): { status: string; reason: string; message: string; observedGeneration?: number } | undefined {
  const conds = (
    o.status as
      | {
          conditions?: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[];
        }
      | undefined
  )?.conditions;
  return conds?.find((c) => c.type === type);
}

export interface JobObj extends KubeObject {
  spec: {
    completions?: number;
    suspend?: boolean;
    template: {
      metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
      spec: { containers: { name: string; env?: { name: string; value?: string }[] }[] };
    };
  };
  status?: Record<string, unknown>;
}

const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");

/** Plays the Job controller: creates the Job's pods (labels and annotations from its template, ownerReference). */
export async function createPods(
  client: KubeClient,
  job: JobObj,
  opts: { podIP?: string } = {},
): Promise<KubeObject[]> {
  const n = job.spec.completions ?? 1;
  const pods: KubeObject[] = [];
  for (let i = 0; i < n; i++) {
    const labels = {
      ...(job.spec.template.metadata?.labels ?? {}),
      "job-name": job.metadata.name,
      "batch.kubernetes.io/job-name": job.metadata.name,
      "batch.kubernetes.io/job-completion-index": String(i),
    };
    const pod = await client.create({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `${job.metadata.name}-${i}`,
        namespace: job.metadata.namespace,
        labels,
        annotations: {
          ...(job.spec.template.metadata?.annotations ?? {}),
          "batch.kubernetes.io/job-completion-index": String(i),
        },
        ownerReferences: [
          {
            apiVersion: "batch/v1",
            kind: "Job",
            name: job.metadata.name,
            uid: job.metadata.uid ?? "",
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        restartPolicy: "Never",
        containers: job.spec.template.spec.containers.map((c) => ({
          name: c.name,
          image: "example.invalid/runtime:test",
        })),
      },
    });
    pods.push(pod);
    await client.patch(
      "v1",
      "Pod",
      job.metadata.namespace,
      `${job.metadata.name}-${i}`,
      {
        status: {
          phase: "Running",
          podIP: i === 0 ? (opts.podIP ?? "10.0.0.10") : `10.0.0.${11 + i}`,
          conditions: [{ type: "Ready", status: "True" }],
          containerStatuses: [
            {
              name: job.spec.template.spec.containers[0]!.name,
              ready: true,
              image: "x",
              imageID: "",
              restartCount: 0,
              state: { running: { startedAt: now() } },
            },
          ],
        },
      },
      { subresource: "status" },
    );
  }
  return pods;
}

/** Sets the status of one pod to terminated with a message (and optionally a DisruptionTarget condition). */
export async function terminatePod(
  client: KubeClient,
  ns: string,
  name: string,
  container: string,
  exitCode: number,
  message: string,
  disruption = false,
): Promise<void> {
  const conditions = [{ type: "Ready", status: "False" }];
  if (disruption)
    conditions.push({
      type: "DisruptionTarget",
      status: "True",
      reason: "PreemptionByScheduler",
      message: "Preempted",
    } as never);
  await client.patch(
    "v1",
    "Pod",
    ns,
    name,
    {
      status: {
        phase: exitCode === 0 ? "Succeeded" : "Failed",
        conditions,
        containerStatuses: [
          {
            name: container,
            ready: false,
            image: "x",
            imageID: "",
            restartCount: 0,
            state: {
              terminated: {
                exitCode,
                reason: exitCode === 0 ? "Completed" : "Error",
                message,
                startedAt: now(),
                finishedAt: now(),
              },
            },
          },
        ],
      },
    },
    { subresource: "status" },
  );
}

/** Writes a running Job status (all pods ready). */
export async function jobRunning(client: KubeClient, job: JobObj, ready = job.spec.completions ?? 1): Promise<void> {
  await client.patch(
    "batch/v1",
    "Job",
    job.metadata.namespace,
    job.metadata.name,
    { status: { startTime: now(), active: job.spec.completions ?? 1, ready } },
    { subresource: "status" },
  );
}

/** Writes a finished Job status the way the Job controller does (terminal condition plus its prerequisites). */
export async function jobFinished(
  client: KubeClient,
  job: JobObj,
  outcome: "Complete" | "Failed",
  opts: { reason?: string; message?: string } = {},
): Promise<void> {
  const n = job.spec.completions ?? 1;
  const t = now();
  const conditions =
    outcome === "Complete"
      ? [
          {
            type: "SuccessCriteriaMet",
            status: "True",
            reason: "CompletionsReached",
            message: "Reached expected number of succeeded pods",
            lastProbeTime: t,
            lastTransitionTime: t,
          },
          {
            type: "Complete",
            status: "True",
            reason: "CompletionsReached",
            message: "Reached expected number of succeeded pods",
            lastProbeTime: t,
            lastTransitionTime: t,
          },
        ]
      : [
          {
            type: "FailureTarget",
            status: "True",
            reason: opts.reason ?? "BackoffLimitExceeded",
            message: opts.message ?? "Job has reached the specified backoff limit",
            lastProbeTime: t,
            lastTransitionTime: t,
          },
          {
            type: "Failed",
            status: "True",
            reason: opts.reason ?? "BackoffLimitExceeded",
            message: opts.message ?? "Job has reached the specified backoff limit",
            lastProbeTime: t,
            lastTransitionTime: t,
          },
        ];
  const fresh = await client.get<JobObj>("batch/v1", "Job", job.metadata.namespace, job.metadata.name);
  const status: Record<string, unknown> = {
    startTime: fresh?.status?.startTime ?? t,
    active: 0,
    ready: 0,
    succeeded: outcome === "Complete" ? n : 0,
    failed: outcome === "Failed" ? 1 : 0,
    conditions,
  };
  if (outcome === "Complete") {
    status.completionTime = t;
    if (job.spec.completions !== undefined && (job.spec as { completionMode?: string }).completionMode === "Indexed")
      status.completedIndexes = n === 1 ? "0" : `0-${n - 1}`;
  }
  await client.patch(
    "batch/v1",
    "Job",
    job.metadata.namespace,
    job.metadata.name,
    { status },
    { subresource: "status" },
  );
}

export async function getJob(client: KubeClient, ns: string, name: string): Promise<JobObj | undefined> {
  return client.get<JobObj>("batch/v1", "Job", ns, name);
}

export function envOf(job: JobObj): Record<string, string | undefined> {
  return Object.fromEntries((job.spec.template.spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
}

export async function eventsFor(
  client: KubeClient,
  ns: string,
  name: string,
): Promise<{ reason: string; type: string; note: string }[]> {
  const list = await client.list<{ reason: string; type: string; note: string; regarding?: { name?: string } }>(
    "events.k8s.io/v1",
    "Event",
    ns,
  );
  return list.items.filter((e) => e.regarding?.name === name);
}

export { FIELD_MANAGER };

/**
 * A Ready Plan `plan` (with its Collection `col`) in `ns`: the preprocessing Job's pod is played to success with a
 * valid summary, as the kubelet would report it.
 */
export async function readyPlan(client: KubeClient, ns: string, image: string): Promise<void> {
  await client.create(
    cr("Collection", ns, "col", { source: { pvc: { claimName: "raw" } }, dataset: "Dataset001_Demo" }),
  );
  await client.create(
    cr("Plan", ns, "plan", {
      collectionRef: { name: "col" },
      configurations: ["onemmiso"],
      preprocess: { image },
      output: { pvc: { claimName: "prep" } },
    }),
  );
  const j = await eventually("prep Job", () => getJob(client, ns, "plan-prep"));
  const pods = await createPods(client, j);
  await terminatePod(
    client,
    ns,
    pods[0]!.metadata.name,
    "preprocess",
    0,
    JSON.stringify({
      images: 1,
      valid: 1,
      failed: 0,
      configurations: ["onemmiso"],
      plansFile: "p",
      preprocessedDir: "d",
    }),
  );
  await jobFinished(client, j, "Complete");
  await eventually(
    "Plan Ready",
    async () => (await getCr(client, "Plan", ns, "plan")).status?.phase === "Ready",
    30_000,
  );
}
