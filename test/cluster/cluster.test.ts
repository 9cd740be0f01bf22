/**
 * The local real cluster (scripts/cluster/up.sh, down.sh): `cluster:up` from whatever state the machine is in gives
 * one Ready node whose kubelet runs pods of our own images (built from the Dockerfile, imported without a registry);
 * `cluster:down` afterwards leaves the network rules, links, routes, mounts, sysctls and cgroups exactly as they were
 * before `cluster:up`. Needs root. Against a cluster of your own (SSL3D_TEST_KUBECONFIG) only the pod checks run.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { kubectl, kubectlOk, machineState, startRealCluster, stateDiff, stopRealCluster, type RealCluster } from "../helpers/cluster.js";
import { REPO } from "../helpers/chart.js";
import { APP_VERSION, OPERATOR_IMAGE, RUNTIME_CPU_IMAGE } from "../helpers/images.js";
import { run, toolBin } from "../helpers/tools.js";

const own = (process.env.SSL3D_TEST_KUBECONFIG ?? "") !== "";
const notRoot = !own && process.getuid?.() !== 0;

/** Waits until the pod's phase is Succeeded or Failed; returns the phase. */
async function podOutcome(c: RealCluster, ns: string, name: string, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  let phase = "";
  while (Date.now() < end) {
    phase = kubectl(c, ["-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}"]).stdout.trim();
    if (phase === "Succeeded" || phase === "Failed") return phase;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const describe = kubectl(c, ["-n", ns, "describe", "pod", name]).stdout;
  throw new Error(`pod ${ns}/${name} still ${phase || "absent"} after ${timeoutMs} ms:\n${describe}`);
}

/** Waits until `kubectl get KIND/NAME` has one of `phases` in .status.phase; returns it. */
async function waitPhase(c: RealCluster, ns: string, what: string, phases: readonly string[], timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  let phase = "";
  while (Date.now() < end) {
    phase = kubectl(c, ["-n", ns, "get", what, "-o", "jsonpath={.status.phase}"]).stdout.trim();
    if (phases.includes(phase)) return phase;
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`${ns}/${what} still ${phase || "without a phase"} after ${timeoutMs} ms:\n${describeAll(c, ns)}`);
}

function describeAll(c: RealCluster, ns: string): string {
  const get = kubectl(c, ["-n", ns, "get", "ssl3d,jobs,pods,events", "-o", "wide"]).stdout;
  const status = kubectl(c, ["-n", ns, "get", "ssl3d", "-o", "jsonpath={range .items[*]}{.kind}/{.metadata.name}: {.status}{\"\\n\"}{end}"]).stdout;
  return `${get}\n${status}`.slice(-8000);
}

/** A restricted-compliant pod of the runtime image with PVCs mounted; waits for Succeeded and returns its log. */
async function runPod(c: RealCluster, ns: string, name: string, args: readonly string[], mounts: readonly { claim: string; path: string }[], timeoutMs: number, shell = false): Promise<string> {
  kubectl(c, ["-n", ns, "delete", "pod", name, "--ignore-not-found", "--wait"]);
  const pod = {
    apiVersion: "v1", kind: "Pod", metadata: { name, namespace: ns },
    spec: {
      restartPolicy: "Never",
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } },
      volumes: mounts.map((m, i) => ({ name: `v${i}`, persistentVolumeClaim: { claimName: m.claim } })),
      containers: [{
        name: "main", image: RUNTIME_CPU_IMAGE, imagePullPolicy: "IfNotPresent",
        ...(shell ? { command: [...args] } : { args: [...args] }),
        volumeMounts: mounts.map((m, i) => ({ name: `v${i}`, mountPath: m.path })),
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
      }],
    },
  };
  kubectlOk(c, ["apply", "-f", "-"], JSON.stringify(pod));
  const phase = await podOutcome(c, ns, name, timeoutMs);
  const logs = kubectl(c, ["-n", ns, "logs", name]).stdout;
  assert.equal(phase, "Succeeded", `pod ${name}:\n${logs.slice(-4000)}`);
  return logs;
}

describe("local real cluster (scripts/cluster)", { skip: notRoot ? "needs root (mounts, iptables, cgroups)" : false }, () => {
  let before0 = "";
  let cluster: RealCluster | undefined;
  let stopped = false;

  before(() => {
    if (!own) before0 = machineState();
    cluster = startRealCluster();
  });
  after(() => {
    if (cluster !== undefined && !stopped) stopRealCluster(cluster);
  });

  test("get nodes: one node, Ready", () => {
    const c = cluster!;
    const nodes = JSON.parse(kubectlOk(c, ["get", "nodes", "-o", "json"])) as { items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[] };
    if (!own) assert.equal(nodes.items.length, 1, "expected exactly one node");
    const ready = nodes.items.filter((n) => n.status.conditions.some((k) => k.type === "Ready" && k.status === "True"));
    assert.ok(ready.length >= 1, `no Ready node: ${JSON.stringify(nodes.items.map((n) => n.status.conditions))}`);
  });

  test("a Pod of the CPU runtime image runs `ssl3d --version` to Succeeded", { timeout: 300_000 }, async () => {
    const c = cluster!;
    const ns = "ssl3d-cluster-check";
    kubectlOk(c, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }));
    kubectlOk(c, ["label", "namespace", ns, "--overwrite", "pod-security.kubernetes.io/enforce=restricted"]);
    kubectl(c, ["-n", ns, "delete", "pod", "version", "--ignore-not-found", "--wait"]);
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "version", namespace: ns },
      spec: {
        restartPolicy: "Never",
        securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
        containers: [{
          name: "ssl3d",
          image: RUNTIME_CPU_IMAGE,
          imagePullPolicy: "Never",
          args: ["--version"],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        }],
      },
    };
    kubectlOk(c, ["apply", "-f", "-"], JSON.stringify(pod));
    const phase = await podOutcome(c, ns, "version", 240_000);
    const logs = kubectlOk(c, ["-n", ns, "logs", "version"]);
    assert.equal(phase, "Succeeded", logs);
    assert.ok(logs.includes(APP_VERSION), `ssl3d --version printed: ${logs}`);
    kubectlOk(c, ["delete", "namespace", ns, "--wait=false"]);
  });

  test("helm install: the operator runs as a pod under the chart's ServiceAccount and RBAC; the runs' namespace enforces restricted", { timeout: 600_000 }, () => {
    const c = cluster!;
    const release = "ssl3d";
    const ns = "ssl3d-system";
    const repo = OPERATOR_IMAGE.slice(0, OPERATOR_IMAGE.lastIndexOf(":"));
    const r = run(toolBin("helm"), ["upgrade", "--install", release, `${REPO}/helm/ssl3d`, "--kubeconfig", c.kubeconfig,
      "-n", ns, "--create-namespace", "--set", `image.repository=${repo}`, "--set", "image.pullPolicy=Never",
      "--wait", "--timeout", "5m"], { timeoutMs: 420_000 });
    const pods = kubectl(c, ["-n", ns, "get", "pods", "-o", "wide"]).stdout;
    assert.equal(r.status, 0, `helm install failed:\n${r.stderr}${r.stdout}\n${pods}\n${kubectl(c, ["-n", ns, "describe", "pods"]).stdout.slice(-4000)}`);
    const pod = JSON.parse(kubectlOk(c, ["-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=ssl3d", "-o", "json"])) as { items: { spec: { serviceAccountName: string }; status: { phase: string; conditions: { type: string; status: string }[] } }[] };
    assert.equal(pod.items.length, 1, pods);
    assert.equal(pod.items[0]!.spec.serviceAccountName, release);
    assert.ok(pod.items[0]!.status.conditions.some((k) => k.type === "Ready" && k.status === "True"), `operator pod not Ready:\n${pods}`);
    // No system:masters on this path: the operator's identity is its ServiceAccount, limited by the chart's RBAC.
    const sa = `system:serviceaccount:${ns}:${release}`;
    const can = (verb: string, what: string, extra: string[] = []): string => kubectl(c, ["auth", "can-i", verb, what, "--as", sa, ...extra]).stdout.trim();
    assert.equal(can("create", "jobs.batch", ["-n", "ssl3d-runs"]), "yes");
    assert.equal(can("update", "pretrainruns.ssl3d.io/status", ["-n", "ssl3d-runs"]), "yes");
    assert.equal(can("create", "clusterrolebindings.rbac.authorization.k8s.io"), "no");
    assert.equal(can("get", "secrets", ["-n", "kube-system"]), "no");
    const bindings = kubectlOk(c, ["get", "clusterrolebindings,rolebindings", "-A", "-l", `app.kubernetes.io/instance=${release}`, "-o", "json"]);
    assert.doesNotMatch(bindings, /system:masters/);
    // The namespace where runs go enforces the restricted Pod Security Standard.
    kubectlOk(c, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "ssl3d-runs", labels: { "pod-security.kubernetes.io/enforce": "restricted" } } }));
    const refused = kubectl(c, ["-n", "ssl3d-runs", "run", "privileged-probe", `--image=${RUNTIME_CPU_IMAGE}`, "--image-pull-policy=Never", "--restart=Never", "--", "--version"]);
    assert.notEqual(refused.status, 0, "a pod without the restricted securityContext must be refused");
    assert.match(refused.stderr, /violates PodSecurity "restricted/);
  });

  test("Collection -> Plan -> PretrainRun (2 nodes x 2 ranks, CPU) on phantoms: pods run by the kubelet, Succeeded, checkpoint_final on the PVC", { timeout: 2_400_000 }, async () => {
    const c = cluster!;
    const ns = "ssl3d-runs";
    const pvcs = ["ssl3d-raw", "ssl3d-preprocessed", "ssl3d-results"];
    kubectlOk(c, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: pvcs.map((name) => ({
      apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name, namespace: ns },
      spec: { accessModes: ["ReadWriteMany"], resources: { requests: { storage: "1Gi" } } },
    })) }));
    // The phantom scans are written into the raw PVC by a pod of the runtime image (works on any cluster).
    await runPod(c, ns, "phantoms", ["demo", "--no-preprocess", "--quick", "--out", "/tmp/demo"], [{ claim: "ssl3d-raw", path: "/data/raw" }], 600_000);
    const image = RUNTIME_CPU_IMAGE;
    const manifests = [
      { apiVersion: "ssl3d.io/v1alpha1", kind: "Collection", metadata: { name: "demo", namespace: ns },
        spec: { source: { pvc: { claimName: "ssl3d-raw" } }, dataset: "990", indexing: { enabled: true, image } } },
      { apiVersion: "ssl3d.io/v1alpha1", kind: "Plan", metadata: { name: "demo", namespace: ns },
        spec: { collectionRef: { name: "demo" }, configurations: ["onemmiso"], numProcesses: 1, preprocess: { image }, output: { pvc: { claimName: "ssl3d-preprocessed" } } } },
      { apiVersion: "ssl3d.io/v1alpha1", kind: "PretrainRun", metadata: { name: "demo", namespace: ns },
        spec: { planRef: { name: "demo" }, image, numNodes: 2, nprocPerNode: 2,
          training: { trainer: "BaseMAETrainer", configuration: "onemmiso", epochs: 1,
            args: ["--arch-preset", "resenc-xs", "--patch-size", "32", "--batch-size", "4", "--iters-per-epoch", "4", "--val-iters", "1", "--seed", "1"] },
          storage: { checkpoints: { claimName: "ssl3d-results" } }, runPolicy: { maxRestarts: 2, resume: "Latest" }, metrics: { port: 9090 } } },
    ];
    kubectlOk(c, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: manifests }));
    // Bounded waits per stage, so that a stage that cannot start (e.g. pods refused by Pod Security) fails with the
    // namespace's events instead of hanging.
    assert.equal(await waitPhase(c, ns, "collections.ssl3d.io/demo", ["Ready", "Failed"], 300_000), "Ready", describeAll(c, ns));
    assert.equal(await waitPhase(c, ns, "plans.ssl3d.io/demo", ["Ready", "Failed"], 600_000), "Ready", describeAll(c, ns));
    const phase = await waitPhase(c, ns, "pretrainruns.ssl3d.io/demo", ["Succeeded", "Failed"], 1_200_000);
    assert.equal(phase, "Succeeded", describeAll(c, ns));
    const files = await runPod(c, ns, "results", ["sh", "-c", "find /data/results -name 'checkpoint_final*'"], [{ claim: "ssl3d-results", path: "/data/results" }], 300_000, true);
    assert.match(files, /checkpoint_final/, `no checkpoint_final on the results PVC:\n${files}`);
  });

  test("cluster:down restores the machine's network rules, links, routes, mounts, sysctls and cgroups", { skip: own ? "cluster of your own (SSL3D_TEST_KUBECONFIG): not stopped" : false }, () => {
    stopRealCluster(cluster!);
    stopped = true;
    const diff = stateDiff(before0, machineState());
    assert.deepEqual(diff, [], `machine state after cluster:down differs from before cluster:up:\n${diff.join("\n")}`);
  });
});
