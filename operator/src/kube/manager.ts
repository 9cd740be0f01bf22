/**
 * The controller manager: informers (supervised) → keyed work queues → per-kind reconcile (pure) → server-side apply
 * of children, status merge-patch only on change, Events, requeues. Level-based: a key is reconciled from a fresh
 * read of the custom resource plus cached children, never from the event that triggered it.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import {
  API_VERSION,
  FIELD_MANAGER,
  KINDS,
  LABELS,
  MANAGED_BY_VALUE,
  type KindName,
} from "../../../api/v1alpha1/group.js";
import { reconcileCollection } from "../controllers/collection/reconcile.js";
import { reconcilePlan } from "../controllers/plan/reconcile.js";
import { reconcilePretrainRun, scrapeTarget, type PretrainRunObserved } from "../controllers/pretrain-run/reconcile.js";
import { CREATE_ONLY_ANNOTATION } from "../controllers/pretrain-run/desired.js";
import { WORKLOAD_API_VERSION, workloadName } from "../controllers/pretrain-run/workload.js";
import type { ChildRefusal } from "../controllers/pretrain-run/failures.js";
import { RUN_SECRET_KEY } from "../../../api/pod.js";
import {
  canonicalJson,
  type ChildRef,
  type ChildStatusUpdate,
  type CustomResource,
  type EventSpec,
  type JobView,
  type KubeObject,
  type PodCreationFailure,
  type PodView,
  type ReconcileResult,
} from "../controllers/types.js";
import type { OperatorMetrics } from "../metrics.js";
import { httpStatus, type KubeClient } from "./client.js";
import { httpScrape, ProgressPoller } from "./progress-poller.js";
import { EventRecorder } from "./events.js";
import { SupervisedInformer } from "./informer.js";
import { createMergePatch } from "./merge-patch.js";
import { WorkQueue } from "./work-queue.js";
import { PretrainRunReason } from "../../../api/v1alpha1/reasons.js";

export interface ManagerOptions {
  client: KubeClient;
  log: Logger;
  metrics: OperatorMetrics;
  /** Watch only this namespace (default: all). */
  namespace?: string | undefined;
  concurrency?: number;
  /** Re-list everything and reconcile every object this often (guards against silent watch stalls). */
  resyncPeriodMs?: number;
  identity: string;
  clock?: () => Date;
  /** Fetches rank 0's metrics text (default: HTTP GET); runs in the progress poller, never in a reconcile worker. */
  scrape?: (url: string, signal: AbortSignal) => Promise<string>;
  /** Rank-0 scrapes in flight at most (default 4) and the timeout of each (default 2000 ms). */
  scrapeConcurrency?: number;
  scrapeTimeoutMs?: number;
  /**
   * Watch Kueue Workloads (kueue.x-k8s.io/v1beta2), needed for runs Kueue admits as a whole (ADR 0088). main.ts
   * turns it on when the API server serves Kueue's API; without it such a run waits with a condition.
   */
  kueue?: boolean;
}

type Kind = KindName;
const CONTROLLER_NAME: Record<Kind, string> = { Collection: "collection", Plan: "plan", PretrainRun: "pretrainrun" };

/** Warning Events the Job controller records when it cannot create a pod. */
export const FAILED_CREATE_SELECTOR = "involvedObject.kind=Job,reason=FailedCreate,type=Warning";

/** The fields of a core/v1 Event the operator reads. */
interface CoreEvent extends KubeObject {
  involvedObject?: { kind?: string; name?: string; namespace?: string; uid?: string };
  message?: string;
  lastTimestamp?: string | null;
  eventTime?: string | null;
  series?: { lastObservedTime?: string } | null;
}

export function toPodCreationFailure(e: CoreEvent): PodCreationFailure | undefined {
  const ref = e.involvedObject;
  if (ref?.kind !== "Job" || ref.name === undefined) return undefined;
  const time = e.series?.lastObservedTime ?? e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp;
  return { job: ref.name, jobUid: ref.uid, message: e.message ?? "", time: time ?? undefined };
}

function key(ns: string | undefined, name: string): string {
  return `${ns ?? ""}/${name}`;
}
function splitKey(k: string): [string, string] {
  const i = k.indexOf("/");
  return [k.slice(0, i), k.slice(i + 1)];
}

export class Manager {
  readonly informers: Record<
    "Collection" | "Plan" | "PretrainRun" | "Job" | "Pod" | "Service" | "Event",
    SupervisedInformer
  > & { Workload?: SupervisedInformer };
  readonly queues: Record<Kind, WorkQueue>;
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly metrics: OperatorMetrics;
  private readonly events: EventRecorder;
  private readonly clock: () => Date;
  readonly poller: ProgressPoller;
  private readonly appliedHashes = new Map<string, string>();
  /** The last child the API server refused per custom resource (a condition on the next reconcile). */
  private readonly refusals = new Map<string, ChildRefusal>();
  /** Per child: the resourceVersion the last status update sent was computed from (see updateChildStatus). */
  private readonly sentStatus = new Map<string, string>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(private readonly opts: ManagerOptions) {
    this.client = opts.client;
    this.log = opts.log;
    this.metrics = opts.metrics;
    this.clock = opts.clock ?? (() => new Date());
    this.events = new EventRecorder(opts.client, FIELD_MANAGER, opts.identity, opts.log);
    const ns = opts.namespace;
    const managed = `${LABELS.managedBy}=${MANAGED_BY_VALUE}`;
    const mk = (
      apiVersion: string,
      kind: string,
      labelSelector?: string,
      fieldSelector?: string,
    ): SupervisedInformer => {
      return new SupervisedInformer(
        opts.client,
        {
          apiVersion,
          kind,
          namespace: ns,
          labelSelector,
          fieldSelector,
          onRestart: () => {
            opts.metrics.informerRestarts.inc({ resource: kind });
          },
        },
        opts.log,
      );
    };
    this.informers = {
      Collection: mk(API_VERSION, "Collection"),
      Plan: mk(API_VERSION, "Plan"),
      PretrainRun: mk(API_VERSION, "PretrainRun"),
      Job: mk("batch/v1", "Job", managed),
      Pod: mk("v1", "Pod", managed),
      Service: mk("v1", "Service", managed),
      // The Job controller's FailedCreate Warnings (core/v1: it records through the legacy API): the only trace of a
      // pod refused by Pod Security admission, a ResourceQuota or a LimitRange. Events carry no labels, so this is
      // every Job's; events of Jobs the operator does not own are dropped where they are read.
      Event: mk("v1", "Event", undefined, FAILED_CREATE_SELECTOR),
      // The runs' Kueue Workloads (only when Kueue's API is served): their admission gates the attempts.
      ...(opts.kueue === true ? { Workload: mk(WORKLOAD_API_VERSION, "Workload", managed) } : {}),
    };
    const qm = opts.metrics.queueMetrics();
    const concurrency = opts.concurrency ?? 4;
    this.queues = {
      Collection: new WorkQueue({ name: "collection", concurrency, metrics: qm }, (k) => this.process("Collection", k)),
      Plan: new WorkQueue({ name: "plan", concurrency, metrics: qm }, (k) => this.process("Plan", k)),
      PretrainRun: new WorkQueue({ name: "pretrainrun", concurrency, metrics: qm }, (k) =>
        this.process("PretrainRun", k),
      ),
    };
    this.poller = new ProgressPoller({
      scrape: opts.scrape ?? httpScrape,
      log: opts.log,
      concurrency: opts.scrapeConcurrency,
      timeoutMs: opts.scrapeTimeoutMs,
      clock: this.clock,
      onSample: (k) => {
        this.queues.PretrainRun.add(k);
      },
    });
    this.wire();
  }

  private wire(): void {
    const i = this.informers;
    i.Collection.on((_t, o) => {
      this.queues.Collection.add(key(o.metadata.namespace, o.metadata.name));
      for (const p of i.Plan.list(o.metadata.namespace)) {
        if ((p.spec as { collectionRef?: { name?: string } } | undefined)?.collectionRef?.name === o.metadata.name)
          this.queues.Plan.add(key(p.metadata.namespace, p.metadata.name));
      }
    });
    i.Plan.on((_t, o) => {
      this.queues.Plan.add(key(o.metadata.namespace, o.metadata.name));
      for (const r of i.PretrainRun.list(o.metadata.namespace)) {
        if ((r.spec as { planRef?: { name?: string } } | undefined)?.planRef?.name === o.metadata.name)
          this.queues.PretrainRun.add(key(r.metadata.namespace, r.metadata.name));
      }
    });
    i.PretrainRun.on((t, o) => {
      const k = key(o.metadata.namespace, o.metadata.name);
      if (t === "delete") this.poller.forget(k);
      this.queues.PretrainRun.add(k);
    });
    const byOwnerLabel = (_t: string, o: KubeObject): void => {
      const l = o.metadata.labels ?? {};
      const ns = o.metadata.namespace;
      const run = l[LABELS.run];
      const plan = l[LABELS.plan];
      const col = l[LABELS.collection];
      if (run !== undefined) this.queues.PretrainRun.add(key(ns, run));
      if (plan !== undefined) this.queues.Plan.add(key(ns, plan));
      if (col !== undefined) this.queues.Collection.add(key(ns, col));
    };
    i.Job.on(byOwnerLabel);
    i.Pod.on(byOwnerLabel);
    i.Service.on(byOwnerLabel);
    i.Workload?.on(byOwnerLabel);
    i.Event.on((t, o) => {
      const ref = (o as CoreEvent).involvedObject;
      const job = ref?.name === undefined ? undefined : i.Job.get(ref.name, ref.namespace ?? o.metadata.namespace);
      if (job !== undefined) byOwnerLabel(t, job);
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // Children first, so the first reconciles see them.
    await Promise.all([
      this.informers.Job.start(),
      this.informers.Pod.start(),
      this.informers.Service.start(),
      this.informers.Event.start(),
      ...(this.informers.Workload === undefined ? [] : [this.informers.Workload.start()]),
    ]);
    await Promise.all([
      this.informers.Collection.start(),
      this.informers.Plan.start(),
      this.informers.PretrainRun.start(),
    ]);
    for (const q of Object.values(this.queues)) q.start();
    this.poller.start();
    const period = this.opts.resyncPeriodMs ?? 300_000;
    this.resyncTimer = setInterval(() => {
      void this.resync();
    }, period);
    this.resyncTimer.unref();
    this.log.info({ namespace: this.opts.namespace ?? "(all)" }, "Started controllers");
  }

  /** Re-lists every informer (each re-list reports every object, which enqueues every custom resource). */
  async resync(): Promise<void> {
    for (const inf of Object.values(this.informers)) {
      await inf.resync().catch((err: unknown) => {
        this.log.warn({ err: String(err), informer: inf.name }, "Resync failed");
      });
    }
  }

  get synced(): boolean {
    return Object.values(this.informers).every((i) => i.synced);
  }

  /** Milliseconds since the least recently active informer last listed, connected or delivered an event. */
  staleForMs(): number {
    return Date.now() - Math.min(...Object.values(this.informers).map((i) => i.lastActivity));
  }

  informerRestarts(): number {
    return Object.values(this.informers).reduce((n, i) => n + i.restarts, 0);
  }

  async stop(): Promise<void> {
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    this.poller.stop();
    for (const q of Object.values(this.queues)) q.stop();
    await Promise.race([
      Promise.all(Object.values(this.queues).map((q) => q.idle())),
      new Promise((r) => setTimeout(r, 10_000)),
    ]);
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
    this.started = false;
  }

  private childrenOf(
    kind: Kind,
    ns: string,
    name: string,
  ): { jobs: JobView[]; pods: PodView[]; podCreationFailures: PodCreationFailure[] } {
    const label = kind === "PretrainRun" ? LABELS.run : kind === "Plan" ? LABELS.plan : LABELS.collection;
    const mine = (o: KubeObject): boolean => o.metadata.labels?.[label] === name;
    const jobs: JobView[] = this.informers.Job.list(ns).filter(mine);
    const names = new Set(jobs.map((j) => j.metadata.name));
    const podCreationFailures = this.informers.Event.list(ns)
      .map((e) => toPodCreationFailure(e as CoreEvent))
      .filter((f): f is PodCreationFailure => f !== undefined && names.has(f.job));
    return { jobs, pods: this.informers.Pod.list(ns).filter(mine), podCreationFailures };
  }

  private observeAndReconcile(kind: Kind, cr: CustomResource): ReconcileResult<unknown> {
    const ns = cr.metadata.namespace ?? "";
    const name = cr.metadata.name;
    const now = this.clock();
    const { jobs, pods, podCreationFailures } = this.childrenOf(kind, ns, name);
    switch (kind) {
      case "Collection":
        return reconcileCollection({ collection: cr, jobs, pods, podCreationFailures, now });
      case "Plan": {
        const ref = (cr.spec as { collectionRef?: { name?: string } } | undefined)?.collectionRef?.name;
        const collection =
          ref === undefined ? undefined : (this.informers.Collection.get(ref, ns) as CustomResource | undefined);
        return reconcilePlan({ plan: cr, collection, jobs, pods, podCreationFailures, now });
      }
      case "PretrainRun": {
        const ref = (cr.spec as { planRef?: { name?: string } } | undefined)?.planRef?.name;
        const plan = ref === undefined ? undefined : (this.informers.Plan.get(ref, ns) as CustomResource | undefined);
        const k = key(ns, name);
        const observed: PretrainRunObserved = {
          run: cr,
          plan,
          jobs,
          pods,
          podCreationFailures,
          now,
          refused: this.refusals.get(k),
          workload: this.informers.Workload?.get(workloadName(name), ns),
        };
        // No network here: the poller scrapes rank 0 on its own schedule; the reconcile reads its latest sample.
        this.poller.track(k, scrapeTarget(observed));
        observed.metrics = this.poller.latest(k);
        return reconcilePretrainRun(observed);
      }
    }
  }

  private async process(kind: Kind, k: string): Promise<void> {
    const [ns, name] = splitKey(k);
    const controller = CONTROLLER_NAME[kind];
    const queue = this.queues[kind];
    const t0 = performance.now();
    this.metrics.activeWorkers.inc({ controller });
    let result = "success";
    try {
      const cr = await this.client.get<CustomResource>(API_VERSION, kind, ns, name);
      if (cr === undefined || cr.metadata.deletionTimestamp !== undefined) {
        queue.forget(k);
        this.poller.forget(k);
        this.refusals.delete(k);
        if (kind === "PretrainRun") {
          this.metrics.forgetRun(ns, name);
          this.sentStatus.delete(
            this.childKey(ns, { apiVersion: WORKLOAD_API_VERSION, kind: "Workload", name: workloadName(name) }),
          );
        }
        return;
      }
      const res = this.observeAndReconcile(kind, cr);
      if (kind === "PretrainRun")
        this.metrics.setRunState(ns, name, res.status as { phase?: string; attempt?: number; restarts?: number });
      await this.applyResult(kind, { ...cr, apiVersion: API_VERSION, kind }, res);
      queue.forget(k);
      if (res.requeueAfterMs !== undefined && !res.deleteSelf) {
        queue.addAfter(k, res.requeueAfterMs);
        result = "requeue_after";
      }
    } catch (err) {
      result = "error";
      this.metrics.reconcileErrors.inc({ controller });
      const delay = queue.addRateLimited(k);
      this.log.warn(
        { controller, object: k, err: err instanceof Error ? err.message : String(err), retryInMs: delay },
        "Reconcile failed",
      );
    } finally {
      const dt = (performance.now() - t0) / 1000;
      this.metrics.activeWorkers.dec({ controller });
      this.metrics.reconcileTotal.inc({ controller, result });
      this.metrics.reconcileTime.observe({ controller }, dt);
    }
  }

  private async applyResult(
    kind: Kind,
    cr: CustomResource & { apiVersion: string; kind: string },
    res: ReconcileResult<unknown>,
  ): Promise<void> {
    const ns = cr.metadata.namespace ?? "";
    const log = this.log.child({ controller: CONTROLLER_NAME[kind], object: `${ns}/${cr.metadata.name}` });
    if (res.deleteSelf === true) {
      await this.client.delete(API_VERSION, kind, ns, cr.metadata.name, "Background");
      log.info("Deleted finished object after its TTL");
      return;
    }
    // Status first: a transition (e.g. the next attempt number) is recorded before children change, so a crash in
    // between never repeats a restart or re-creates a deleted attempt.
    if (canonicalJson(cr.status ?? {}) !== canonicalJson(res.status)) {
      const patch = createMergePatch(cr.status ?? {}, res.status);
      // Optimistic concurrency: the status was computed from this resourceVersion; a newer object (another writer,
      // a spec edit) makes the API server answer 409 and the key is reconciled again from a fresh read.
      const rv = cr.metadata.resourceVersion;
      await this.client.patch(
        API_VERSION,
        kind,
        ns,
        cr.metadata.name,
        { ...(rv === undefined ? {} : { metadata: { resourceVersion: rv } }), status: patch },
        { subresource: "status", fieldManager: FIELD_MANAGER },
      );
    }
    // Events describe the transitions just written to status: recorded now, since a failing child below (a refusal
    // is retried) must not lose them (the next reconcile sees no transition).
    for (const e of res.events) {
      this.count(kind, e);
      await this.events.record(cr, e);
    }
    for (const d of res.delete) await this.deleteChild(ns, d, log);
    const k = key(ns, cr.metadata.name);
    for (const obj of res.apply) {
      try {
        await this.applyChild(obj, log);
      } catch (err) {
        const code = httpStatus(err);
        // A refusal (Pod Security admission, quota, a policy webhook, a schema error, a kind the API server does not
        // serve: Kueue not installed) is reported, not retried silently.
        if (code !== 400 && code !== 403 && code !== 404 && code !== 422) throw err;
        const refusal = {
          kind: obj.kind,
          name: obj.metadata.name,
          message: err instanceof Error ? err.message : String(err),
        };
        this.refusals.set(k, refusal);
        log.warn(
          { child: `${obj.kind}/${obj.metadata.name}`, status: code, err: refusal.message },
          "The API server refused a child",
        );
        throw err; // retried with backoff; the next reconcile records the refusal as a condition
      }
    }
    if (res.apply.length > 0) this.refusals.delete(k);
    for (const u of res.statusUpdates ?? []) await this.updateChildStatus(ns, u, log);
  }

  /**
   * A merge patch of a child's status that another controller writes too (Kueue's Workload): computed from the cached
   * status at its resourceVersion, so a concurrent write makes the API server answer 409 and the run is reconciled
   * again from the newer object.
   */
  private async updateChildStatus(ns: string, u: ChildStatusUpdate, log: Logger): Promise<void> {
    // The same update from the same resourceVersion was sent already: the cache has not seen the result yet (a second
    // patch would only meet a 409); the watch event of the written object triggers the next reconcile.
    const ck = this.childKey(ns, u);
    if (u.resourceVersion !== undefined && this.sentStatus.get(ck) === u.resourceVersion) return;
    const patch = createMergePatch(u.from, u.to);
    this.sentStatus.delete(ck);
    await this.client.patch(
      u.apiVersion,
      u.kind,
      ns,
      u.name,
      {
        ...(u.resourceVersion === undefined ? {} : { metadata: { resourceVersion: u.resourceVersion } }),
        status: patch,
      },
      { subresource: "status", fieldManager: FIELD_MANAGER },
    );
    if (u.resourceVersion !== undefined) this.sentStatus.set(ck, u.resourceVersion);
    log.info({ child: `${u.kind}/${u.name}` }, "Updated child status");
  }

  private childKey(ns: string, c: ChildRef): string {
    return `${c.apiVersion}/${c.kind}/${ns}/${c.name}`;
  }

  private cached(kind: string, ns: string, name: string): KubeObject | undefined | null {
    if (kind === "Job") return this.informers.Job.get(name, ns);
    if (kind === "Service") return this.informers.Service.get(name, ns);
    if (kind === "Workload" && this.informers.Workload !== undefined) return this.informers.Workload.get(name, ns);
    return null; // not cached
  }

  private async deleteChild(ns: string, c: ChildRef, log: Logger): Promise<void> {
    const cached = this.cached(c.kind, ns, c.name);
    if (cached === undefined) return; // already gone (a stale cache only delays this to the next reconcile)
    this.appliedHashes.delete(this.childKey(ns, c));
    try {
      if (await this.client.delete(c.apiVersion, c.kind, ns, c.name, "Background"))
        log.info({ child: `${c.kind}/${c.name}` }, "Deleted child");
    } catch (err) {
      if (httpStatus(err) === 404) return;
      throw err;
    }
  }

  /**
   * A child created once and never changed (the run's rendezvous Secret): the token is generated here, so the pure
   * reconciler never sees it and the operator needs only `create` on Secrets (no get/list/watch).
   */
  private async createOnce(obj: KubeObject, log: Logger): Promise<void> {
    // keyed by the owner's uid too: a run deleted and created again under the same name needs a Secret of its own
    // (the old one went with the old run), which a key by name alone would never create
    const owner = obj.metadata.ownerReferences?.[0]?.uid ?? "";
    const ck = `${this.childKey(obj.metadata.namespace ?? "", { apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata.name })}@${owner}`;
    if (this.appliedHashes.has(ck)) return;
    const body: KubeObject =
      obj.kind === "Secret" ? { ...obj, stringData: { [RUN_SECRET_KEY]: randomBytes(32).toString("hex") } } : obj;
    try {
      await this.client.create(body);
      log.info({ child: `${obj.kind}/${obj.metadata.name}` }, "Created child");
    } catch (err) {
      if (httpStatus(err) !== 409) throw err; // exists: keep it (its token is in use by running ranks)
    }
    this.appliedHashes.set(ck, "created");
  }

  private async applyChild(obj: KubeObject, log: Logger): Promise<void> {
    if (obj.metadata.annotations?.[CREATE_ONLY_ANNOTATION] === "true") {
      await this.createOnce(obj, log);
      return;
    }
    const ns = obj.metadata.namespace ?? "";
    const want = obj.metadata.annotations?.[LABELS.specHash];
    const ck = this.childKey(ns, { apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata.name });
    const cached = this.cached(obj.kind, ns, obj.metadata.name);
    if (want !== undefined) {
      if (cached !== null && cached !== undefined && cached.metadata.annotations?.[LABELS.specHash] === want) return;
      if (cached === null && this.appliedHashes.get(ck) === want) return;
    }
    await this.client.apply(obj, FIELD_MANAGER);
    if (want !== undefined) this.appliedHashes.set(ck, want);
    if (cached === undefined) log.info({ child: `${obj.kind}/${obj.metadata.name}` }, "Applied child");
  }

  private count(kind: Kind, e: EventSpec): void {
    if (kind !== "PretrainRun") return;
    if (e.action === "Created" && e.reason === PretrainRunReason.JobCreated) this.metrics.runsCreated.inc();
    else if (e.action === "Succeeded") this.metrics.runsSucceeded.inc();
    else if (e.action === "Failed") this.metrics.runsFailed.inc({ reason: e.reason });
    else if (e.action === "Restart") this.metrics.runsRestarted.inc({ reason: e.reason });
  }

  /** For tests and the benchmark: every custom resource key of a kind currently cached. */
  keys(kind: Kind): string[] {
    return this.informers[kind].list().map((o) => key(o.metadata.namespace, o.metadata.name));
  }

  static kinds(): readonly Kind[] {
    return Object.keys(KINDS) as Kind[];
  }
}
