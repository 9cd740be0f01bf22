/**
 * Offline schema validation of rendered objects with the OpenAPI schemas that the npm packages `kubernetes-models`
 * (core Kubernetes kinds) and `@kubernetes-models/prometheus-operator` (monitoring.coreos.com) generate from the
 * upstream APIs. Complements the server-side dry-run, which needs the API server and the CRDs installed.
 */
import type { K8sObject } from "./chart.js";

interface Validatable {
  validate(): void;
}
type Ctor = new (data: unknown) => Validatable;

const MODULES: Record<string, string> = {
  v1: "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "rbac.authorization.k8s.io/v1": "kubernetes-models/rbac.authorization.k8s.io/v1",
  "apiextensions.k8s.io/v1": "kubernetes-models/apiextensions.k8s.io/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

/** Validate one object; throws with the JSON path of the first violation. Unknown API versions throw too. */
export async function validateObject(o: K8sObject): Promise<void> {
  const mod = MODULES[o.apiVersion];
  if (mod === undefined) throw new Error(`${o.kind}/${o.metadata.name}: no schema for apiVersion ${o.apiVersion}`);
  const exports = (await import(mod)) as Record<string, Ctor | undefined>;
  const ctor = exports[o.kind];
  if (ctor === undefined) throw new Error(`${o.kind}/${o.metadata.name}: ${mod} has no kind ${o.kind}`);
  try {
    new ctor(o).validate();
  } catch (err) {
    throw new Error(`${o.kind}/${o.metadata.name}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}
