/** Installs (server-side applies) CRD manifests and waits until the API server serves them. */
import { parseAllDocuments } from "yaml";
import type { KubeObject } from "../controllers/types.js";
import type { KubeClient } from "./client.js";

export async function applyCrdYaml(
  client: KubeClient,
  yamlText: string,
  fieldManager: string,
  timeoutMs = 30_000,
): Promise<string[]> {
  const names: string[] = [];
  for (const doc of parseAllDocuments(yamlText)) {
    const obj = doc.toJS() as KubeObject | null;
    if (obj === null) continue;
    await client.apply(obj, fieldManager);
    names.push(obj.metadata.name);
  }
  const until = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        undefined,
        name,
      );
      if (crd?.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") === true) break;
      if (Date.now() > until) throw new Error(`CRD ${name} not established after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return names;
}
