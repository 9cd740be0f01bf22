/**
 * Data loader: an infinite stream of batches (nnssl `nnsslDataLoader3D`: images drawn uniformly with replacement) built
 * by worker threads ahead of time. Batch `i` is a pure function of (images, options, seed, stream, i): its seed is
 * `deriveSeed(seed, stream, i)`, so the sequence is identical whatever the number of workers or their timing, and
 * resuming only needs the next batch index (`state()`).
 *
 * `prefetch` batches are kept in flight, spread round-robin over the workers; `next()` returns them in order.
 * With `numWorkers: 0` batches are built on the main thread (tests, debugging).
 */
import { Worker } from "node:worker_threads";
import { DataError } from "../errors.js";
import { buildBatch, type Batch, type BatchOptions } from "./batch.js";
import { deriveSeed } from "./rng.js";
import { DEFAULT_READER_MODULE, type TrainingImage, type VolumeReader, type VolumeReaderModule } from "./source.js";

export interface LoaderOptions extends BatchOptions {
  readonly images: readonly TrainingImage[];
  readonly seed: number;
  /** Separates streams of the same seed ("train", "val"). */
  readonly stream: string;
  readonly numWorkers: number;
  readonly prefetch: number;
  readonly readerModule?: string;
  /** First batch index (resume). */
  readonly startIndex?: number;
}

export interface LoaderState {
  readonly stream: string;
  readonly nextIndex: number;
}

interface Deferred {
  promise: Promise<Batch>;
  resolve: (b: Batch) => void;
  reject: (e: Error) => void;
}

function deferred(): Deferred {
  let resolve!: (b: Batch) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<Batch>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export class DataLoader {
  private next_ = 0;
  private requested = 0;
  private readonly inflight = new Map<number, Deferred>();
  private readonly ready = new Set<number>();
  private workers: Worker[] = [];
  private started: Promise<void> | undefined;
  private closed = false;
  private mainReader: Promise<VolumeReaderModule> | undefined;
  private readonly cache = new Map<string, Promise<VolumeReader>>();
  /** Called with the number of patches each time a batch arrives (metrics). */
  onBatch: ((patches: number) => void) | undefined;

  constructor(private readonly o: LoaderOptions) {
    this.next_ = o.startIndex ?? 0;
    this.requested = this.next_;
  }

  state(): LoaderState {
    return { stream: this.o.stream, nextIndex: this.next_ };
  }

  /** Batches built and waiting to be consumed. */
  queueDepth(): number {
    return this.ready.size;
  }

  private options(): BatchOptions {
    const { batchSize, patchSize, loaderPatchSize, augment, withAnon, crop, intensity, transform } = this.o;
    return {
      batchSize,
      patchSize,
      loaderPatchSize,
      augment,
      withAnon,
      ...(crop === undefined ? {} : { crop }),
      ...(intensity === undefined ? {} : { intensity }),
      ...(transform === undefined ? {} : { transform }),
    };
  }

  private async start(): Promise<void> {
    const readerModule = this.o.readerModule ?? DEFAULT_READER_MODULE;
    const n = this.o.numWorkers;
    const workerUrl = new URL(
      import.meta.url.endsWith(".ts") ? "./loader-worker.ts" : "./loader-worker.js",
      import.meta.url,
    );
    // Running from TypeScript sources (tsx): a worker does not inherit a loader registered through tsx's API (as
    // bin/ssl3d.mjs does), so boot it with a tiny script that registers tsx, then imports the worker module.
    const fromSources = workerUrl.pathname.endsWith(".ts");
    const boot = fromSources
      ? `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}); })`
      : undefined;
    const readies: Promise<void>[] = [];
    for (let w = 0; w < n; w++) {
      const workerData = { images: this.o.images, options: this.options(), readerModule };
      const worker =
        boot === undefined ? new Worker(workerUrl, { workerData }) : new Worker(boot, { eval: true, workerData });
      readies.push(
        new Promise<void>((res, rej) => {
          const onMsg = (m: { ready?: boolean }) => {
            if (m.ready === true) {
              worker.off("error", rej);
              res();
            }
          };
          worker.on("message", onMsg);
          worker.once("error", rej);
        }),
      );
      worker.on("message", (m: { ok?: boolean; batch?: Batch; index?: number; message?: string }) => {
        if (m.ok === true && m.batch !== undefined) this.deliver(m.batch.index, m.batch);
        else if (m.ok === false && m.index !== undefined)
          this.fail(m.index, new DataError(m.message ?? "loader worker failed"));
      });
      worker.on("error", (err) => {
        for (const [i] of this.inflight) this.fail(i, err);
      });
      this.workers.push(worker);
    }
    await Promise.all(readies);
  }

  private deliver(index: number, batch: Batch): void {
    const d = this.inflight.get(index);
    if (d === undefined) return;
    this.ready.add(index);
    this.onBatch?.(batch.keys.length);
    d.resolve(batch);
  }

  private fail(index: number, err: Error): void {
    this.inflight.get(index)?.reject(err);
  }

  private openMain(dir: string): Promise<VolumeReader> {
    this.mainReader ??= import(this.o.readerModule ?? DEFAULT_READER_MODULE) as Promise<VolumeReaderModule>;
    let r = this.cache.get(dir);
    if (r === undefined) {
      r = this.mainReader.then((m) => m.openZarrVolume(dir));
      this.cache.set(dir, r);
    }
    return r;
  }

  private request(index: number): void {
    const d = deferred();
    this.inflight.set(index, d);
    const seed = deriveSeed(this.o.seed, this.o.stream, index);
    if (this.workers.length === 0) {
      buildBatch(this.o.images, (dir) => this.openMain(dir), this.options(), index, seed).then(
        (b) => {
          this.deliver(index, b);
        },
        (e: unknown) => {
          this.fail(index, e instanceof Error ? e : new Error(String(e)));
        },
      );
    } else {
      this.workers[index % this.workers.length]!.postMessage({ index, seed });
    }
  }

  private fill(): void {
    while (!this.closed && this.requested < this.next_ + Math.max(1, this.o.prefetch)) {
      this.request(this.requested);
      this.requested += 1;
    }
  }

  /** The next batch in index order. */
  async next(): Promise<Batch> {
    this.started ??= this.start();
    await this.started;
    this.fill();
    const i = this.next_;
    const d = this.inflight.get(i)!;
    const b = await d.promise;
    this.inflight.delete(i);
    this.ready.delete(i);
    this.next_ += 1;
    this.fill();
    return b;
  }

  /** Start the workers and fill the queue without consuming (so the first step does not wait). */
  async warmUp(): Promise<void> {
    this.started ??= this.start();
    await this.started;
    this.fill();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}
