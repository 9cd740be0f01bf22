/**
 * Informers (client-node's list+watch cache) wrapped in a supervisor: client-node stops an informer for good on most
 * errors (only 410 and client timeouts reconnect by themselves), so every `error` schedules a restart with capped
 * exponential backoff; a restart re-lists. List and watch use the same label and field selectors (a mismatch would let
 * the cache diverge). `synced` and `lastEvent` feed readiness.
 */
import {
  ListWatch,
  Watch,
  type Informer,
  type KubernetesObject,
  type makeInformer,
  type ObjectCache,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { KubeObject } from "../controllers/types.js";
import { resourcePath, type KubeClient } from "./client.js";

export interface InformerOptions {
  apiVersion: string;
  kind: string;
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  /** A field selector for list and watch (e.g. `involvedObject.kind=Job` on core/v1 Events). */
  fieldSelector?: string | undefined;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called on every supervised restart (metrics). */
  onRestart?: () => void;
  /** Builds the client-node informer (tests pass a stand-in). */
  factory?: typeof makeInformer;
}

export type Handler = (type: "add" | "update" | "delete", obj: KubeObject) => void;

export class SupervisedInformer {
  /** The cache that answers list/get: replaced only once a new informer has finished its initial list. */
  private informer: (Informer<KubernetesObject> & ObjectCache<KubernetesObject>) | undefined;
  /** The most recently launched informer (errors of older ones are ignored). */
  private latest: (Informer<KubernetesObject> & ObjectCache<KubernetesObject>) | undefined;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private handlers: Handler[] = [];
  synced = false;
  restarts = 0;
  lastActivity = Date.now();

  constructor(
    private readonly client: KubeClient,
    readonly opts: InformerOptions,
    private readonly log: Logger,
  ) {
    this.backoffMs = opts.minBackoffMs ?? 500;
  }

  get name(): string {
    return this.opts.kind;
  }

  on(h: Handler): void {
    this.handlers.push(h);
  }

  list(namespace?: string): KubeObject[] {
    return (this.informer?.list(namespace) ?? []) as unknown as KubeObject[];
  }

  get(name: string, namespace?: string): KubeObject | undefined {
    return this.informer?.get(name, namespace) as unknown as KubeObject | undefined;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.launch();
  }

  private async launch(): Promise<void> {
    const { apiVersion, kind, namespace, labelSelector, fieldSelector } = this.opts;
    const path = resourcePath(apiVersion, kind, namespace);
    const listFn = async (): Promise<{ metadata: { resourceVersion?: string }; items: KubernetesObject[] }> => {
      const r = await this.client.list<KubernetesObject>(apiVersion, kind, namespace, labelSelector, fieldSelector);
      this.lastActivity = Date.now();
      return r;
    };
    // client-node's makeInformer takes no field selector; its ListWatch does (watch with the same one as the list).
    const inf =
      this.opts.factory !== undefined
        ? this.opts.factory<KubernetesObject>(this.client.kc, path, listFn, labelSelector)
        : new ListWatch<KubernetesObject>(path, new Watch(this.client.kc), listFn, false, labelSelector, fieldSelector);
    this.latest = inf;
    const emit = (type: "add" | "update" | "delete") => (obj: KubernetesObject) => {
      this.lastActivity = Date.now();
      for (const h of this.handlers) h(type, obj as unknown as KubeObject);
    };
    inf.on("add", emit("add"));
    inf.on("update", emit("update"));
    inf.on("delete", emit("delete"));
    inf.on("connect", () => {
      this.lastActivity = Date.now();
    });
    inf.on("error", (err: unknown) => {
      if (this.latest !== inf) return;
      this.synced = false;
      this.scheduleRestart(err);
    });
    // The old cache keeps answering until the new list has arrived: a resync or restart never shows the reconcilers
    // an empty cache (which would make children look deleted and re-create them).
    await inf.start();
    if (this.latest !== inf) {
      await inf.stop(); // superseded while listing
      return;
    }
    const old = this.informer;
    this.informer = inf;
    if (old !== undefined && old !== inf) await old.stop();
    if (this.restartTimer === undefined) {
      this.synced = true;
      this.backoffMs = this.opts.minBackoffMs ?? 500;
    }
    // Objects that vanished while the informer was down: a fresh informer only reports what exists, so report
    // deletions of objects the old cache had and the new one lacks.
    if (old !== undefined) {
      const now = new Set(inf.list().map((o) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`));
      for (const o of old.list()) {
        if (!now.has(`${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`)) emit("delete")(o);
      }
    }
  }

  private scheduleRestart(err: unknown): void {
    if (this.stopped || this.restartTimer !== undefined) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
    this.restarts++;
    this.opts.onRestart?.();
    this.log.warn(
      { informer: this.name, err: err instanceof Error ? err.message : String(err), delayMs: delay },
      "Informer failed; restarting",
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.launch().catch((e: unknown) => {
        this.scheduleRestart(e);
      });
    }, delay);
  }

  /** Re-list now (periodic resync against silent stalls). */
  async resync(): Promise<void> {
    if (this.stopped || this.restartTimer !== undefined) return;
    await this.launch();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.informer?.stop();
  }
}
