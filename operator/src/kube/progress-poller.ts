/**
 * Reads rank 0's /metrics of every running PretrainRun outside the reconcile workers: its own small pool of
 * concurrent scrapes, each bounded by a timeout, and at most one scrape per run in flight. Reconciles only read the
 * latest sample (never wait on the network); a new sample enqueues the run, whose next reconcile writes
 * status.progress. A rank 0 that hangs or answers slowly therefore delays nothing but its own progress.
 */
import type { Logger } from "pino";
import type { ProgressSample } from "../controllers/pretrain-run/reconcile.js";
import { progressFromMetrics } from "../prometheus-text.js";

export interface ScrapeTarget {
  attempt: number;
  url: string;
  intervalMs: number;
}

export interface PollerOptions {
  /** Fetches the metrics text; must honour `signal` (the poller also stops waiting at the timeout). */
  scrape: (url: string, signal: AbortSignal) => Promise<string>;
  log: Logger;
  /** Called with the run's key when a new sample is stored. */
  onSample: (key: string) => void;
  /** Scrapes in flight at most (default 4). */
  concurrency?: number | undefined;
  /** Per-scrape timeout (default 2000 ms). */
  timeoutMs?: number | undefined;
  /** How often due targets are looked for (default 500 ms). */
  tickMs?: number;
  clock?: () => Date;
}

interface Entry {
  target: ScrapeTarget;
  /** Date.now() of the last scrape start (success or not). */
  lastTry: number;
  /** URL of the scrape in flight (a scrape of an old rank 0 does not hold up the new one). */
  inFlight: string | undefined;
}

export async function httpScrape(url: string, signal: AbortSignal): Promise<string> {
  const res = await fetch(url, { signal });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.text();
}

export class ProgressPoller {
  private readonly targets = new Map<string, Entry>();
  private readonly samples = new Map<string, ProgressSample>();
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  private readonly clock: () => Date;

  constructor(private readonly opts: PollerOptions) {
    this.concurrency = opts.concurrency ?? 4;
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.clock = opts.clock ?? (() => new Date());
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      this.tick();
    }, this.opts.tickMs ?? 500);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Records where a run's rank 0 is now (undefined: nothing to scrape); called from each reconcile (no I/O). */
  track(key: string, target: ScrapeTarget | undefined): void {
    if (target === undefined) {
      this.targets.delete(key);
      return;
    }
    const e = this.targets.get(key);
    if (e === undefined) {
      this.targets.set(key, { target, lastTry: 0, inFlight: undefined });
      this.tick();
      return;
    }
    const moved = e.target.url !== target.url || e.target.attempt !== target.attempt;
    e.target = target;
    if (moved) {
      // A new rank 0 (or attempt) is due at once.
      e.lastTry = 0;
      this.tick();
    }
  }

  /** The latest sample of a run (possibly of an earlier attempt: the reconciler compares attempts). */
  latest(key: string): ProgressSample | undefined {
    return this.samples.get(key);
  }

  forget(key: string): void {
    this.targets.delete(key);
    this.samples.delete(key);
  }

  /** Number of scrapes in flight (for tests). */
  get busy(): number {
    return this.inFlight;
  }

  private tick(): void {
    const now = Date.now();
    for (const [key, e] of this.targets) {
      if (this.inFlight >= this.concurrency) return;
      const url = e.target.url;
      if (e.inFlight === url || now - e.lastTry < e.target.intervalMs * 0.9) continue;
      e.lastTry = now;
      e.inFlight = url;
      this.inFlight += 1;
      void this.scrapeOne(key, e.target).finally(() => {
        if (e.inFlight === url) e.inFlight = undefined;
        this.inFlight -= 1;
      });
    }
  }

  private async scrapeOne(key: string, target: ScrapeTarget): Promise<void> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        ac.abort();
        reject(new Error(`no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
    });
    try {
      const text = await Promise.race([this.opts.scrape(target.url, ac.signal), timeout]);
      // The run may have moved on (new attempt, deleted) while the scrape was in flight.
      const cur = this.targets.get(key);
      if (cur === undefined || cur.target.attempt !== target.attempt || cur.target.url !== target.url) return;
      this.samples.set(key, { attempt: target.attempt, ...progressFromMetrics(text), time: this.clock() });
      this.opts.onSample(key);
    } catch (err) {
      this.opts.log.debug(
        { run: key, url: target.url, err: err instanceof Error ? err.message : String(err) },
        "Could not read rank 0 metrics",
      );
    } finally {
      clearTimeout(timer);
    }
  }
}
