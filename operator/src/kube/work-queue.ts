/**
 * Keyed work queue (client-go semantics): a key is queued at most once (dedupe); a key being processed is never
 * processed concurrently (per-key serialisation: re-adds while processing are deferred until it is done); failures
 * are retried with per-key exponential backoff; `addAfter` schedules a delayed add (the earliest pending wins).
 */
export interface QueueMetrics {
  depth(name: string, n: number): void;
  add(name: string): void;
  retry(name: string): void;
  queueDuration(name: string, seconds: number): void;
  workDuration(name: string, seconds: number): void;
}

export interface WorkQueueOptions {
  name: string;
  concurrency?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  metrics?: QueueMetrics | undefined;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly enqueuedAt = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private running = 0;
  private stopped = true;
  private idleWaiters: (() => void)[] = [];
  readonly name: string;
  private readonly concurrency: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly metrics: QueueMetrics | undefined;

  constructor(
    opts: WorkQueueOptions,
    private readonly worker: (key: string) => Promise<void>,
  ) {
    this.name = opts.name;
    this.concurrency = opts.concurrency ?? 4;
    this.baseDelayMs = opts.baseDelayMs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.metrics = opts.metrics;
  }

  get depth(): number {
    return this.queue.length;
  }

  start(): void {
    this.stopped = false;
    this.pump();
  }

  add(key: string): void {
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.enqueuedAt.set(key, performance.now());
    this.queue.push(key);
    this.metrics?.add(this.name);
    this.metrics?.depth(this.name, this.queue.length);
    this.pump();
  }

  addAfter(key: string, delayMs: number): void {
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing !== undefined && existing.at <= at) return;
    if (existing !== undefined) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Retry after a failure with exponential backoff per key. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.baseDelayMs * 2 ** n, this.maxDelayMs);
    this.metrics?.retry(this.name);
    this.addAfter(key, delay);
    return delay;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  private pump(): void {
    while (!this.stopped && this.running < this.concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      const t0 = this.enqueuedAt.get(key);
      this.enqueuedAt.delete(key);
      if (t0 !== undefined) this.metrics?.queueDuration(this.name, (performance.now() - t0) / 1000);
      this.metrics?.depth(this.name, this.queue.length);
      this.processing.add(key);
      this.running++;
      const start = performance.now();
      void this.worker(key)
        .catch(() => undefined) // the worker reports its own errors
        .finally(() => {
          this.metrics?.workDuration(this.name, (performance.now() - start) / 1000);
          this.processing.delete(key);
          this.running--;
          if (this.dirty.delete(key)) this.add(key);
          this.pump();
          if (this.running === 0 && this.queue.length === 0) {
            const w = this.idleWaiters;
            this.idleWaiters = [];
            for (const f of w) f();
          }
        });
    }
  }

  /** Resolves when nothing is queued or running (delayed adds do not count). */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
