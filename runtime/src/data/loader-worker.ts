/** Worker thread of the data loader: builds batches on request and transfers them back. */
import { parentPort, workerData } from "node:worker_threads";
import { buildBatch, type BatchOptions } from "./batch.js";
import type { TrainingImage, VolumeReader, VolumeReaderModule } from "./source.js";

interface Init {
  images: TrainingImage[];
  options: BatchOptions;
  readerModule: string;
}

const init = workerData as Init;
const port = parentPort!;
const readerMod = (await import(init.readerModule)) as VolumeReaderModule;
const cache = new Map<string, Promise<VolumeReader>>();
const open = (dir: string): Promise<VolumeReader> => {
  let r = cache.get(dir);
  if (r === undefined) {
    if (cache.size >= 256) cache.delete(cache.keys().next().value!);
    r = readerMod.openZarrVolume(dir);
    cache.set(dir, r);
  }
  return r;
};

let chain: Promise<void> = Promise.resolve();
port.on("message", (msg: { index: number; seed: number }) => {
  chain = chain.then(async () => {
    try {
      const b = await buildBatch(init.images, open, init.options, msg.index, msg.seed);
      const transfer = [b.data.buffer as ArrayBuffer];
      if (b.anon !== undefined) transfer.push(b.anon.buffer as ArrayBuffer);
      if (b.target !== undefined) transfer.push(b.target.buffer as ArrayBuffer);
      if (b.aux !== undefined) transfer.push(b.aux.data.buffer as ArrayBuffer);
      port.postMessage({ ok: true, batch: b }, transfer);
    } catch (err) {
      port.postMessage({
        ok: false,
        index: msg.index,
        message: err instanceof Error ? err.message : String(err),
        name: err instanceof Error ? err.name : "Error",
      });
    }
  });
});
port.postMessage({ ready: true });
