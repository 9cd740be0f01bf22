/**
 * The cluster tier's end-to-end scenarios (run by test/cluster/cluster.test.ts after the operator has been installed
 * by the chart): one Collection and Plan shared by every scenario, in the namespace `ssl3d-runs`, which enforces the
 * restricted Pod Security Standard. Scenarios that do not disturb each other run concurrently:
 *  - the 2x2 PretrainRun `demo` (printer columns, a force-killed training pod, a deleted attempt Job, a stranger on
 *    the rendezvous port, Prometheus scraping it through the chart's scrape configuration) to Succeeded;
 *  - a second Plan whose preprocessing pod is killed mid-run: its retry produces the same files as the first Plan;
 *  - a run with an image that does not exist and one asking for more CPU than the node has: their conditions say why.
 * Then `helm uninstall` / re-install with a finished and an unfinished run.
 * The exit-code-3 case (a rank failing on its input data fails the run without restarts) is shown in the API-server
 * tier (test/integration/operator-failures.test.ts), where the kubelet's status write is simulated; here it would
 * cost a run for no path that tier does not cover.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { kubectl, kubectlOk, type RealCluster } from "../helpers/cluster.js";
import { CHART } from "../helpers/chart.js";
import { OPERATOR_IMAGE, RUNTIME_CPU_IMAGE } from "../helpers/images.js";
import { renderedRuleGroups } from "../helpers/monitoring.js";
import { launchPrometheus, type PrometheusProcess } from "../helpers/prometheus.js";
import { run, toolBin } from "../helpers/tools.js";

export const NS = "ssl3d-runs";
const RELEASE = "ssl3d";
const SYSTEM_NS = "ssl3d-system";
const IMAGE = RUNTIME_CPU_IMAGE;
/** Iterations per epoch of the training scenarios = the checkpoint interval in steps (checkpoint_latest per epoch). */
const ITERS = 2;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined; throws with `what()` after `timeoutMs`. */
export async function waitFor<T>(
  what: () => string,
  probe: () => T | undefined,
  timeoutMs: number,
  everyMs = 2000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
    await sleep(everyMs);
  }
}

/** Waits until the pod's phase is Succeeded or Failed; returns the phase. */
export async function podOutcome(c: RealCluster, ns: string, name: string, timeoutMs: number): Promise<string> {
  return waitFor(
    () => `pod ${ns}/${name}:\n${kubectl(c, ["-n", ns, "describe", "pod", name]).stdout}`,
    () => {
      const phase = kubectl(c, ["-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}"]).stdout.trim();
      return phase === "Succeeded" || phase === "Failed" ? phase : undefined;
    },
    timeoutMs,
    1000,
  );
}

export function describeAll(c: RealCluster, ns: string): string {
  const get = kubectl(c, ["-n", ns, "get", "ssl3d,jobs,pods,events", "-o", "wide"]).stdout;
  const status = kubectl(c, [
    "-n",
    ns,
    "get",
    "ssl3d",
    "-o",
    'jsonpath={range .items[*]}{.kind}/{.metadata.name}: {.status}{"\\n"}{end}',
  ]).stdout;
  return `${get}\n${status}`.slice(-8000);
}

/** Waits until `kubectl get KIND/NAME` has one of `phases` in .status.phase; returns it. */
export async function waitPhase(
  c: RealCluster,
  ns: string,
  what: string,
  phases: readonly string[],
  timeoutMs: number,
): Promise<string> {
  return waitFor(
    () => `${ns}/${what} not in ${phases.join("/")}:\n${describeAll(c, ns)}`,
    () => {
      const phase = kubectl(c, ["-n", ns, "get", what, "-o", "jsonpath={.status.phase}"]).stdout.trim();
      return phases.includes(phase) ? phase : undefined;
    },
    timeoutMs,
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
  applyPod(c, ns, name, args, mounts, shell);
  const phase = await podOutcome(c, ns, name, timeoutMs);
  const logs = kubectl(c, ["-n", ns, "logs", name]).stdout;
  assert.equal(phase, "Succeeded", `pod ${name}:\n${logs.slice(-4000)}`);
  return logs;
}

function applyPod(
  c: RealCluster,
  ns: string,
  name: string,
  args: readonly string[],
  mounts: readonly { claim: string; path: string }[],
  shell: boolean,
): void {
  kubectl(c, ["-n", ns, "delete", "pod", name, "--ignore-not-found", "--wait"]);
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
  kubectlOk(c, ["apply", "-f", "-"], JSON.stringify(pod));
}

interface Obj {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status?: Record<string, unknown>;
}

function getJson(c: RealCluster, ns: string, what: string): unknown {
  const r = kubectl(c, ["-n", ns, "get", what, "-o", "json"]);
  return r.status === 0 ? JSON.parse(r.stdout) : undefined;
}

interface RunStatus {
  phase?: string;
  attempt?: number;
  restarts?: number;
  progress?: { step?: number; loss?: number };
  conditions?: { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }[];
}

function runStatus(c: RealCluster, name: string): RunStatus {
  return (getJson(c, NS, `pretrainruns.ssl3d.io/${name}`) as Obj | undefined)?.status ?? {};
}

function podsOf(c: RealCluster, job: string, index: number): Obj | undefined {
  const r = kubectl(c, [
    "-n",
    NS,
    "get",
    "pods",
    "-l",
    `batch.kubernetes.io/job-name=${job},batch.kubernetes.io/job-completion-index=${index}`,
    "-o",
    "json",
  ]);
  if (r.status !== 0) return undefined;
  return (JSON.parse(r.stdout) as { items: Obj[] }).items.find((p) => p.metadata.deletionTimestamp === undefined);
}

function logsOf(c: RealCluster, pod: string): string {
  return kubectl(c, ["-n", NS, "logs", pod, "--all-containers"]).stdout;
}

/** globalStep of every pino line with message `msg` in a log. */
function stepsLogged(log: string, msg: string): number[] {
  const out: number[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes(msg)) continue;
    try {
      const o = JSON.parse(line.slice(line.indexOf("{"))) as { msg?: string; globalStep?: number };
      if (o.msg === msg && typeof o.globalStep === "number") out.push(o.globalStep);
    } catch {
      // not a JSON log line
    }
  }
  return out;
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

function apply(c: RealCluster, items: readonly object[]): void {
  kubectlOk(c, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
}

export function helmInstall(c: RealCluster): void {
  const repo = OPERATOR_IMAGE.slice(0, OPERATOR_IMAGE.lastIndexOf(":"));
  const r = run(
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
  const pods = kubectl(c, ["-n", SYSTEM_NS, "get", "pods", "-o", "wide"]).stdout;
  assert.equal(
    r.status,
    0,
    `helm install failed:\n${r.stderr}${r.stdout}\n${pods}\n${kubectl(c, ["-n", SYSTEM_NS, "describe", "pods"]).stdout.slice(-4000)}`,
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

    before(async () => {
      c = cluster();
      const pvcs = ["ssl3d-raw", "ssl3d-preprocessed", "ssl3d-results"];
      apply(
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
      apply(c, [
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
        await waitPhase(c, NS, "collections.ssl3d.io/demo", ["Ready", "Failed"], 300_000),
        "Ready",
        describeAll(c, NS),
      );
      assert.equal(
        await waitPhase(c, NS, "plans.ssl3d.io/demo", ["Ready", "Failed"], 600_000),
        "Ready",
        describeAll(c, NS),
      );
    });
    after(async () => {
      await prom?.stop();
    });

    test(
      "2x2 PretrainRun: printer columns show progress and loss; a force-killed pod and a deleted attempt Job resume from the last checkpoint; a stranger on the rendezvous port is refused; Prometheus scrapes it through the chart's scrape config; Succeeded with checkpoint_final",
      { timeout: 2_400_000 },
      async (t) => {
        // Prometheus on the host (the node's bridge reaches the pod IPs), configured with the chart's plain
        // scrape_configs entry (the PodMonitor's equivalent) and the chart's alert rules. Debian's Prometheus is built
        // without Kubernetes service discovery, so the test plays its part: it writes the cluster's pods, with the
        // `__meta_kubernetes_pod_*` labels Kubernetes SD would give them, into a file_sd file every 2 s; the chart's
        // relabel_configs (selection of rank 0's metrics port, labels namespace/pretrainrun/attempt/pod) run unchanged.
        const promDir = mkdtempSync(join(tmpdir(), "ssl3d-cluster-prom-"));
        const rules = join(promDir, "rules.yaml");
        writeFileSync(rules, JSON.stringify(renderedRuleGroups()));
        const check = run("/usr/bin/promtool", ["check", "rules", rules]);
        assert.equal(check.status, 0, check.stdout + check.stderr);
        const rendered = run(toolBin("helm"), [
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
        prom = await launchPrometheus(promDir, {
          global: { evaluation_interval: "5s" },
          rule_files: [rules],
          scrape_configs: scrape,
        });
        const sd = setInterval(() => {
          writeFileSync(sdFile, JSON.stringify(podTargets(c)));
        }, 2000);
        t.after(() => {
          clearInterval(sd);
        });

        // The stranger starts before the run, so that it is waiting when rank 0 opens the rendezvous port. The CNI
        // bridge plugin of the local cluster does not enforce NetworkPolicy: the refusal below comes from the
        // runtime's HMAC handshake under the run's Secret, not from the network.
        applyPod(c, NS, "stranger", ["node", "-e", STRANGER, "demo-a1-0.demo", "demo-a2-0.demo"], [], true);
        // 40 epochs of 2 steps: long enough that the second attempt is still training when its Job is deleted (with
        // 10 it finished in 35 s, before the test could delete it, and the third attempt never came).
        apply(c, [pretrainRun("demo", { numNodes: 2, nprocPerNode: 2, epochs: 40 })]);

        // The NetworkPolicy exists (not enforced here, see above) and selects the run's pods.
        const np = await waitFor(
          () => "no NetworkPolicy demo",
          () =>
            getJson(c, NS, "networkpolicy/demo") as
              { spec: { podSelector: { matchLabels: Record<string, string> } } } | undefined,
          120_000,
        );
        assert.equal(np.spec.podSelector.matchLabels["ssl3d.io/run"], "demo");

        // Printer columns: `kubectl get pretrainruns -o wide` shows the progress and a numeric loss while the run trains
        // (Loss has priority 1: only in the wide output).
        const row = await waitFor(
          () =>
            `no loss in kubectl get pretrainruns -o wide:\n${kubectl(c, ["-n", NS, "get", "pretrainruns", "-o", "wide"]).stdout}\n${describeAll(c, NS)}`,
          () => {
            const cells = printerCells(kubectl(c, ["-n", NS, "get", "pretrainruns", "demo", "-o", "wide"]).stdout);
            const loss = cells.get("LOSS") ?? "";
            const progress = Number(cells.get("PROGRESS%") ?? "");
            return loss !== "" && Number.isFinite(Number(loss)) && progress > 0 ? cells : undefined;
          },
          900_000,
          1000,
        );
        assert.deepEqual(
          [...row.keys()],
          ["NAME", "PHASE", "NODES", "ATTEMPT", "RESTARTS", "PROGRESS%", "LOSS", "AGE"],
        );
        assert.equal(row.get("PHASE"), "Running");
        assert.equal(row.get("NODES"), "2");
        assert.ok(
          Number(row.get("PROGRESS%")) > 0 && Number(row.get("PROGRESS%")) <= 100,
          `progress ${row.get("PROGRESS%") ?? ""}`,
        );

        // Kill node rank 1's pod after rank 0 has written a checkpoint.
        const job0 = `demo-a${runStatus(c, "demo").attempt ?? 0}`;
        const rank0 = podsOf(c, job0, 0)!.metadata.name;
        await waitFor(
          () => `no checkpoint in ${rank0}:\n${logsOf(c, rank0).slice(-3000)}`,
          () => (stepsLogged(logsOf(c, rank0), "Saved checkpoint").length > 0 ? true : undefined),
          600_000,
        );
        const victim = podsOf(c, job0, 1)!.metadata.name;
        const stepAtKill = Math.max(
          runStatus(c, "demo").progress?.step ?? 0,
          ...stepsLogged(logsOf(c, rank0), "Saved checkpoint"),
        );
        kubectlOk(c, ["-n", NS, "delete", "pod", victim, "--grace-period=0", "--force"]);
        // Rank 0's whole log (its last checkpoint before its container ends is the one the next attempt must resume
        // from) is collected alongside the next steps: rank 0 may wait out its peer timeout while the next attempt,
        // which the test must catch running, already trains.
        const rank0Final = finalLog(c, rank0, 600_000);
        const resumed1 = await resumedStep(c, job0);

        // Delete the new attempt's Job after its next checkpoint: the attempt after it resumes, not from step 0.
        const rank0b = podsOf(c, resumed1.job, 0)!.metadata.name;
        await waitFor(
          () => `no new checkpoint in ${rank0b}`,
          () => (stepsLogged(logsOf(c, rank0b), "Saved checkpoint").some((s) => s > resumed1.step) ? true : undefined),
          600_000,
          500,
        );
        const stepAtDelete = Math.max(...stepsLogged(logsOf(c, rank0b), "Saved checkpoint"));
        const rank0bLog = logsOf(c, rank0b);
        kubectlOk(c, ["-n", NS, "delete", "job", resumed1.job, "--wait=false"]);
        const resumed2 = await resumedStep(c, resumed1.job);
        assert.ok(
          resumed2.step >= stepAtDelete,
          `attempt ${resumed2.job} resumed at step ${resumed2.step}, the deleted attempt had saved step ${stepAtDelete}`,
        );
        const rank0Log = await rank0Final;
        const saved = stepsLogged(rank0Log, "Saved checkpoint");
        assert.ok(
          resumed1.step >= stepAtKill - ITERS && resumed1.step >= Math.max(...saved) && resumed1.step > 0,
          `attempt ${resumed1.job} resumed at step ${resumed1.step}; step at the kill >= ${stepAtKill}, last checkpoint ${Math.max(...saved)}`,
        );

        assert.equal(
          await waitPhase(c, NS, "pretrainruns.ssl3d.io/demo", ["Succeeded", "Failed"], 1_200_000),
          "Succeeded",
          describeAll(c, NS),
        );
        const st = runStatus(c, "demo");
        assert.ok((st.restarts ?? 0) >= 2, `restarts ${st.restarts}`);
        const files = await runPod(
          c,
          NS,
          "results",
          ["sh", "-c", "find /data/results -name 'checkpoint_final*'"],
          [{ claim: "ssl3d-results", path: "/data/results" }],
          300_000,
          true,
        );
        assert.match(files, /checkpoint_final/, `no checkpoint_final on the results PVC:\n${files}`);

        // The stranger was refused by rank 0 of the first attempt, which went on to train.
        assert.equal(await podOutcome(c, NS, "stranger", 60_000), "Succeeded", logsOf(c, "stranger"));
        assert.match(logsOf(c, "stranger"), /rank 0 closed the connection/);
        // (normally in the first attempt; a stranger that missed its rendezvous window tries the second attempt's)
        assert.match(
          rank0Log + rank0bLog,
          /Refused a connection to the rendezvous port: it did not prove it knows the run's secret/,
        );

        // Prometheus scraped pretrain_train_loss with the run's label, and loaded the chart's alert rules.
        const loss = await promQuery(prom, `pretrain_train_loss{pretrainrun="demo",namespace="${NS}"}[1h]`);
        assert.ok(loss.length > 0, "no pretrain_train_loss series of the run in Prometheus");
        const groups = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as {
          data: { groups: { rules: unknown[] }[] };
        };
        assert.equal(
          groups.data.groups.reduce((n, g) => n + g.rules.length, 0),
          renderedRuleGroups().groups.reduce((n, g) => n + g.rules.length, 0),
        );
      },
    );
    test(
      "a preprocessing pod killed mid-run: the Job's next pod completes the Plan with the same files as an uninterrupted Plan",
      { timeout: 1_200_000 },
      async () => {
        // The killed pod leaves its folder lock (runtime/src/io/folder-lock.ts), which a pod on another host may take
        // over only once it has not been refreshed for 60 s: the Job's retries (backoff 10 s, 20 s, 40 s) fail on the
        // lock until then, so the Plan allows 4 (docs/operator.md, Plan).
        apply(c, [plan("killed", "killed", 4)]);
        const pod = await waitFor(
          () => `no running preprocessing pod:\n${describeAll(c, NS)}`,
          () => {
            const l =
              (getJson(c, NS, "pods") as { items: (Obj & { status: { phase: string } })[] } | undefined)?.items ?? [];
            return l.find(
              (p) =>
                p.metadata.labels?.["batch.kubernetes.io/job-name"] === "killed-prep" && p.status.phase === "Running",
            );
          },
          600_000,
          500,
        );
        await sleep(1000);
        kubectlOk(c, ["-n", NS, "delete", "pod", pod.metadata.name, "--grace-period=0", "--force"]);
        assert.equal(
          await waitPhase(c, NS, "plans.ssl3d.io/killed", ["Ready", "Failed"], 900_000),
          "Ready",
          describeAll(c, NS),
        );
        const job = getJson(c, NS, "job/killed-prep") as { status: { failed?: number; succeeded?: number } };
        assert.ok(
          (job.status.failed ?? 0) >= 1,
          "the killed pod must count as a failed pod of the Job (it was killed before it finished)",
        );
        assert.equal(job.status.succeeded, 1);
        const [a, b] = [await hashes(c, "hash-base", "base"), await hashes(c, "hash-killed", "killed")];
        assert.ok(a.size > 0, "the uninterrupted Plan wrote no files");
        assert.deepEqual([...b.entries()], [...a.entries()]);
        kubectlOk(c, ["-n", NS, "delete", "plans.ssl3d.io/killed"]);
      },
    );

    test(
      "a run whose image does not exist and one asking for more CPU than the node has: Running=False with the reason, and a Warning event",
      { timeout: 900_000 },
      async () => {
        apply(c, [
          pretrainRun("noimage", { numNodes: 1, nprocPerNode: 1, epochs: 1, image: "ssl3d/does-not-exist:0.0.0" }),
          pretrainRun("toobig", {
            numNodes: 1,
            nprocPerNode: 1,
            epochs: 1,
            resources: { requests: { cpu: "512" }, limits: { cpu: "512" } },
          }),
        ]);
        for (const [name, reasons] of [
          ["noimage", ["ImagePullBackOff", "ErrImagePull"]],
          ["toobig", ["Unschedulable"]],
        ] as const) {
          const cond = await waitFor(
            () =>
              `${name}: no Running=False with ${reasons.join("/")}:\n${JSON.stringify(runStatus(c, name))}\n${describeAll(c, NS)}`,
            () => {
              const k = runStatus(c, name).conditions?.find(
                (x) =>
                  x.type === "Running" &&
                  x.status === "False" &&
                  (reasons as readonly string[]).includes(x.reason ?? ""),
              );
              return k;
            },
            300_000,
          );
          assert.match(cond.message ?? "", /Pod /);
          const events = kubectlOk(c, [
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
        }
        kubectlOk(c, ["-n", NS, "delete", "pretrainruns.ssl3d.io/noimage", "pretrainruns.ssl3d.io/toobig"]);
      },
    );
  });

  test(
    "helm uninstall keeps the CRDs and the PVC data; re-install picks the runs up: the finished run stays Succeeded, the unfinished one finishes",
    { timeout: 1_800_000 },
    async () => {
      const c = cluster();
      apply(c, [pretrainRun("later", { numNodes: 1, nprocPerNode: 1, epochs: 6 })]);
      await waitFor(
        () => `later does not train:\n${describeAll(c, NS)}`,
        () => ((runStatus(c, "later").progress?.step ?? 0) > 0 ? true : undefined),
        900_000,
      );
      const demoBefore = runStatus(c, "demo");
      const r = run(
        toolBin("helm"),
        ["uninstall", RELEASE, "-n", SYSTEM_NS, "--kubeconfig", c.kubeconfig, "--wait", "--timeout", "3m"],
        { timeoutMs: 240_000 },
      );
      assert.equal(r.status, 0, r.stderr + r.stdout);
      for (const crd of ["collections.ssl3d.io", "plans.ssl3d.io", "pretrainruns.ssl3d.io"])
        kubectlOk(c, ["get", "crd", crd]);
      // (the operator pod may still be terminating when helm returns)
      await waitFor(
        () =>
          `operator pods left after helm uninstall: ${kubectl(c, ["-n", SYSTEM_NS, "get", "pods", "-o", "name"]).stdout}`,
        () => (kubectlOk(c, ["-n", SYSTEM_NS, "get", "pods", "-o", "name"]).trim() === "" ? true : undefined),
        180_000,
      );
      assert.equal(runStatus(c, "later").phase, "Running");
      const files = await runPod(
        c,
        NS,
        "results-kept",
        ["sh", "-c", "find /data/results -name 'checkpoint_final*'"],
        [{ claim: "ssl3d-results", path: "/data/results" }],
        300_000,
        true,
      );
      assert.match(files, /checkpoint_final/, "the results PVC lost the finished run's checkpoint");
      helmInstall(c);
      assert.equal(
        await waitPhase(c, NS, "pretrainruns.ssl3d.io/later", ["Succeeded", "Failed"], 1_200_000),
        "Succeeded",
        describeAll(c, NS),
      );
      const later = runStatus(c, "later");
      assert.equal(later.restarts ?? 0, 0, "the unfinished run continued its attempt");
      const demoAfter = runStatus(c, "demo");
      assert.equal(demoAfter.phase, "Succeeded");
      assert.equal(demoAfter.attempt, demoBefore.attempt);
      assert.equal(demoAfter.restarts, demoBefore.restarts);
      assert.deepEqual(
        demoAfter.conditions?.map((k) => [k.type, k.status, k.lastTransitionTime]),
        demoBefore.conditions?.map((k) => [k.type, k.status, k.lastTransitionTime]),
      );
      assert.equal(
        kubectl(c, ["-n", NS, "get", "job", `demo-a${(demoBefore.attempt ?? 0) + 1}`]).status,
        1,
        "the finished run was started again",
      );
    },
  );
}

/**
 * The whole log of a pod's container once it has ended (terminated, or the pod is gone: then the last log read).
 * A failed attempt's pods may stay (the operator keeps their evidence), so "until `kubectl logs` fails" never ends.
 */
async function finalLog(c: RealCluster, pod: string, timeoutMs: number): Promise<string> {
  let last = logsOf(c, pod);
  return waitFor(
    () => `pod ${pod} still running:\n${describeAll(c, NS)}`,
    () => {
      const r = kubectl(c, ["-n", NS, "logs", pod]);
      if (r.status !== 0) return last;
      last = r.stdout;
      const state = kubectl(c, [
        "-n",
        NS,
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.reason}",
      ]);
      return state.status !== 0 || state.stdout.trim() !== ""
        ? kubectl(c, ["-n", NS, "logs", pod]).stdout || last
        : undefined;
    },
    timeoutMs,
    1000,
  );
}

/** Waits for the attempt after `previousJob` and returns the global step its rank 0 logged as resumed from. */
async function resumedStep(c: RealCluster, previousJob: string): Promise<{ job: string; step: number }> {
  const prev = Number(previousJob.slice(previousJob.lastIndexOf("-a") + 2));
  const job = `demo-a${prev + 1}`;
  return waitFor(
    () => `attempt ${job} did not log a resume:\n${describeAll(c, NS)}`,
    () => {
      const p = podsOf(c, job, 0);
      if (p === undefined) return undefined;
      const log = logsOf(c, p.metadata.name);
      if (log.includes("No checkpoint to resume from"))
        throw new Error(`${job} started from scratch:\n${log.slice(-3000)}`);
      const s = stepsLogged(log, "Resumed from checkpoint");
      return s.length > 0 ? { job, step: s[0]! } : undefined;
    },
    900_000,
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

/** The namespace's pods as Prometheus Kubernetes SD (role pod) would list them: one target per container port. */
function podTargets(c: RealCluster): { targets: string[]; labels: Record<string, string> }[] {
  type Pod = Obj & {
    spec: { containers: { name: string; ports?: { name?: string; containerPort: number }[] }[] };
    status: { podIP?: string; phase?: string };
  };
  const pods = ((getJson(c, NS, "pods") as { items: Pod[] } | undefined)?.items ?? []).filter(
    (p) => p.status.podIP !== undefined && p.status.phase === "Running",
  );
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
