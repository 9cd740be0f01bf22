/**
 * Opt-in multi-threaded SIMD wasm in Node (`SSL3D_WASM_THREADS=N`; docs/performance.md, "TensorFlow.js on wasm").
 *
 * tfjs-backend-wasm disables threads in Node, and its pthread workers are created from `blob:` URLs, which Node's
 * worker_threads cannot load. This patch (active only while the backend initialises):
 * - sets WASM_HAS_MULTITHREAD_SUPPORT and the thread count;
 * - records the text of Blobs created meanwhile (the worker script and the module factory), so a `blob:` worker
 *   becomes an `eval` worker and the factory is written to a temporary file the worker can `importScripts`;
 * - supplies the bundle-scope names the factory refers to (`require$$N`, `commonjsGlobal`, `_scriptDir`);
 * - unrefs every worker so processes still exit when done.
 * The gain is modest (XNNPACK ops 1.4–1.8×, whole steps little); the default stays single-threaded.
 */
import * as tf from "@tensorflow/tfjs";
import { writeFileSync, mkdtempSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { join } from "node:path";
import workerThreads from "node:worker_threads";

const created: workerThreads.Worker[] = [];

const SHIM = `
;globalThis.commonjsGlobal = globalThis;
globalThis.require$$0 = require("fs"); globalThis.require$$1 = require("path");
globalThis.require$$3 = require("perf_hooks"); globalThis.require$$4 = require("os");
globalThis._scriptDir = undefined;
`;

const TAIL = `
;(function () {
  const orig = self.onmessage;
  const main = require("worker_threads").workerData.ssl3dMain;
  self.onmessage = (e) => {
    if (e.data && e.data.cmd === "load" && typeof e.data.urlOrBlob !== "string") e.data.urlOrBlob = main;
    return orig(e);
  };
})();
`;

/** Run `init` (which must initialise the wasm backend) with the patch applied; returns the thread count. */
export async function withWasmThreads(
  threads: number,
  setThreadsCount: (n: number) => void,
  init: () => Promise<boolean>,
): Promise<boolean> {
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  setThreadsCount(threads);
  const OrigBlob = globalThis.Blob;
  const origCreate = URL.createObjectURL.bind(URL);
  const OrigWorker = workerThreads.Worker;
  const texts = new WeakMap<Blob, string>();
  const urlText = new Map<string, string>();
  let mainPath = "";
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-wasm-"));
  class RecBlob extends OrigBlob {
    constructor(parts: ConstructorParameters<typeof Blob>[0] = [], opts?: ConstructorParameters<typeof Blob>[1]) {
      super(parts, opts);
      const text = [...parts].map((p) => (typeof p === "string" ? p : "")).join("");
      texts.set(this, text);
      if (text.startsWith("var WasmBackendModuleThreadedSimd")) {
        mainPath = join(dir, "factory.js");
        writeFileSync(mainPath, text);
      }
    }
  }
  class PatchedWorker extends OrigWorker {
    constructor(file: string | URL, opts: workerThreads.WorkerOptions = {}) {
      const text = typeof file === "string" ? urlText.get(file) : undefined;
      const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
      if (text !== undefined)
        super(SHIM + text + TAIL, { ...opts, eval: true, execArgv, workerData: { ssl3dMain: mainPath } });
      else super(file, opts);
      created.push(this);
      // pool workers created after start-up (threads beyond the initial pool) must not keep the process alive
      if (initDone) this.unref();
    }
  }
  const g = globalThis as { Blob: typeof Blob };
  g.Blob = RecBlob;
  URL.createObjectURL = (b: Blob): string => {
    const u = origCreate(b);
    const t = texts.get(b);
    if (t !== undefined) urlText.set(u, t);
    return u;
  };
  (workerThreads as { Worker: typeof workerThreads.Worker }).Worker = PatchedWorker;
  // the C++ side caps the XNNPACK pool at logical cores / 2: report enough cores for `threads`
  const origCpus = os.cpus.bind(os);
  const osm = os as { cpus: typeof os.cpus };
  osm.cpus = () => {
    const c = origCpus();
    while (c.length < 2 * threads && c.length > 0) c.push(c[0]!);
    return c;
  };
  let initDone = false;
  try {
    const ok = await init();
    initDone = true;
    unrefWasmWorkers();
    return ok;
  } finally {
    g.Blob = OrigBlob;
    URL.createObjectURL = origCreate;
    (workerThreads as { Worker: typeof workerThreads.Worker }).Worker = OrigWorker;
    osm.cpus = origCpus;
  }
}

/** Let the process exit although pthread workers exist (they are unref'd at creation; this repeats it). */
export function unrefWasmWorkers(): void {
  for (const w of created) w.unref();
}
