/**
 * The local real cluster (scripts/cluster/up.sh, down.sh): `cluster:up` from whatever state the machine is in gives
 * one Ready node whose kubelet runs pods of our own images (built from the Dockerfile, imported without a registry);
 * `cluster:down` afterwards leaves the network rules, links, routes, mounts, sysctls and cgroups exactly as they were
 * before `cluster:up`. Needs root. Against a cluster of your own (SSL3D_TEST_KUBECONFIG) only the pod checks run.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { kubectl, kubectlOk, machineState, startRealCluster, stateDiff, stopRealCluster, type RealCluster } from "../helpers/cluster.js";
import { APP_VERSION, RUNTIME_CPU_IMAGE } from "../helpers/images.js";

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

  test("cluster:down restores the machine's network rules, links, routes, mounts, sysctls and cgroups", { skip: own ? "cluster of your own (SSL3D_TEST_KUBECONFIG): not stopped" : false }, () => {
    stopRealCluster(cluster!);
    stopped = true;
    const diff = stateDiff(before0, machineState());
    assert.deepEqual(diff, [], `machine state after cluster:down differs from before cluster:up:\n${diff.join("\n")}`);
  });
});
