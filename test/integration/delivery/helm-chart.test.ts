/**
 * The Helm chart: `helm lint --strict`, `helm template` pinned by golden files (regenerate with
 * SSL3D_UPDATE_GOLDEN=1), and the properties the chart promises: hardened pods, least-privilege RBAC, one
 * dashboard ConfigMap per JSON file with the Grafana sidecar label, monitoring objects that a default
 * kube-prometheus-stack selects, values validated by values.schema.json.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  CHART,
  KUBE_VERSION,
  REPO,
  SCENARIOS,
  helmTemplate,
  parseManifests,
  renderScenario,
  type K8sObject,
} from "../../helpers/chart.js";
import { validateObject } from "../../helpers/k8s-schemas.js";
import { run, toolBin } from "../../helpers/tools.js";

const GOLDEN = join(REPO, "test", "golden", "helm");

function byKind(objs: readonly K8sObject[], kind: string): K8sObject[] {
  return objs.filter((o) => o.kind === kind);
}

interface PodSpecLike {
  securityContext?: Record<string, unknown>;
  containers: { name: string; securityContext?: Record<string, unknown>; env?: { name: string; value?: string }[] }[];
}
function envOf(o: K8sObject): Record<string, string | undefined> {
  return Object.fromEntries((podSpec(o).containers[0]!.env ?? []).map((e) => [e.name, e.value]));
}
function podSpec(o: K8sObject): PodSpecLike {
  return (o as unknown as { spec: { template: { spec: PodSpecLike } } }).spec.template.spec;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
function rules(o: K8sObject): Rule[] {
  return (o as unknown as { rules: Rule[] }).rules;
}

/** The CRD templates are generated from zod and drift-checked by scripts/verify-generated.sh, not pinned here. */
function withoutGeneratedCrds(rendered: string): string {
  return rendered
    .split(/^---\n/m)
    .filter((doc) => !doc.startsWith("# Source: ssl3d/templates/crds/"))
    .join("---\n");
}

test("helm lint --strict passes for every scenario", () => {
  for (const [name, args] of Object.entries(SCENARIOS)) {
    const r = run(toolBin("helm"), ["lint", CHART, "--strict", "--kube-version", KUBE_VERSION, ...args]);
    assert.equal(r.status, 0, `scenario ${name}: ${r.stdout}${r.stderr}`);
  }
});

test("helm template output equals the golden files (SSL3D_UPDATE_GOLDEN=1 regenerates)", () => {
  const update = process.env.SSL3D_UPDATE_GOLDEN === "1";
  mkdirSync(GOLDEN, { recursive: true });
  for (const [name, args] of Object.entries(SCENARIOS)) {
    const rendered = withoutGeneratedCrds(helmTemplate(args));
    const file = join(GOLDEN, `${name}.yaml`);
    if (update) writeFileSync(file, rendered);
    assert.ok(existsSync(file), `${file} is missing: run with SSL3D_UPDATE_GOLDEN=1`);
    assert.equal(
      rendered,
      readFileSync(file, "utf8"),
      `${file} is stale: review the diff, then regenerate with SSL3D_UPDATE_GOLDEN=1`,
    );
  }
});

test("operator pods are non-root with a read-only root filesystem, no privilege escalation, no capabilities", () => {
  for (const name of Object.keys(SCENARIOS)) {
    const deployments = byKind(renderScenario(name), "Deployment");
    assert.equal(deployments.length, 1, name);
    const spec = podSpec(deployments[0]!);
    assert.equal(spec.securityContext?.runAsNonRoot, true);
    assert.deepEqual(spec.securityContext.seccompProfile, { type: "RuntimeDefault" });
    for (const c of spec.containers) {
      const sc = c.securityContext ?? {};
      assert.equal(sc.readOnlyRootFilesystem, true, c.name);
      assert.equal(sc.allowPrivilegeEscalation, false, c.name);
      assert.equal(sc.runAsNonRoot, true, c.name);
      assert.deepEqual(sc.capabilities, { drop: ["ALL"] }, c.name);
    }
  }
});

test("leader election settings follow the values; more than one replica without it is refused", () => {
  const on = envOf(byKind(renderScenario("full"), "Deployment")[0]!);
  assert.equal(on.SSL3D_LEADER_ELECT, "true");
  assert.equal(on.SSL3D_LEASE_DURATION_SECONDS, "15");
  assert.equal(on.SSL3D_OPERATOR_PORT, "8080");
  assert.ok("SSL3D_OPERATOR_NAMESPACE" in on, "the Lease lives in the pod's namespace");
  const off = byKind(renderScenario("minimal"), "Deployment")[0]!;
  assert.equal(envOf(off).SSL3D_LEADER_ELECT, "false");
  assert.deepEqual((off as unknown as { spec: { strategy: unknown } }).spec.strategy, { type: "Recreate" });
  const r = run(toolBin("helm"), [
    "template",
    "x",
    CHART,
    "--set",
    "leaderElection.enabled=false",
    "--set",
    "replicaCount=2",
  ]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /replicaCount > 1 needs leaderElection.enabled=true/);
});

test("RBAC is least privilege", () => {
  const objs = renderScenario("default");
  const operatorRole = byKind(objs, "ClusterRole").find((o) => o.metadata.name === "ssl3d")!;
  const rs = rules(operatorRole);
  const grants = (group: string, resource: string): string[] =>
    rs.filter((r) => r.apiGroups.includes(group) && r.resources.includes(resource)).flatMap((r) => r.verbs);
  for (const r of rs) {
    assert.ok(!r.verbs.includes("*") && !r.resources.includes("*") && !r.apiGroups.includes("*"), JSON.stringify(r));
  }
  assert.deepEqual(grants("", "pods").sort(), ["list", "watch"]);
  // one Secret per run (the rendezvous token) is created; Secrets are never read
  assert.deepEqual(grants("", "secrets"), ["create"]);
  assert.deepEqual(grants("networking.k8s.io", "networkpolicies").sort(), ["create", "patch"]);
  // delete only for ttlSecondsAfterFinished of PretrainRuns; Collections and Plans are never deleted by the operator;
  // the operator never changes a spec (status only)
  assert.deepEqual(grants("ssl3d.io", "pretrainruns").sort(), ["delete", "get", "list", "watch"]);
  assert.deepEqual(grants("", "persistentvolumeclaims"), []);
  assert.ok(!grants("ssl3d.io", "collections").includes("delete") && !grants("ssl3d.io", "plans").includes("delete"));
  for (const k of ["collections", "plans", "pretrainruns"])
    assert.ok(grants("ssl3d.io", `${k}/status`).includes("patch"), k);
  assert.ok(grants("batch", "jobs").includes("create"));
  assert.ok(grants("events.k8s.io", "events").includes("create"));
  assert.deepEqual(grants("coordination.k8s.io", "leases"), [], "leases belong in the namespaced Role only");
  const lease = byKind(objs, "Role")[0]!;
  assert.equal(lease.metadata.namespace, "ssl3d-system");
  assert.ok(rules(lease).some((r) => r.apiGroups.includes("coordination.k8s.io") && r.verbs.includes("update")));
  // the run-level Kueue Workload: applied and watched, its status patched (eviction, Finished); never read by get
  assert.deepEqual(grants("kueue.x-k8s.io", "workloads").sort(), ["create", "list", "patch", "watch"]);
  assert.deepEqual(grants("kueue.x-k8s.io", "workloads/status"), ["patch"]);
  // optional groups only when asked for
  assert.deepEqual(grants("scheduling.volcano.sh", "podgroups"), []);
  assert.deepEqual(grants("", "configmaps"), []);
  assert.ok(
    !rs.some((r) => r.apiGroups.includes("monitoring.coreos.com")),
    "the chart's PodMonitor covers runs; the operator creates none",
  );
  const full = rules(byKind(renderScenario("full"), "ClusterRole").find((o) => o.metadata.name === "ssl3d")!);
  for (const g of ["scheduling.volcano.sh", "scheduling.x-k8s.io"]) {
    assert.ok(
      full.some((r) => r.apiGroups.includes(g)),
      g,
    );
  }
});

test("rbac.scope=namespace installs the same rules as a Role in watchNamespace and nothing cluster-wide", () => {
  const objs = parseManifests(helmTemplate(["--set", "rbac.scope=namespace", "--set", "watchNamespace=imaging"]));
  assert.deepEqual(byKind(objs, "ClusterRole"), []);
  assert.deepEqual(byKind(objs, "ClusterRoleBinding"), []);
  const role = byKind(objs, "Role").find((o) => o.metadata.name === "ssl3d")!;
  assert.equal(role.metadata.namespace, "imaging");
  const cluster = rules(byKind(renderScenario("default"), "ClusterRole").find((o) => o.metadata.name === "ssl3d")!);
  assert.deepEqual(rules(role), cluster);
  assert.equal(byKind(objs, "RoleBinding").find((o) => o.metadata.name === "ssl3d")?.metadata.namespace, "imaging");
  assert.throws(() => helmTemplate(["--set", "rbac.scope=namespace"]), /needs watchNamespace/);
});

test("one dashboard ConfigMap per JSON file, labelled for the Grafana sidecar, with the file's content", () => {
  const files = readdirSync(join(CHART, "dashboards"))
    .filter((f) => f.endsWith(".json"))
    .sort();
  assert.ok(files.length >= 2);
  const cms = byKind(renderScenario("default"), "ConfigMap").filter((o) => o.metadata.name.includes("-dashboard-"));
  assert.equal(cms.length, files.length);
  for (const f of files) {
    const cm = cms.find((o) => Object.keys((o as unknown as { data: Record<string, string> }).data).includes(f));
    assert.ok(cm !== undefined, f);
    assert.equal(cm.metadata.labels?.grafana_dashboard, "1");
    const data = (cm as unknown as { data: Record<string, string> }).data[f]!;
    assert.deepEqual(JSON.parse(data), JSON.parse(readFileSync(join(CHART, "dashboards", f), "utf8")));
  }
  assert.equal(byKind(renderScenario("minimal"), "ConfigMap").length, 0);
});

test("monitoring objects: opt-in, selected by kube-prometheus-stack's release label, relabelled training series", () => {
  const def = renderScenario("default");
  assert.ok(
    !def.some((o) => o.apiVersion.startsWith("monitoring.coreos.com/")),
    "default install needs no Prometheus Operator CRDs",
  );
  const full = renderScenario("full");
  const sm = byKind(full, "ServiceMonitor")[0]!;
  assert.equal(sm.metadata.labels?.release, "kube-prometheus-stack");
  const svc = byKind(full, "Service")[0]!;
  const selector = (sm as unknown as { spec: { selector: { matchLabels: Record<string, string> } } }).spec.selector
    .matchLabels;
  for (const [k, v] of Object.entries(selector))
    assert.equal(svc.metadata.labels?.[k], v, `ServiceMonitor selects the Service by ${k}`);
  const pm = byKind(full, "PodMonitor")[0]!;
  const pmSelector = (pm as unknown as { spec: { selector: { matchLabels: Record<string, string> } } }).spec.selector
    .matchLabels;
  assert.equal(pmSelector["batch.kubernetes.io/job-completion-index"], "0", "rank 0's pod only");
  const ep = (
    pm as unknown as {
      spec: { podMetricsEndpoints: { port: string; relabelings: { sourceLabels: string[]; targetLabel: string }[] }[] };
    }
  ).spec.podMetricsEndpoints[0]!;
  assert.equal(ep.port, "metrics");
  const target = (l: string): string[] | undefined => ep.relabelings.find((r) => r.targetLabel === l)?.sourceLabels;
  assert.deepEqual(target("namespace"), ["__meta_kubernetes_namespace"]);
  assert.deepEqual(target("pretrainrun"), ["__meta_kubernetes_pod_label_ssl3d_io_run"]);
  assert.deepEqual(target("attempt"), ["__meta_kubernetes_pod_label_ssl3d_io_attempt"]);
  const pr = byKind(full, "PrometheusRule")[0]!;
  const groups = (
    pr as unknown as { spec: { groups: { rules: { alert: string; labels: Record<string, string> }[] }[] } }
  ).spec.groups;
  const alerts = groups.flatMap((g) => g.rules);
  assert.deepEqual(alerts.map((a) => a.alert).sort(), [
    "SSL3DCheckpointTooOld",
    "SSL3DOperatorDown",
    "SSL3DPretrainRunFailed",
    "SSL3DReconcileErrors",
    "SSL3DTrainingLossNotFinite",
    "SSL3DTrainingNoStepProgress",
  ]);
  for (const a of alerts) assert.equal(a.labels.team, "imaging", `${a.alert} carries alerts.ruleLabels`);
  assert.ok(!JSON.stringify(groups).includes("${"), "every placeholder of files/rules.yaml is substituted");
});

test("CRDs are rendered only when crds.enabled (templates/crds is generated by scripts/gen-crds.ts)", () => {
  const dir = join(CHART, "templates", "crds");
  const generated = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".yaml")) : [];
  assert.equal(byKind(renderScenario("minimal"), "CustomResourceDefinition").length, 0);
  assert.ok(generated.length > 0, "helm/ssl3d/templates/crds/ is empty: run npm run generate");
  const crds = byKind(renderScenario("default"), "CustomResourceDefinition")
    .map((o) => o.metadata.name)
    .sort();
  assert.deepEqual(crds, ["collections.ssl3d.io", "plans.ssl3d.io", "pretrainruns.ssl3d.io"]);
});

test("values.schema.json rejects bad values with the offending key", () => {
  const bad: [string[], RegExp][] = [
    [["--set", "replicaCount=0"], /replicaCount/],
    [["--set", "noSuchKey=1"], /noSuchKey/],
    [["--set", "image.digest=latest"], /digest/],
    [["--set", "image.pullPolicy=Sometimes"], /pullPolicy/],
    [["--set", "leaderElection.leaseDurationSeconds=15s"], /leaseDurationSeconds/],
    [["--set", "alerts.checkpointMaxAgeMinutes=0"], /checkpointMaxAgeMinutes/],
  ];
  for (const [args, re] of bad) {
    const r = run(toolBin("helm"), ["template", "x", CHART, "--kube-version", KUBE_VERSION, ...args]);
    assert.notEqual(r.status, 0, args.join(" "));
    assert.match(r.stderr, re, args.join(" "));
  }
});

test("every rendered object validates against the upstream Kubernetes and Prometheus Operator schemas", async () => {
  for (const name of Object.keys(SCENARIOS)) {
    for (const o of renderScenario(name)) await validateObject(o);
  }
  // the validator is not a rubber stamp: a wrong type in a PodMonitor and in a Deployment is caught
  const pm = renderScenario("full").find((o) => o.kind === "PodMonitor")!;
  const badPm = JSON.parse(JSON.stringify(pm).replace('"port":"metrics"', '"port":9090')) as K8sObject;
  await assert.rejects(validateObject(badPm), /port must be string/);
  const dep = renderScenario("default").find((o) => o.kind === "Deployment")!;
  const badDep = JSON.parse(JSON.stringify(dep).replace('"replicas":1', '"replicas":"one"')) as K8sObject;
  await assert.rejects(validateObject(badDep), /replicas/);
});
