/**
 * The cluster tier's end-to-end scenarios (run by test/cluster/cluster.test.ts after the operator has been installed
 * by the chart): one Collection and Plan shared by every scenario, in the namespace `ssl3d-runs`, which enforces the
 * restricted Pod Security Standard. The scenarios run concurrently:
 *  - the 2x2 PretrainRun `demo` (printer columns, a force-killed training pod, a deleted attempt Job, a stranger on
 *    the rendezvous port, Prometheus scraping it through the chart's scrape configuration) to Succeeded;
 *  - a second Plan whose preprocessing pod is killed mid-run: its retry produces the same files as the first Plan;
 *  - a run with an image that does not exist and one asking for more CPU than the node has: their conditions say why;
 *  - `helm uninstall` / re-install while `demo` trains its last attempt, with a finished 1x1 run beside it.
 * Faults follow what the cluster reports (rank 0's log lines, followed live), not timing; every wait prints a
 * timestamped line (docs/decisions/0085-cluster-tier-ordering-and-speed.md).
 * The exit-code-3 case (a rank failing on its input data fails the run without restarts) is shown in the API-server
 * tier (test/integration/operator-failures.test.ts), where the kubelet's status write is simulated; here it would
 * cost a run for no path that tier does not cover.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { parse } from "yaml";
import { kubectlAsync, kubectlOkAsync, LogStream, type RealCluster } from "../helpers/cluster.js";
import { CHART } from "../helpers/chart.js";
import { OPERATOR_IMAGE, RUNTIME_CPU_IMAGE } from "../helpers/images.js";
import { renderedRuleGroups } from "../helpers/monitoring.js";
import { launchPrometheus, type PrometheusProcess } from "../helpers/prometheus.js";
import { runAsync, toolBin } from "../helpers/tools.js";

export const NS = "ssl3d-runs";
const RELEASE = "ssl3d";
const SYSTEM_NS = "ssl3d-system";
const IMAGE = RUNTIME_CPU_IMAGE;
/** Iterations per epoch of the training scenarios = the checkpoint interval in steps (checkpoint_latest per epoch). */
const ITERS = 2;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const T0 = Date.now();
/**
 * One timestamped line on the test's output (wall clock and seconds since the tier's file was loaded): every wait and
 * every fault the scenarios make says when it started and how long it took, so a slow or stuck step shows in a CI log.
 */
export function note(msg: string): void {
  const now = new Date();
  console.log(`[e2e ${now.toISOString().slice(11, 23)} +${((now.getTime() - T0) / 1000).toFixed(1)} s] ${msg}`);
}

/**
 * Polls `probe` until it returns a value other than undefined; throws with `explain()` after `timeoutMs`. Notes the
 * start and the end of the wait. Probes are asynchronous (kubectlAsync): the scenarios run concurrently in one event
 * loop, and a synchronous kubectl in one of them would hold up the polls of all the others.
 */
export async function waitFor<T>(
  label: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  opts: { everyMs?: number; explain?: () => Promise<string> | string } = {},
): Promise<T> {
  const t0 = Date.now();
  const end = t0 + timeoutMs;
  let polls = 0;
  note(`wait: ${label}`);
  for (;;) {
    const v = await probe();
    polls += 1;
    if (v !== undefined) {
      note(`done: ${label} (${((Date.now() - t0) / 1000).toFixed(1)} s, ${polls} polls)`);
      return v;
    }
    if (Date.now() > end) {
      note(`timed out: ${label}`);
      throw new Error(
        `timed out after ${timeoutMs} ms: ${label}\n${opts.explain !== undefined ? await opts.explain() : ""}`,
      );
    }
    await sleep(opts.everyMs ?? 2000);
  }
}

/**
 * Waits for a new namespace's `default` ServiceAccount (the API server refuses pods until the controller manager has
 * made it: "error looking up service account").
 */
export async function defaultServiceAccount(c: RealCluster, ns: string): Promise<void> {
  await waitFor(
    `ServiceAccount ${ns}/default`,
    async () =>
      (await kubectlAsync(c, ["-n", ns, "get", "serviceaccount", "default"])).status === 0 ? true : undefined,
    120_000,
    { everyMs: 250 },
  );
}

/** Waits until the pod's phase is Succeeded or Failed; returns the phase. */
export async function podOutcome(c: RealCluster, ns: string, name: string, timeoutMs: number): Promise<string> {
  return waitFor(
    `pod ${ns}/${name} Succeeded or Failed`,
    async () => {
      const phase = (
        await kubectlAsync(c, ["-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}"])
      ).stdout.trim();
      return phase === "Succeeded" || phase === "Failed" ? phase : undefined;
    },
    timeoutMs,
    {
      everyMs: 1000,
      explain: async () => `pod ${ns}/${name}:\n${(await kubectlAsync(c, ["-n", ns, "describe", "pod", name])).stdout}`,
    },
  );
}

export async function describeAll(c: RealCluster, ns: string): Promise<string> {
  const get = (await kubectlAsync(c, ["-n", ns, "get", "ssl3d,jobs,pods,events", "-o", "wide"])).stdout;
  const status = (
    await kubectlAsync(c, [
      "-n",
      ns,
      "get",
      "ssl3d",
      "-o",
      'jsonpath={range .items[*]}{.kind}/{.metadata.name}: {.status}{"\\n"}{end}',
    ])
  ).stdout;
  return `${get}\n${status}`.slice(-8000);
}

/** Waits until `kubectl get KIND/NAME` has one of `phases` in .status.phase; returns it. */
export async function waitPhase(
  c: RealCluster,
  ns: string,
  what: string,
  phases: readonly string[],
  timeoutMs: number,
  everyMs = 2000,
): Promise<string> {
  return waitFor(
    `${ns}/${what} in ${phases.join("/")}`,
    async () => {
      const phase = (await kubectlAsync(c, ["-n", ns, "get", what, "-o", "jsonpath={.status.phase}"])).stdout.trim();
      return phases.includes(phase) ? phase : undefined;
    },
    timeoutMs,
    { everyMs, explain: () => describeAll(c, ns) },
  );
}

/** A restricted-compliant pod of the runtime image with PVCs mounted; waits for Succeeded and returns its log. */
export async function runPod(
  c: RealCluster,
  ns: string,
  name: string,
  args: readonly string[],
  mounts: readonly { claim: string; path: string }[],
  timeoutMs: number,
  shell = false,
): Promise<string> {
  await applyPod(c, ns, name, args, mounts, shell);
  const phase = await podOutcome(c, ns, name, timeoutMs);
  const logs = (await kubectlAsync(c, ["-n", ns, "logs", name])).stdout;
  assert.equal(phase, "Succeeded", `pod ${name}:\n${logs.slice(-4000)}`);
  return logs;
}

async function applyPod(
  c: RealCluster,
  ns: string,
  name: string,
  args: readonly string[],
  mounts: readonly { claim: string; path: string }[],
  shell: boolean,
): Promise<void> {
  await kubectlAsync(c, ["-n", ns, "delete", "pod", name, "--ignore-not-found", "--wait"]);
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns },
    spec: {
      restartPolicy: "Never",
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        fsGroup: 65532,
        seccompProfile: { type: "RuntimeDefault" },
      },
      volumes: mounts.map((m, i) => ({ name: `v${i}`, persistentVolumeClaim: { claimName: m.claim } })),
      containers: [
        {
          name: "main",
          image: IMAGE,
          imagePullPolicy: "IfNotPresent",
          ...(shell ? { command: [...args] } : { args: [...args] }),
          volumeMounts: mounts.map((m, i) => ({ name: `v${i}`, mountPath: m.path })),
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        },
      ],
    },
  };
  await kubectlOkAsync(c, ["apply", "-f", "-"], JSON.stringify(pod));
}

interface Obj {
  metadata: { name: string; uid?: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status?: Record<string, unknown>;
}

async function getJson(c: RealCluster, ns: string, what: string, extra: readonly string[] = []): Promise<unknown> {
  const r = await kubectlAsync(c, ["-n", ns, "get", what, ...extra, "-o", "json"]);
  return r.status === 0 ? JSON.parse(r.stdout) : undefined;
}

interface RunStatus {
  phase?: string;
  attempt?: number;
  restarts?: number;
  progress?: { step?: number; loss?: number };
  conditions?: { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }[];
}

async function runStatus(c: RealCluster, name: string): Promise<RunStatus> {
  return ((await getJson(c, NS, `pretrainruns.ssl3d.io/${name}`)) as Obj | undefined)?.status ?? {};
}

/** The pod of completion index `index` of the Job with uid `jobUid` (not one being deleted). */
async function podOf(c: RealCluster, jobUid: string, index: number): Promise<Obj | undefined> {
  const l = (await getJson(c, NS, "pods", [
    "-l",
    `batch.kubernetes.io/controller-uid=${jobUid},batch.kubernetes.io/job-completion-index=${index}`,
  ])) as { items: Obj[] } | undefined;
  return l?.items.find((p) => p.metadata.deletionTimestamp === undefined);
}

async function logsOf(c: RealCluster, pod: string): Promise<string> {
  return (await kubectlAsync(c, ["-n", NS, "logs", pod, "--all-containers"])).stdout;
}

/** The pino JSON objects of a log with message `msg`. */
function logged(log: string, msg: string): { globalStep?: number; epoch?: number; seconds?: number }[] {
  const out: { globalStep?: number; epoch?: number; seconds?: number }[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes(msg)) continue;
    try {
      const o = JSON.parse(line.slice(line.indexOf("{"))) as { msg?: string; globalStep?: number; epoch?: number };
      if (o.msg === msg) out.push(o);
    } catch {
      // not a JSON log line
    }
  }
  return out;
}

/** globalStep of every pino line with message `msg` in a log. */
function stepsLogged(log: string, msg: string): number[] {
  return logged(log, msg).flatMap((o) => (typeof o.globalStep === "number" ? [o.globalStep] : []));
}

/** The last global step a rank 0 log shows as reached: resumed, saved, or the end of a finished epoch. */
function stepReached(log: string): number {
  return Math.max(
    0,
    ...stepsLogged(log, "Resumed from checkpoint"),
    ...stepsLogged(log, "Saved checkpoint"),
    ...logged(log, "Epoch finished").flatMap((o) => (typeof o.epoch === "number" ? [(o.epoch + 1) * ITERS] : [])),
  );
}

/** The Plan and PretrainRun manifests of the scenarios. */
function plan(name: string, subPath: string, backoffLimit = 0): object {
  return {
    apiVersion: "ssl3d.io/v1alpha1",
    kind: "Plan",
    metadata: { name, namespace: NS },
    spec: {
      collectionRef: { name: "demo" },
      configurations: ["onemmiso"],
      numProcesses: 1,
      preprocess: { image: IMAGE, backoffLimit },
      output: { pvc: { claimName: "ssl3d-preprocessed", subPath } },
    },
  };
}

function pretrainRun(
  name: string,
  o: {
    numNodes: number;
    nprocPerNode: number;
    epochs: number;
    image?: string;
    resources?: object;
    maxRestarts?: number;
  },
): object {
  return {
    apiVersion: "ssl3d.io/v1alpha1",
    kind: "PretrainRun",
    metadata: { name, namespace: NS },
    spec: {
      planRef: { name: "demo" },
      image: o.image ?? IMAGE,
      imagePullPolicy: "IfNotPresent",
      numNodes: o.numNodes,
      nprocPerNode: o.nprocPerNode,
      ...(o.resources !== undefined ? { resourcesPerNode: o.resources } : {}),
      training: {
        trainer: "BaseMAETrainer",
        configuration: "onemmiso",
        epochs: o.epochs,
        args: [
          "--arch-preset",
          "resenc-xs",
          "--patch-size",
          "32",
          "--batch-size",
          "4",
          "--iters-per-epoch",
          String(ITERS),
          "--val-iters",
          "1",
          "--seed",
          "1",
        ],
      },
      storage: { checkpoints: { claimName: "ssl3d-results" } },
      runPolicy: { maxRestarts: o.maxRestarts ?? 3, resume: "Latest" },
      metrics: { port: 9090, scrapeIntervalSeconds: 3 },
    },
  };
}

async function apply(c: RealCluster, items: readonly object[]): Promise<void> {
  await kubectlOkAsync(c, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
}

export async function helmInstall(c: RealCluster): Promise<void> {
  const repo = OPERATOR_IMAGE.slice(0, OPERATOR_IMAGE.lastIndexOf(":"));
  const t0 = Date.now();
  const r = await runAsync(
    toolBin("helm"),
    [
      "upgrade",
      "--install",
      RELEASE,
      CHART,
      "--kubeconfig",
      c.kubeconfig,
      "-n",
      SYSTEM_NS,
      "--create-namespace",
      "--set",
      `image.repository=${repo}`,
      "--set",
      "image.pullPolicy=Never",
      "--wait",
      "--timeout",
      "5m",
    ],
    { timeoutMs: 420_000 },
  );
  note(`helm install: exit ${r.status} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const pods = (await kubectlAsync(c, ["-n", SYSTEM_NS, "get", "pods", "-o", "wide"])).stdout;
  assert.equal(
    r.status,
    0,
    `helm install failed:\n${r.stderr}${r.stdout}\n${pods}\n${(await kubectlAsync(c, ["-n", SYSTEM_NS, "describe", "pods"])).stdout.slice(-4000)}`,
  );
}

/** sha256 of every file under `dir` of the preprocessed PVC, by path relative to `dir`. */
async function hashes(c: RealCluster, pod: string, dir: string): Promise<Map<string, string>> {
  const out = await runPod(
    c,
    NS,
    pod,
    ["sh", "-c", `cd /data/pp/${dir} && find . -type f -print0 | sort -z | xargs -0 sha256sum`],
    [{ claim: "ssl3d-preprocessed", path: "/data/pp" }],
    300_000,
    true,
  );
  const m = new Map<string, string>();
  for (const line of out.trim().split("\n")) {
    const [h, f] = line.split(/\s+/, 2);
    if (h !== undefined && f !== undefined) m.set(f, h);
  }
  return m;
}

/**
 * A process without the run's secret: connects to rank 0's rendezvous port (retrying until rank 0 listens), answers
 * the challenge with a well-formed hello under a wrong MAC, and reports whether rank 0 closed the connection. The
 * frame layout (u32 tag, u64 length, JSON) is the runtime's (runtime/src/distributed/process-group.ts).
 */
const STRANGER = `
const net = require("node:net");
const hosts = process.argv.slice(1);
const end = Date.now() + 900000;
function frame(tag, obj) { const b = Buffer.from(JSON.stringify(obj)); const h = Buffer.alloc(12); h.writeUInt32BE(tag, 0); h.writeBigUInt64BE(BigInt(b.length), 4); return Buffer.concat([h, b]); }
function attempt(i) {
  if (Date.now() > end) { console.log("gave up"); process.exit(1); }
  const host = hosts[i % hosts.length];
  const s = net.connect(29500, host);
  let got = Buffer.alloc(0), sent = false;
  s.on("data", (d) => {
    got = Buffer.concat([got, d]);
    if (!sent && got.length >= 12 && got.readUInt32BE(0) === 5) {
      sent = true;
      s.write(frame(1, { rank: 1, worldSize: 4, ringPort: 1, run: "demo", attempt: "0", nonce: "00", mac: "00".repeat(32) }));
      console.log("connected to " + host + ", sent a hello without the secret");
    }
  });
  s.on("error", () => {});
  s.on("close", () => { if (sent) { console.log("rank 0 closed the connection"); process.exit(0); } setTimeout(() => attempt(i + 1), 20); });
}
attempt(0);
`;

export function describeScenarios(cluster: () => RealCluster): void {
  describe("end-to-end scenarios in the restricted namespace", { concurrency: true }, () => {
    let c: RealCluster;
    let prom: PrometheusProcess | undefined;
    // The uninstall scenario takes the operator away while the 2x2 run trains its last attempt: it waits until that
    // attempt has resumed (the kill and the deleted Job need the operator) and the other scenarios are done.
    const lastAttempt = deferred<string>();
    const killedDone = deferred<undefined>();
    const pendingDone = deferred<undefined>();

    before(async () => {
      c = cluster();
      await collectionAndPlan(c);
    });
    after(async () => {
      await prom?.stop();
    });

    test(
      "2x2 PretrainRun: printer columns show progress and loss; a force-killed pod and a deleted attempt Job resume from the last checkpoint; a stranger on the rendezvous port is refused; Prometheus scrapes it through the chart's scrape config; Succeeded with checkpoint_final",
      { timeout: 2_400_000 },
      async (t) => {
        let deleted: { first: Resumed; again: Resumed; log: string };
        let killed: { stepAtKill: number; rank0Final: Promise<string> };
        try {
          prom = await scrapedByPrometheus(c, t);
          // The stranger starts before the run, so that it is waiting when rank 0 opens the rendezvous port. The CNI
          // bridge plugin of the local cluster does not enforce NetworkPolicy: the refusal below comes from the
          // runtime's HMAC handshake under the run's Secret, not from the network.
          await applyPod(c, NS, "stranger", ["node", "-e", STRANGER, "demo-a1-0.demo", "demo-a2-0.demo"], [], true);
          await apply(c, [pretrainRun("demo", { numNodes: 2, nprocPerNode: 2, epochs: DEMO_EPOCHS })]);
          note(`created PretrainRun demo (2x2, ${DEMO_EPOCHS} epochs of ${ITERS} steps)`);
          await networkPolicyAndPrinterColumns(c);
          killed = await killRank1Pod(c);
          deleted = await deleteResumedAttemptJob(c);
          lastAttempt.resolve(deleted.again.uid);
        } catch (e) {
          lastAttempt.reject(new Error("the 2x2 run did not reach its last attempt"));
          throw e;
        }
        // Rank 0 of the killed attempt: its last checkpoint before its container ended is where attempt 2 resumed.
        const rank0Log = await killed.rank0Final;
        const saved = stepsLogged(rank0Log, "Saved checkpoint");
        assert.ok(saved.length > 0, `no checkpoint in the log of attempt 1's rank 0:\n${rank0Log.slice(-3000)}`);
        assert.ok(
          deleted.first.step >= killed.stepAtKill - ITERS &&
            deleted.first.step >= Math.max(...saved) &&
            deleted.first.step > 0,
          `attempt 2 resumed at step ${deleted.first.step}; step at the kill >= ${killed.stepAtKill}, last checkpoint ${Math.max(...saved)}`,
        );
        assert.equal(
          await waitPhase(c, NS, "pretrainruns.ssl3d.io/demo", ["Succeeded", "Failed"], 1_200_000),
          "Succeeded",
          await describeAll(c, NS),
        );
        // One counted restart (the killed pod's attempt); the deleted Job was replaced under the same attempt number.
        const st = await runStatus(c, "demo");
        assert.equal(st.restarts, 1, JSON.stringify(st));
        assert.equal(st.attempt, 2, JSON.stringify(st));
        const files = await runPod(
          c,
          NS,
          "results",
          ["sh", "-c", "find /data/results -name 'checkpoint_final*'"],
          [{ claim: "ssl3d-results", path: "/data/results" }],
          300_000,
          true,
        );
        assert.match(
          files,
          /\/demo-[^/]+\/checkpoints\/checkpoint_final/,
          `no checkpoint_final of demo on the results PVC:\n${files}`,
        );

        // The stranger was refused by rank 0 of the first attempt, which went on to train.
        assert.equal(await podOutcome(c, NS, "stranger", 60_000), "Succeeded", await logsOf(c, "stranger"));
        assert.match(await logsOf(c, "stranger"), /rank 0 closed the connection/);
        // (normally in the first attempt; a stranger that missed its rendezvous window tries the second attempt's)
        assert.match(
          rank0Log + deleted.log,
          /Refused a connection to the rendezvous port: it did not prove it knows the run's secret/,
        );
        await scrapedLossAndRules(prom);
      },
    );

    test(
      "a preprocessing pod killed mid-run: the Job's next pod completes the Plan with the same files as an uninterrupted Plan",
      { timeout: 1_200_000 },
      async () => {
        try {
          await killedPreprocessing(c);
        } finally {
          killedDone.resolve(undefined);
        }
      },
    );

    test(
      "a run whose image does not exist and one asking for more CPU than the node has: Running=False with the reason, and a Warning event",
      { timeout: 900_000 },
      async () => {
        try {
          await pendingReasons(c);
        } finally {
          pendingDone.resolve(undefined);
        }
      },
    );

    test(
      "helm uninstall while the 2x2 run trains its last attempt keeps the CRDs, the PVC data and the run's pods; re-install picks the runs up: the unfinished run finishes without a restart, a finished one stays Succeeded",
      { timeout: 1_800_000 },
      async () => {
        await apply(c, [pretrainRun("early", { numNodes: 1, nprocPerNode: 1, epochs: 1 })]);
        assert.equal(
          await waitPhase(c, NS, "pretrainruns.ssl3d.io/early", ["Succeeded", "Failed"], 900_000, 1000),
          "Succeeded",
          await describeAll(c, NS),
        );
        const [demoJobUid] = await Promise.all([lastAttempt.promise, killedDone.promise, pendingDone.promise]);
        await uninstallReinstall(c, demoJobUid);
      },
    );
  });
}

/** A promise with its resolve and reject, for one scenario to wait on a point reached in another. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a waiter (if any) sees the rejection; no unhandled rejection otherwise
  return { promise, resolve, reject };
}

/** Epochs of the 2x2 run: three attempts (killed, deleted, finishing) each train part of them. */
const DEMO_EPOCHS = 5;

/** The three PVCs, phantom scans written into the raw PVC by a pod, the Collection `demo` and the Plan `demo`. */
async function collectionAndPlan(c: RealCluster): Promise<void> {
  const pvcs = ["ssl3d-raw", "ssl3d-preprocessed", "ssl3d-results"];
  await apply(
    c,
    pvcs.map((name) => ({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name, namespace: NS },
      spec: { accessModes: ["ReadWriteMany"], resources: { requests: { storage: "1Gi" } } },
    })),
  );
  // The phantom scans are written into the raw PVC by a pod of the runtime image (works on any cluster).
  await runPod(
    c,
    NS,
    "phantoms",
    ["demo", "--no-preprocess", "--quick", "--out", "/tmp/demo"],
    [{ claim: "ssl3d-raw", path: "/data/raw" }],
    600_000,
  );
  await apply(c, [
    {
      apiVersion: "ssl3d.io/v1alpha1",
      kind: "Collection",
      metadata: { name: "demo", namespace: NS },
      spec: {
        source: { pvc: { claimName: "ssl3d-raw" } },
        dataset: "990",
        indexing: { enabled: true, image: IMAGE },
      },
    },
    plan("demo", "base"),
  ]);
  // Bounded waits per stage, so that a stage that cannot start (e.g. pods refused by Pod Security) fails with the
  // namespace's events instead of hanging.
  assert.equal(
    await waitPhase(c, NS, "collections.ssl3d.io/demo", ["Ready", "Failed"], 300_000, 1000),
    "Ready",
    await describeAll(c, NS),
  );
  assert.equal(
    await waitPhase(c, NS, "plans.ssl3d.io/demo", ["Ready", "Failed"], 600_000, 1000),
    "Ready",
    await describeAll(c, NS),
  );
}

/**
 * Prometheus on the host (the node's bridge reaches the pod IPs), configured with the chart's plain scrape_configs
 * entry (the PodMonitor's equivalent) and the chart's alert rules. Debian's Prometheus is built without Kubernetes
 * service discovery, so the test plays its part: it writes the cluster's pods, with the `__meta_kubernetes_pod_*`
 * labels Kubernetes SD would give them, into a file_sd file every 3 s; the chart's relabel_configs (selection of
 * rank 0's metrics port, labels namespace/pretrainrun/attempt/pod) run unchanged.
 */
async function scrapedByPrometheus(c: RealCluster, t: TestContext): Promise<PrometheusProcess> {
  const promDir = mkdtempSync(join(tmpdir(), "ssl3d-cluster-prom-"));
  const rules = join(promDir, "rules.yaml");
  writeFileSync(rules, JSON.stringify(renderedRuleGroups()));
  const check = await runAsync("/usr/bin/promtool", ["check", "rules", rules]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
  const rendered = await runAsync(toolBin("helm"), [
    "template",
    RELEASE,
    CHART,
    "-n",
    SYSTEM_NS,
    "--show-only",
    "templates/training-scrape-config.yaml",
    "--set",
    "trainingScrapeConfig.enabled=true",
    "--set",
    "trainingPodMonitor.interval=2s",
    "--set",
    "trainingPodMonitor.scrapeTimeout=1s",
    "--set",
    `trainingPodMonitor.namespaces={${NS}}`,
  ]);
  assert.equal(rendered.status, 0, rendered.stderr);
  const cm = parse(rendered.stdout) as { data: Record<string, string> };
  const scrape = parse(cm.data["training-scrape-config.yaml"]!) as {
    kubernetes_sd_configs?: { role: string; namespaces?: { names: string[] } }[];
    file_sd_configs?: object[];
  }[];
  assert.deepEqual(scrape[0]!.kubernetes_sd_configs, [{ role: "pod", namespaces: { names: [NS] } }]);
  const sdFile = join(promDir, "pods.json");
  writeFileSync(sdFile, "[]");
  for (const j of scrape) {
    delete j.kubernetes_sd_configs;
    j.file_sd_configs = [{ files: [sdFile], refresh_interval: "2s" }];
  }
  const p = await launchPrometheus(promDir, {
    global: { evaluation_interval: "5s" },
    rule_files: [rules],
    scrape_configs: scrape,
  });
  note(`Prometheus on ${p.url}, the chart's alert rules pass promtool`);
  // Kubernetes SD's part, one list at a time (never two kubectl calls of this loop at once).
  const loop = { stopped: false };
  const sd = (async () => {
    while (!loop.stopped) {
      const targets = await podTargets(c);
      if (targets !== undefined) writeFileSync(sdFile, JSON.stringify(targets));
      await sleep(3000);
    }
  })();
  t.after(async () => {
    loop.stopped = true;
    await sd;
  });
  return p;
}

/** Prometheus has pretrain_train_loss of the run with its labels, and loaded every alert rule of the chart. */
async function scrapedLossAndRules(prom: PrometheusProcess): Promise<void> {
  const loss = await promQuery(prom, `pretrain_train_loss{pretrainrun="demo",namespace="${NS}"}[1h]`);
  assert.ok(loss.length > 0, "no pretrain_train_loss series of the run in Prometheus");
  const groups = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as {
    data: { groups: { rules: unknown[] }[] };
  };
  assert.equal(
    groups.data.groups.reduce((n, g) => n + g.rules.length, 0),
    renderedRuleGroups().groups.reduce((n, g) => n + g.rules.length, 0),
  );
}

/**
 * The run's NetworkPolicy exists (not enforced by the bridge CNI) and selects its pods; `kubectl get pretrainruns -o
 * wide` shows the progress and a numeric loss while the run trains (Loss has priority 1: only in the wide output).
 */
async function networkPolicyAndPrinterColumns(c: RealCluster): Promise<void> {
  const np = await waitFor(
    "NetworkPolicy demo",
    async () =>
      (await getJson(c, NS, "networkpolicy/demo")) as
        { spec: { podSelector: { matchLabels: Record<string, string> } } } | undefined,
    120_000,
    { everyMs: 1000 },
  );
  assert.equal(np.spec.podSelector.matchLabels["ssl3d.io/run"], "demo");
  const wide = async (): Promise<string> =>
    (await kubectlAsync(c, ["-n", NS, "get", "pretrainruns", "demo", "-o", "wide"])).stdout;
  const row = await waitFor(
    "kubectl get pretrainruns -o wide: progress and a numeric loss",
    async () => {
      const cells = printerCells(await wide());
      const loss = cells.get("LOSS") ?? "";
      const progress = Number(cells.get("PROGRESS%") ?? "");
      return loss !== "" && Number.isFinite(Number(loss)) && progress > 0 ? cells : undefined;
    },
    900_000,
    { everyMs: 1000, explain: async () => `${await wide()}\n${await describeAll(c, NS)}` },
  );
  assert.deepEqual([...row.keys()], ["NAME", "PHASE", "NODES", "ATTEMPT", "RESTARTS", "PROGRESS%", "LOSS", "AGE"]);
  assert.equal(row.get("PHASE"), "Running");
  assert.equal(row.get("NODES"), "2");
  assert.ok(
    Number(row.get("PROGRESS%")) > 0 && Number(row.get("PROGRESS%")) <= 100,
    `progress ${row.get("PROGRESS%") ?? ""}`,
  );
}

/** A Job's uid once it exists. */
async function jobUid(c: RealCluster, name: string, not?: string): Promise<string> {
  return waitFor(
    `Job ${name}${not !== undefined ? ` (a new one, not uid ${not})` : ""}`,
    async () => {
      const uid = ((await getJson(c, NS, `job/${name}`)) as Obj | undefined)?.metadata.uid;
      return uid !== undefined && uid !== not ? uid : undefined;
    },
    900_000,
    { everyMs: 1000, explain: () => describeAll(c, NS) },
  );
}

/**
 * After rank 0's first checkpoint, node rank 1's pod of attempt 1 is force-deleted. Returns the step the run had
 * reached, and rank 0's whole log once its container has ended (followed from its start: the operator deletes the
 * failed attempt's Job, and its pods' logs with it).
 */
async function killRank1Pod(c: RealCluster): Promise<{ stepAtKill: number; rank0Final: Promise<string> }> {
  const uid = await jobUid(c, "demo-a1");
  const [rank0, victim] = await waitFor(
    "both pods of demo-a1",
    async () => {
      const [p0, p1] = await Promise.all([podOf(c, uid, 0), podOf(c, uid, 1)]);
      return p0 !== undefined && p1 !== undefined ? [p0.metadata.name, p1.metadata.name] : undefined;
    },
    300_000,
    { everyMs: 1000, explain: () => describeAll(c, NS) },
  );
  const log = new LogStream(c, NS, rank0);
  note(`wait: first "Saved checkpoint" in ${rank0}'s log`);
  const first = await log.until((l) => stepsLogged(l, "Saved checkpoint")[0], 600_000);
  assert.ok(first !== undefined, `no checkpoint in ${rank0}:\n${log.text().slice(-3000)}`);
  note(`${rank0} saved a checkpoint at step ${first}`);
  await kubectlOkAsync(c, ["-n", NS, "delete", "pod", victim, "--grace-period=0", "--force", "--wait=false"]);
  const stepAtKill = stepReached(log.text());
  note(`force-deleted ${victim} (node rank 1 of attempt 1) at step >= ${stepAtKill}`);
  return { stepAtKill, rank0Final: log.ended };
}

interface Resumed {
  readonly uid: string;
  readonly log: LogStream;
  readonly step: number;
}

/**
 * The Job `demo-a2` (the attempt after the killed one) resumes; the moment its rank 0 logs the resume, the test
 * deletes that Job, long before the attempt can finish (it has most of the run's epochs still to train). The operator
 * replaces a deleted attempt Job by one of the same name (same attempt number, not a counted restart), which resumes
 * again: from the deleted attempt's last checkpoint (ranks write one on SIGTERM), never more than one checkpoint
 * interval behind the step the deleted attempt had reached, never from step 0.
 */
async function deleteResumedAttemptJob(c: RealCluster): Promise<{ first: Resumed; again: Resumed; log: string }> {
  const first = await resumedAttempt(c, "demo-a2");
  await kubectlOkAsync(c, ["-n", NS, "delete", "job", "demo-a2", "--wait=false"]);
  note(`deleted Job demo-a2 (uid ${first.uid}) right after its rank 0 resumed at step ${first.step}`);
  const log = await first.log.ended;
  const reached = stepReached(log);
  note(`the deleted attempt's rank 0 ended at step ${reached}`);
  assert.ok(
    reached < DEMO_EPOCHS * ITERS,
    `attempt 2 had finished (step ${reached}) when its Job was deleted:\n${log.slice(-3000)}`,
  );
  const again = await resumedAttempt(c, "demo-a2", first.uid);
  again.log.stop();
  const saved = stepsLogged(log, "Saved checkpoint");
  assert.ok(
    again.step >= reached - ITERS && again.step >= Math.max(first.step, ...saved),
    `the replacement of Job demo-a2 resumed at step ${again.step}; the deleted one had resumed at ${first.step}, reached step ${reached} and saved ${saved.join(", ")}`,
  );
  return { first, again, log };
}

/**
 * Waits for Job `job` (one with another uid than `notUid`) to run its rank 0 and returns the global step rank 0 logs
 * as resumed from (followed live, so the caller can act at once) and its log stream. Fails at once when rank 0 starts
 * from scratch or ends without resuming.
 */
async function resumedAttempt(c: RealCluster, job: string, notUid?: string): Promise<Resumed> {
  const uid = await jobUid(c, job, notUid);
  const pod = await waitFor(
    `rank 0 of Job ${job} (uid ${uid}) running`,
    async () => {
      const p = (await podOf(c, uid, 0)) as (Obj & { status: { phase?: string } }) | undefined;
      return p?.status.phase === "Running" ? p.metadata.name : undefined;
    },
    600_000,
    { everyMs: 1000, explain: () => describeAll(c, NS) },
  );
  note(`wait: ${pod} logs "Resumed from checkpoint"`);
  const log = new LogStream(c, NS, pod);
  const step = await log.until((line) => {
    if (line.includes("No checkpoint to resume from")) throw new Error(`${pod} (${job}) started from scratch: ${line}`);
    return stepsLogged(line, "Resumed from checkpoint")[0];
  }, 600_000);
  if (step === undefined) throw new Error(`${pod} (${job}) ended without a resume:\n${log.text().slice(-3000)}`);
  note(`${pod} (${job}, uid ${uid}) resumed from step ${step}`);
  return { uid, log, step };
}

/**
 * A Plan whose preprocessing pod is force-deleted one second after it starts: the Job's retries complete it with the
 * same files as the uninterrupted Plan. The killed pod leaves its folder lock (runtime/src/io/folder-lock.ts), which
 * a pod on another host may take over only once it has not been refreshed for 60 s: the Job's retries (backoff 10 s,
 * 20 s, 40 s) fail on the lock until then, so the Plan allows 4 (docs/operator.md, Plan).
 */
async function killedPreprocessing(c: RealCluster): Promise<void> {
  await apply(c, [plan("killed", "killed", 4)]);
  const pod = await waitFor(
    "a running preprocessing pod of Plan killed",
    async () => {
      const l =
        (
          (await getJson(c, NS, "pods", ["-l", "batch.kubernetes.io/job-name=killed-prep"])) as
            { items: (Obj & { status: { phase: string } })[] } | undefined
        )?.items ?? [];
      return l.find((p) => p.status.phase === "Running");
    },
    600_000,
    { everyMs: 500, explain: () => describeAll(c, NS) },
  );
  await sleep(1000);
  await kubectlOkAsync(c, [
    "-n",
    NS,
    "delete",
    "pod",
    pod.metadata.name,
    "--grace-period=0",
    "--force",
    "--wait=false",
  ]);
  note(`force-deleted the preprocessing pod ${pod.metadata.name}`);
  assert.equal(
    await waitPhase(c, NS, "plans.ssl3d.io/killed", ["Ready", "Failed"], 900_000),
    "Ready",
    await describeAll(c, NS),
  );
  const job = (await getJson(c, NS, "job/killed-prep")) as { status: { failed?: number; succeeded?: number } };
  assert.ok(
    (job.status.failed ?? 0) >= 1,
    "the killed pod must count as a failed pod of the Job (it was killed before it finished)",
  );
  assert.equal(job.status.succeeded, 1);
  const [a, b] = await Promise.all([hashes(c, "hash-base", "base"), hashes(c, "hash-killed", "killed")]);
  assert.ok(a.size > 0, "the uninterrupted Plan wrote no files");
  assert.deepEqual([...b.entries()], [...a.entries()]);
  await kubectlOkAsync(c, ["-n", NS, "delete", "plans.ssl3d.io/killed"]);
}

/** Runs with a missing image and with 512 CPUs: Running=False with the reason, and a Warning event, within 5 min. */
async function pendingReasons(c: RealCluster): Promise<void> {
  await apply(c, [
    pretrainRun("noimage", { numNodes: 1, nprocPerNode: 1, epochs: 1, image: "ssl3d/does-not-exist:0.0.0" }),
    pretrainRun("toobig", {
      numNodes: 1,
      nprocPerNode: 1,
      epochs: 1,
      resources: { requests: { cpu: "512" }, limits: { cpu: "512" } },
    }),
  ]);
  const check = async (name: string, reasons: readonly string[]): Promise<void> => {
    const cond = await waitFor(
      `${name}: Running=False with ${reasons.join("/")}`,
      async () =>
        (await runStatus(c, name)).conditions?.find(
          (x) => x.type === "Running" && x.status === "False" && reasons.includes(x.reason ?? ""),
        ),
      300_000,
      { explain: async () => `${JSON.stringify(await runStatus(c, name))}\n${await describeAll(c, NS)}` },
    );
    assert.match(cond.message ?? "", /Pod /);
    const events = await kubectlOkAsync(c, [
      "-n",
      NS,
      "get",
      "events",
      "--field-selector",
      `involvedObject.name=${name},type=Warning`,
      "-o",
      'jsonpath={range .items[*]}{.reason}{"\\n"}{end}',
    ]);
    assert.ok(
      reasons.some((r) => events.split("\n").includes(r)),
      `${name}: Warning events ${events}`,
    );
  };
  await Promise.all([check("noimage", ["ImagePullBackOff", "ErrImagePull"]), check("toobig", ["Unschedulable"])]);
  await kubectlOkAsync(c, ["-n", NS, "delete", "pretrainruns.ssl3d.io/noimage", "pretrainruns.ssl3d.io/toobig"]);
}

/**
 * `helm uninstall` while the 2x2 run `demo` trains its last attempt (Job uid `demoJobUid`) and the 1x1 run `early`
 * has succeeded: the CRDs, the PVCs and the checkpoints stay, the run's pods keep running without the operator; after
 * re-install `demo` finishes on that same Job without a restart and `early` stays as it was (same attempt, restarts
 * and condition times, no new attempt Job).
 */
async function uninstallReinstall(c: RealCluster, demoJobUid: string): Promise<void> {
  const earlyBefore = await runStatus(c, "early");
  const demoBefore = await runStatus(c, "demo");
  const t0 = Date.now();
  const r = await runAsync(
    toolBin("helm"),
    ["uninstall", RELEASE, "-n", SYSTEM_NS, "--kubeconfig", c.kubeconfig, "--wait", "--timeout", "3m"],
    { timeoutMs: 240_000 },
  );
  note(`helm uninstall: exit ${r.status} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  for (const crd of ["collections.ssl3d.io", "plans.ssl3d.io", "pretrainruns.ssl3d.io"])
    await kubectlOkAsync(c, ["get", "crd", crd]);
  // (the operator pod may still be terminating when helm returns)
  await waitFor(
    "no operator pod left after helm uninstall",
    async () =>
      (await kubectlOkAsync(c, ["-n", SYSTEM_NS, "get", "pods", "-o", "name"])).trim() === "" ? true : undefined,
    180_000,
    {
      everyMs: 1000,
      explain: async () => (await kubectlAsync(c, ["-n", SYSTEM_NS, "get", "pods", "-o", "name"])).stdout,
    },
  );
  // Without the operator the run's pods go on (or end on their own): nothing deleted them.
  const rank0 = (await podOf(c, demoJobUid, 0)) as (Obj & { status: { phase?: string } }) | undefined;
  assert.ok(
    rank0?.status.phase === "Running" || rank0?.status.phase === "Succeeded",
    `rank 0 of the last attempt after helm uninstall: ${JSON.stringify(rank0?.status.phase)}\n${await describeAll(c, NS)}`,
  );
  assert.notEqual(demoBefore.phase, "Succeeded", "demo had finished before the uninstall");
  const files = await runPod(
    c,
    NS,
    "results-kept",
    ["sh", "-c", "find /data/results -name 'checkpoint_*'"],
    [{ claim: "ssl3d-results", path: "/data/results" }],
    300_000,
    true,
  );
  assert.match(files, /\/early-[^/]+\/checkpoints\/checkpoint_final/, `the finished run's checkpoint:\n${files}`);
  assert.match(files, /\/demo-[^/]+\/checkpoints\/checkpoint_/, `the unfinished run's checkpoints:\n${files}`);
  await helmInstall(c);
  assert.equal(
    await waitPhase(c, NS, "pretrainruns.ssl3d.io/demo", ["Succeeded", "Failed"], 1_200_000, 1000),
    "Succeeded",
    await describeAll(c, NS),
  );
  const demoAfter = await runStatus(c, "demo");
  assert.equal(demoAfter.restarts, demoBefore.restarts, "the unfinished run continued its attempt");
  assert.equal(demoAfter.attempt, demoBefore.attempt);
  const job = (await getJson(c, NS, `job/demo-a${demoAfter.attempt ?? 0}`)) as Obj | undefined;
  assert.equal(job?.metadata.uid, demoJobUid, "the unfinished run's Job was replaced");
  const earlyAfter = await runStatus(c, "early");
  assert.equal(earlyAfter.phase, "Succeeded");
  assert.equal(earlyAfter.attempt, earlyBefore.attempt);
  assert.equal(earlyAfter.restarts, earlyBefore.restarts);
  assert.deepEqual(
    earlyAfter.conditions?.map((k) => [k.type, k.status, k.lastTransitionTime]),
    earlyBefore.conditions?.map((k) => [k.type, k.status, k.lastTransitionTime]),
  );
  assert.equal(
    (await kubectlAsync(c, ["-n", NS, "get", "job", `early-a${(earlyBefore.attempt ?? 0) + 1}`])).status,
    1,
    "the finished run was started again",
  );
}

/**
 * The cells of the first row of `kubectl get` table output by column name. Empty cells (e.g. RESTARTS before the
 * first restart) are blank, so the row is cut at the header's column starts, not split on whitespace.
 */
function printerCells(out: string): Map<string, string> {
  const [head = "", row = ""] = out.split("\n");
  const starts = [...head.matchAll(/\S+/g)].map((m) => ({ name: m[0], at: m.index }));
  return new Map(starts.map((h, i) => [h.name, row.slice(h.at, starts[i + 1]?.at ?? row.length).trim()]));
}

/**
 * The namespace's pods as Prometheus Kubernetes SD (role pod) would list them: one target per container port;
 * undefined when kubectl failed (the last list stays).
 */
async function podTargets(
  c: RealCluster,
): Promise<{ targets: string[]; labels: Record<string, string> }[] | undefined> {
  type Pod = Obj & {
    spec: { containers: { name: string; ports?: { name?: string; containerPort: number }[] }[] };
    status: { podIP?: string; phase?: string };
  };
  const list = (await getJson(c, NS, "pods")) as { items: Pod[] } | undefined;
  if (list === undefined) return undefined;
  const pods = list.items.filter((p) => p.status.podIP !== undefined && p.status.phase === "Running");
  const name = (k: string): string => k.replace(/[^a-zA-Z0-9_]/g, "_");
  return pods.flatMap((p) =>
    p.spec.containers.flatMap((ct) =>
      (ct.ports ?? []).map((port) => {
        const labels: Record<string, string> = {
          __meta_kubernetes_namespace: NS,
          __meta_kubernetes_pod_name: p.metadata.name,
          __meta_kubernetes_pod_container_name: ct.name,
          __meta_kubernetes_pod_container_port_name: port.name ?? "",
          __meta_kubernetes_pod_container_port_number: String(port.containerPort),
        };
        for (const [k, v] of Object.entries(p.metadata.labels ?? {})) {
          labels[`__meta_kubernetes_pod_label_${name(k)}`] = v;
          labels[`__meta_kubernetes_pod_labelpresent_${name(k)}`] = "true";
        }
        return { targets: [`${p.status.podIP!}:${port.containerPort}`], labels };
      }),
    ),
  );
}

async function promQuery(p: PrometheusProcess, expr: string): Promise<unknown[]> {
  const r = await fetch(`${p.url}/api/v1/query?${new URLSearchParams({ query: expr }).toString()}`);
  const body = (await r.json()) as { status: string; data?: { result: unknown[] }; error?: string };
  if (body.status !== "success" || body.data === undefined) throw new Error(`${expr}: ${body.error ?? r.statusText}`);
  return body.data.result;
}
