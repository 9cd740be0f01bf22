/**
 * Renders the Helm chart helm/ssl3d with the cached helm binary, for the chart, dry-run and monitoring tests.
 * Scenarios are value sets whose rendering is pinned by golden files in test/golden/helm/.
 */
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { runOk, toolBin } from "./tools.js";

export const REPO = join(import.meta.dirname, "..", "..");
export const CHART = join(REPO, "helm", "ssl3d");
/** Kubernetes version the test API server runs (scripts/setup.d/30-kube-apiserver.sh). */
export const KUBE_VERSION = "1.34.2";
export const RELEASE = "ssl3d";
export const NAMESPACE = "ssl3d-system";

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export const SCENARIOS: Readonly<Record<string, readonly string[]>> = {
  /** `helm install ssl3d helm/ssl3d` with no values. */
  default: [],
  /** Everything on: monitoring objects, all optional RBAC, two replicas, a digest-pinned image. */
  full: [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "trainingPodMonitor.enabled=true",
    "--set",
    "alerts.enabled=true",
    "--set",
    "alerts.ruleLabels.team=imaging",
    "--set",
    "rbac.volcano=true",
    "--set",
    "rbac.coscheduling=true",
    "--set",
    "replicaCount=2",
    "--set",
    `image.digest=sha256:${"0".repeat(64)}`,
  ],
  /** CRDs managed elsewhere, no dashboards, no leader election. */
  minimal: [
    "--set",
    "crds.enabled=false",
    "--set",
    "dashboards.enabled=false",
    "--set",
    "leaderElection.enabled=false",
  ],
};

export function helmTemplate(extra: readonly string[]): string {
  return runOk(toolBin("helm"), [
    "template",
    RELEASE,
    CHART,
    "--namespace",
    NAMESPACE,
    "--kube-version",
    KUBE_VERSION,
    ...extra,
  ]);
}

export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]?.message ?? ""}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

export function renderScenario(name: keyof typeof SCENARIOS): K8sObject[] {
  return parseManifests(helmTemplate(SCENARIOS[name] ?? []));
}
