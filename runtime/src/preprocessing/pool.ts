/**
 * A small worker_threads pool for per-image jobs (`-np N`). With N <= 1 jobs run in this thread. Errors come back
 * as the runtime's error classes, so a DataError in a worker is still a DataError (exit code 3) here.
 */
import { Worker } from "node:worker_threads";
import { ConfigError, DataError, EnvironmentError, type ErrorContext } from "../errors.js";
import { handlers, type TaskKind, type TaskTypes } from "./tasks.js";

interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly file?: string;
  readonly stack?: string;
}

/** Rebuild an error from a worker; the message already carries the file prefix, so it is not added again. */
function reviveError(e: SerializedError): Error {
  const ctx: ErrorContext = {};
  const cls =
    e.name === "DataError"
      ? DataError
      : e.name === "ConfigError"
        ? ConfigError
        : e.name === "EnvironmentError"
          ? EnvironmentError
          : undefined;
  const err = cls === undefined ? new Error(e.message) : new cls(e.message, ctx);
  if (e.stack !== undefined) err.stack = e.stack;
  if (e.file !== undefined) Object.defineProperty(err, "file", { value: e.file });
  return err;
}

export type Outcome<R> =
  | { readonly index: number; readonly ok: true; readonly result: R }
  | { readonly index: number; readonly ok: false; readonly error: Error };

export interface PoolOptions {
  /** After the first failure, start no new tasks (running ones finish), then resolve. */
  readonly stopOnError?: boolean;
  /** The file a task is about, for errors raised by the pool itself (a worker that died). */
  readonly fileOf?: (index: number) => string;
}

function workerEntry(): { url: URL; execArgv: string[] } {
  const ts = import.meta.url.endsWith(".ts");
  // from sources, the worker needs tsx: resolve it from here, not from the working directory
  return {
    url: new URL(ts ? "./worker.ts" : "./worker.js", import.meta.url),
    execArgv: ts ? ["--import", import.meta.resolve("tsx")] : [],
  };
}

export async function runTasks<K extends TaskKind>(
  kind: K,
  inputs: readonly TaskTypes[K]["input"][],
  np: number,
  onOutcome: (o: Outcome<TaskTypes[K]["output"]>) => void,
  opts: PoolOptions = {},
): Promise<void> {
  let next = 0;
  let failed = false;
  const handler = handlers[kind] as (input: TaskTypes[K]["input"]) => Promise<TaskTypes[K]["output"]>;
  if (np <= 1 || inputs.length <= 1) {
    for (; next < inputs.length; next++) {
      if (failed && opts.stopOnError === true) break;
      const index = next;
      try {
        onOutcome({ index, ok: true, result: await handler(inputs[index]!) });
      } catch (err) {
        failed = true;
        onOutcome({ index, ok: false, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
    return;
  }
  const { url, execArgv } = workerEntry();
  const count = Math.min(np, inputs.length);
  await new Promise<void>((resolve, reject) => {
    let running = 0;
    let settled = false;
    const workers = new Set<Worker>();
    const inflight = new Map<Worker, number>();
    const lastError = new Map<Worker, string>();
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      for (const w of workers) void w.terminate();
      if (err === undefined) resolve();
      else reject(err);
    };
    const report = (o: Outcome<TaskTypes[K]["output"]>): boolean => {
      try {
        onOutcome(o);
        return true;
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
        return false;
      }
    };
    const dispatch = (w: Worker): void => {
      if (settled) return;
      if (next >= inputs.length || (failed && opts.stopOnError === true)) {
        if (running === 0) finish();
        return;
      }
      const index = next++;
      running++;
      inflight.set(w, index);
      w.postMessage({ id: index, kind, input: inputs[index] });
    };
    const spawnWorker = (): void => {
      const w = new Worker(url, { execArgv });
      workers.add(w);
      w.on("message", (msg: { id: number; ok: boolean; result?: TaskTypes[K]["output"]; error?: SerializedError }) => {
        running--;
        inflight.delete(w);
        if (!msg.ok) failed = true;
        const ok = report(
          msg.ok
            ? { index: msg.id, ok: true, result: msg.result! }
            : { index: msg.id, ok: false, error: reviveError(msg.error!) },
        );
        if (ok) dispatch(w);
      });
      w.on("error", (err) => {
        lastError.set(w, err.message); // followed by "exit", where the task is reported
      });
      w.on("exit", (code) => {
        workers.delete(w);
        if (settled) return;
        const index = inflight.get(w);
        inflight.delete(w);
        if (index === undefined) return;
        // the worker died with a task (e.g. out of memory): that image fails, a fresh worker takes over
        running--;
        failed = true;
        const why = lastError.get(w);
        const msg =
          why === undefined
            ? `worker thread exited with code ${code} while processing this image (out of memory?)`
            : `worker thread failed: ${why}`;
        const ok = report({ index, ok: false, error: new DataError(msg, { file: opts.fileOf?.(index) }) });
        if (!ok) return;
        if (next < inputs.length && !(opts.stopOnError === true)) {
          spawnWorker();
        } else if (running === 0) finish();
      });
      dispatch(w);
    };
    for (let i = 0; i < count; i++) spawnWorker();
  });
}
