/**
 * Every object the chart renders (three value scenarios) and both examples are applied with server-side dry-run
 * (`kubectl apply --server-side --dry-run=server`) to the real test API server of test/helpers/kube.ts (etcd +
 * kube-apiserver, or K3s, or $SSL3D_TEST_KUBECONFIG), after installing the chart's CRDs for real and minimal
 * structural CRDs for the Prometheus Operator kinds (test/fixtures/monitoring/crds.yaml).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import { stringify } from "yaml";
import { REPO, SCENARIOS, renderScenario, type K8sObject } from "../../helpers/chart.js";
import { run } from "../../helpers/tools.js";

interface TestClusterLike {
  readonly kubeconfigPath: string;
  stop(): Promise<void>;
}
interface KubeHelper {
  startTestCluster(opts?: { garbageCollector?: boolean }): Promise<TestClusterLike>;
}

const KUBE_HELPER = join(REPO, "test", "helpers", "kube.ts");
const KUBECTL = "/usr/bin/kubectl";

function toYaml(objs: readonly K8sObject[]): string {
  return objs.map((o) => stringify(o)).join("---\n");
}

test(
  "the chart and the examples pass server-side dry-run against a real API server",
  { timeout: 600_000 },
  async () => {
    assert.ok(existsSync(KUBE_HELPER), "test/helpers/kube.ts (the API server harness) is missing");
    const crdObjects = renderScenario("default").filter((o) => o.kind === "CustomResourceDefinition");
    assert.ok(crdObjects.length > 0, "helm/ssl3d/templates/crds/ is empty: run npm run generate");
    const helper = (await import(pathToFileURL(KUBE_HELPER).href)) as KubeHelper;
    const cluster = await helper.startTestCluster();
    const dir = mkdtempSync(join(tmpdir(), "ssl3d-dry-run-"));
    const kubectl = (args: readonly string[], input?: string): { status: number | null; out: string } => {
      const r = run(KUBECTL, ["--kubeconfig", cluster.kubeconfigPath, ...args], { input, timeoutMs: 120_000 });
      return { status: r.status, out: r.stdout + r.stderr };
    };
    const ok = (args: readonly string[], input?: string): string => {
      const r = kubectl(args, input);
      assert.equal(r.status, 0, `kubectl ${args.join(" ")}:\n${r.out}`);
      return r.out;
    };
    try {
      // CRDs first, for real (a dry-run cannot create the types the other objects need)
      writeFileSync(join(dir, "crds.yaml"), toYaml(crdObjects));
      ok(["apply", "--server-side", "-f", join(dir, "crds.yaml")]);
      ok(["apply", "--server-side", "-f", join(REPO, "test", "fixtures", "monitoring", "crds.yaml")]);
      ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/collections.ssl3d.io",
        "crd/plans.ssl3d.io",
        "crd/pretrainruns.ssl3d.io",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
      ]);
      for (const ns of ["ssl3d-system", "imaging", "laptop"]) ok(["create", "namespace", ns]);

      for (const name of Object.keys(SCENARIOS)) {
        const objs = renderScenario(name).filter((o) => o.kind !== "CustomResourceDefinition");
        const file = join(dir, `${name}.yaml`);
        writeFileSync(file, toYaml(objs));
        const out = ok(["apply", "--server-side", "--dry-run=server", "--field-manager=helm", "-f", file]);
        for (const o of objs)
          assert.ok(
            out.includes(`${o.metadata.name} serverside-applied (server dry run)`),
            `scenario ${name}: ${o.kind}/${o.metadata.name} not applied:\n${out}`,
          );
      }
      ok(["apply", "--server-side", "--dry-run=server", "-f", join(REPO, "examples", "openmind-4x8.yaml")]);
      ok(["apply", "--server-side", "--dry-run=server", "-n", "laptop", "-f", join(REPO, "examples", "laptop.yaml")]);

      // the dry-run validates: an invalid PretrainRun and an invalid Deployment are rejected
      const bad = kubectl(
        ["apply", "--server-side", "--dry-run=server", "-n", "laptop", "-f", "-"],
        [
          "apiVersion: ssl3d.io/v1alpha1",
          "kind: PretrainRun",
          "metadata: {name: bad}",
          "spec: {planRef: {name: demo}, image: x, numNodes: 0, storage: {checkpoints: {claimName: c}}}",
          "",
        ].join("\n"),
      );
      assert.notEqual(bad.status, 0);
      assert.match(bad.out, /numNodes/);
      const dep = renderScenario("default").find((o) => o.kind === "Deployment")!;
      const badDep = toYaml([JSON.parse(JSON.stringify(dep).replace('"replicas":1', '"replicas":"one"')) as K8sObject]);
      const rejected = kubectl(["apply", "--server-side", "--dry-run=server", "-f", "-"], badDep);
      assert.notEqual(rejected.status, 0, rejected.out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await cluster.stop();
    }
  },
);
