/**
 * The operator's Kubernetes client: the only module (with informer.ts) that imports @kubernetes/client-node. REST
 * calls go over node:https with the kubeconfig's TLS and auth (client-node's `applyToHTTPSOptions`) and exchange
 * plain JSON, so watch events, lists and reads all have the same shape (client-node's typed APIs would turn
 * timestamps into Date objects in lists but not in watch events).
 */
import { KubeConfig } from "@kubernetes/client-node";
import { Agent, request, type RequestOptions } from "node:https";
import { request as httpRequest, Agent as HttpAgent } from "node:http";
import type { KubeObject } from "../controllers/types.js";

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** HTTP status of an error from this client or from client-node (`code` since 1.x, `statusCode` on watch errors). */
export function httpStatus(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status;
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; statusCode?: unknown };
    if (typeof e.code === "number") return e.code;
    if (typeof e.statusCode === "number") return e.statusCode;
  }
  return undefined;
}

export interface ListResult<T> {
  apiVersion?: string;
  kind?: string;
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** Plural resource names of the kinds the operator touches (no discovery round trips). */
const PLURALS: Record<string, string> = {
  Pod: "pods",
  Service: "services",
  Event: "events",
  Namespace: "namespaces",
  Job: "jobs",
  Lease: "leases",
  CustomResourceDefinition: "customresourcedefinitions",
  Collection: "collections",
  Plan: "plans",
  PretrainRun: "pretrainruns",
  PodGroup: "podgroups",
  PersistentVolumeClaim: "persistentvolumeclaims",
  Secret: "secrets",
  NetworkPolicy: "networkpolicies",
  // Kueue (kueue.x-k8s.io): the run-level Workload; the queue objects are installed by administrators (and tests).
  Workload: "workloads",
  ResourceFlavor: "resourceflavors",
  ClusterQueue: "clusterqueues",
  LocalQueue: "localqueues",
  // RBAC objects and quotas (tests install them; the operator itself never touches them).
  ResourceQuota: "resourcequotas",
  ServiceAccount: "serviceaccounts",
  Role: "roles",
  RoleBinding: "rolebindings",
  ClusterRole: "clusterroles",
  ClusterRoleBinding: "clusterrolebindings",
};
const CLUSTER_SCOPED = new Set([
  "Namespace",
  "CustomResourceDefinition",
  "ClusterRole",
  "ClusterRoleBinding",
  "ResourceFlavor",
  "ClusterQueue",
]);

export function resourcePath(
  apiVersion: string,
  kind: string,
  namespace: string | undefined,
  name?: string,
  subresource?: string,
): string {
  const plural = PLURALS[kind];
  if (plural === undefined) throw new Error(`unknown kind ${kind}`);
  const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const ns = CLUSTER_SCOPED.has(kind) || namespace === undefined ? "" : `/namespaces/${encodeURIComponent(namespace)}`;
  let p = `${base}${ns}/${plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  if (subresource !== undefined) p += `/${subresource}`;
  return p;
}

export type PatchType = "application/merge-patch+json" | "application/apply-patch+yaml" | "application/json-patch+json";

export class KubeClient {
  readonly kc: KubeConfig;
  private readonly server: URL;
  private agent: Agent | HttpAgent | undefined;
  /** Per-request timeout in milliseconds. */
  timeoutMs = 15_000;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new Error("the kubeconfig has no current cluster");
    this.server = new URL(cluster.server);
  }

  static fromFile(path: string): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    return new KubeClient(kc);
  }

  /** In-cluster config, else $KUBECONFIG, else ~/.kube/config. */
  static fromDefault(): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return new KubeClient(kc);
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<T> {
    const opts: RequestOptions = { method, headers: { Accept: "application/json" } };
    await this.kc.applyToHTTPSOptions(opts);
    const secure = this.server.protocol === "https:";
    this.agent ??= secure
      ? new Agent({
          keepAlive: true,
          maxSockets: 32,
          ca: opts.ca,
          cert: opts.cert,
          key: opts.key,
          ...(opts.rejectUnauthorized !== undefined ? { rejectUnauthorized: opts.rejectUnauthorized } : {}),
        })
      : new HttpAgent({ keepAlive: true, maxSockets: 32 });
    opts.agent = this.agent;
    const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const headers: Record<string, string | number> = { ...(opts.headers as Record<string, string>) };
    if (payload !== undefined) {
      headers["Content-Type"] = contentType;
      headers["Content-Length"] = Buffer.byteLength(payload);
    }
    const url = new URL(path, this.server);
    return new Promise<T>((resolve, reject) => {
      const fn = secure ? request : httpRequest;
      const req = fn(url, { ...opts, headers, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            try {
              resolve((text === "" ? {} : JSON.parse(text)) as T);
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
            return;
          }
          let reason = "";
          let message = text.slice(0, 500);
          try {
            const st = JSON.parse(text) as { reason?: string; message?: string };
            reason = st.reason ?? "";
            message = st.message ?? message;
          } catch {
            /* not a Status */
          }
          reject(new KubeApiError(status, reason, `${method} ${path}: ${status} ${reason} ${message}`.trim()));
        });
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out after ${this.timeoutMs} ms`)));
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  async get<T = KubeObject>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    try {
      return await this.request<T>("GET", resourcePath(apiVersion, kind, namespace, name));
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  }

  async list<T = KubeObject>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    labelSelector?: string,
    fieldSelector?: string,
  ): Promise<ListResult<T>> {
    const params = new URLSearchParams();
    if (labelSelector !== undefined) params.set("labelSelector", labelSelector);
    if (fieldSelector !== undefined) params.set("fieldSelector", fieldSelector);
    const q = params.size === 0 ? "" : `?${params.toString()}`;
    return this.request<ListResult<T>>("GET", resourcePath(apiVersion, kind, namespace) + q);
  }

  async create<T = KubeObject>(obj: KubeObject): Promise<T> {
    return this.request<T>("POST", resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace), obj);
  }

  /** Server-side apply with a field manager; `force` takes ownership of conflicting fields. */
  async apply<T = KubeObject>(obj: KubeObject, fieldManager: string, force = true): Promise<T> {
    const q = `?fieldManager=${encodeURIComponent(fieldManager)}${force ? "&force=true" : ""}`;
    return this.request<T>(
      "PATCH",
      resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name) + q,
      obj,
      "application/apply-patch+yaml",
    );
  }

  async patch<T = KubeObject>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    opts: { subresource?: string; type?: PatchType; fieldManager?: string } = {},
  ): Promise<T> {
    const q = opts.fieldManager === undefined ? "" : `?fieldManager=${encodeURIComponent(opts.fieldManager)}`;
    return this.request<T>(
      "PATCH",
      resourcePath(apiVersion, kind, namespace, name, opts.subresource) + q,
      patch,
      opts.type ?? "application/merge-patch+json",
    );
  }

  async replace<T = KubeObject>(obj: KubeObject, subresource?: string): Promise<T> {
    return this.request<T>(
      "PUT",
      resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name, subresource),
      obj,
    );
  }

  /** Deletes; returns false when the object was already gone. */
  async delete(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    propagationPolicy: "Background" | "Foreground" | "Orphan" = "Background",
  ): Promise<boolean> {
    try {
      await this.request("DELETE", resourcePath(apiVersion, kind, namespace, name), {
        kind: "DeleteOptions",
        apiVersion: "v1",
        propagationPolicy,
      });
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false;
      throw err;
    }
  }

  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}
