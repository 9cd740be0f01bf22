/**
 * The local real cluster (scripts/cluster/up.sh, down.sh): `cluster:up` from whatever state the machine is in gives
 * one Ready node whose kubelet runs pods of our own images (built from the Dockerfile, imported without a registry);
 * `cluster:down` afterwards leaves the network rules, links, routes, mounts, sysctls and cgroups exactly as they were
 * before `cluster:up`. Needs root. Against a cluster of your own (SSL3D_TEST_KUBECONFIG) only the pod checks run.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  kubectl,
  kubectlAsync,
  kubectlOk,
  kubectlOkAsync,
  machineState,
  startRealCluster,
  stateDiff,
  stopRealCluster,
  type RealCluster,
} from "../helpers/cluster.js";
import { APP_VERSION, RUNTIME_CPU_IMAGE } from "../helpers/images.js";
import { run, toolBin } from "../helpers/tools.js";
import { defaultServiceAccount, describeScenarios, helmInstall, note, podOutcome } from "./scenarios.js";

const own = (process.env.SSL3D_TEST_KUBECONFIG ?? "") !== "";
const notRoot = !own && process.getuid?.() !== 0;

describe(
  "local real cluster (scripts/cluster)",
  { skip: notRoot ? "needs root (mounts, iptables, cgroups)" : false },
  () => {
    let before0 = "";
    let cluster: RealCluster | undefined;
    let stopped = false;

    before(() => {
      if (!own) before0 = machineState();
      const t0 = Date.now();
      note("cluster:up");
      cluster = startRealCluster(note);
      note(`cluster:up done (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    });
    after(() => {
      // On a cluster of your own nothing is stopped: remove what the tests made (the CRDs stay, as after any
      // `helm uninstall` of the chart: helm.sh/resource-policy keep).
      if (own && cluster !== undefined) {
        run(
          toolBin("helm"),
          ["uninstall", "ssl3d", "-n", "ssl3d-system", "--kubeconfig", cluster.kubeconfig, "--wait"],
          { timeoutMs: 300_000 },
        );
        kubectl(cluster, ["delete", "namespace", "ssl3d-runs", "ssl3d-system", "--ignore-not-found", "--wait=false"]);
      }
      if (cluster !== undefined && !stopped) stopRealCluster(cluster, note);
    });

    test("get nodes: one node, Ready", () => {
      const c = cluster!;
      const nodes = JSON.parse(kubectlOk(c, ["get", "nodes", "-o", "json"])) as {
        items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[];
      };
      if (!own) assert.equal(nodes.items.length, 1, "expected exactly one node");
      const ready = nodes.items.filter((n) =>
        n.status.conditions.some((k) => k.type === "Ready" && k.status === "True"),
      );
      assert.ok(ready.length >= 1, `no Ready node: ${JSON.stringify(nodes.items.map((n) => n.status.conditions))}`);
    });

    // The version pod and the chart's install do not depend on each other: they run at the same time.
    describe("the runtime image and the chart", { concurrency: true }, () => {
      test("a Pod of the CPU runtime image runs `ssl3d --version` to Succeeded", { timeout: 300_000 }, async () => {
        const c = cluster!;
        const ns = "ssl3d-cluster-check";
        await kubectlOkAsync(
          c,
          ["apply", "-f", "-"],
          JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }),
        );
        await kubectlOkAsync(c, [
          "label",
          "namespace",
          ns,
          "--overwrite",
          "pod-security.kubernetes.io/enforce=restricted",
        ]);
        await kubectlAsync(c, ["-n", ns, "delete", "pod", "version", "--ignore-not-found", "--wait"]);
        await defaultServiceAccount(c, ns);
        const pod = {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "version", namespace: ns },
          spec: {
            restartPolicy: "Never",
            securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
            containers: [
              {
                name: "ssl3d",
                image: RUNTIME_CPU_IMAGE,
                imagePullPolicy: "Never",
                args: ["--version"],
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
              },
            ],
          },
        };
        await kubectlOkAsync(c, ["apply", "-f", "-"], JSON.stringify(pod));
        const phase = await podOutcome(c, ns, "version", 240_000);
        const logs = await kubectlOkAsync(c, ["-n", ns, "logs", "version"]);
        assert.equal(phase, "Succeeded", logs);
        assert.ok(logs.includes(APP_VERSION), `ssl3d --version printed: ${logs}`);
        await kubectlOkAsync(c, ["delete", "namespace", ns, "--wait=false"]);
      });

      test(
        "helm install: the operator runs as a pod under the chart's ServiceAccount and RBAC; the runs' namespace enforces restricted",
        { timeout: 600_000 },
        async () => {
          const c = cluster!;
          const release = "ssl3d";
          const ns = "ssl3d-system";
          await helmInstall(c);
          const pods = (await kubectlAsync(c, ["-n", ns, "get", "pods", "-o", "wide"])).stdout;
          const pod = JSON.parse(
            await kubectlOkAsync(c, ["-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=ssl3d", "-o", "json"]),
          ) as {
            items: {
              spec: { serviceAccountName: string };
              status: { phase: string; conditions: { type: string; status: string }[] };
            }[];
          };
          assert.equal(pod.items.length, 1, pods);
          assert.equal(pod.items[0]!.spec.serviceAccountName, release);
          assert.ok(
            pod.items[0]!.status.conditions.some((k) => k.type === "Ready" && k.status === "True"),
            `operator pod not Ready:\n${pods}`,
          );
          // No system:masters on this path: the operator's identity is its ServiceAccount, limited by the chart's RBAC.
          const sa = `system:serviceaccount:${ns}:${release}`;
          const can = async (verb: string, what: string, extra: string[] = []): Promise<string> =>
            (await kubectlAsync(c, ["auth", "can-i", verb, what, "--as", sa, ...extra])).stdout.trim();
          assert.equal(await can("create", "jobs.batch", ["-n", "ssl3d-runs"]), "yes");
          // `RESOURCE/NAME` would ask about an object called "status": the subresource needs --subresource. The chart grants
          // patch on /status only (docs/operator.md, RBAC).
          assert.equal(
            await can("patch", "pretrainruns.ssl3d.io", ["-n", "ssl3d-runs", "--subresource=status"]),
            "yes",
          );
          assert.equal(
            await can("update", "pretrainruns.ssl3d.io", ["-n", "ssl3d-runs", "--subresource=status"]),
            "no",
          );
          assert.equal(await can("create", "clusterrolebindings.rbac.authorization.k8s.io"), "no");
          assert.equal(await can("get", "secrets", ["-n", "kube-system"]), "no");
          const bindings = await kubectlOkAsync(c, [
            "get",
            "clusterrolebindings,rolebindings",
            "-A",
            "-l",
            `app.kubernetes.io/instance=${release}`,
            "-o",
            "json",
          ]);
          assert.doesNotMatch(bindings, /system:masters/);
          // The namespace where runs go enforces the restricted Pod Security Standard (a fresh one on a cluster of your own).
          await kubectlAsync(c, ["delete", "namespace", "ssl3d-runs", "--ignore-not-found", "--wait", "--timeout=5m"]);
          await kubectlOkAsync(
            c,
            ["apply", "-f", "-"],
            JSON.stringify({
              apiVersion: "v1",
              kind: "Namespace",
              metadata: { name: "ssl3d-runs", labels: { "pod-security.kubernetes.io/enforce": "restricted" } },
            }),
          );
          await defaultServiceAccount(c, "ssl3d-runs");
          const refused = await kubectlAsync(c, [
            "-n",
            "ssl3d-runs",
            "run",
            "privileged-probe",
            `--image=${RUNTIME_CPU_IMAGE}`,
            "--image-pull-policy=Never",
            "--restart=Never",
            "--",
            "--version",
          ]);
          assert.notEqual(refused.status, 0, "a pod without the restricted securityContext must be refused");
          assert.match(refused.stderr, /violates PodSecurity "restricted/);
        },
      );
    });

    describeScenarios(() => cluster!);

    test(
      "cluster:down restores the machine's network rules, links, routes, mounts, sysctls and cgroups",
      { skip: own ? "cluster of your own (SSL3D_TEST_KUBECONFIG): not stopped" : false },
      () => {
        const t0 = Date.now();
        note("cluster:down");
        stopRealCluster(cluster!, note);
        stopped = true;
        note(`cluster:down done (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
        const diff = stateDiff(before0, machineState());
        assert.deepEqual(
          diff,
          [],
          `machine state after cluster:down differs from before cluster:up:\n${diff.join("\n")}`,
        );
      },
    );
  },
);
