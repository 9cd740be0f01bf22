import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { ProgressPoller } from "./progress-poller.js";

const METRICS = "pretrain_global_step 42\npretrain_epoch 3\npretrain_train_loss 0.5\n";

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test("a rank 0 that never answers holds one scrape slot until its timeout and delays no other run", async () => {
  const hung: AbortSignal[] = [];
  const enqueued: string[] = [];
  const poller = new ProgressPoller({
    log: pino({ level: "silent" }),
    concurrency: 2,
    timeoutMs: 200,
    tickMs: 10,
    onSample: (k) => enqueued.push(k),
    // The hanging endpoint ignores its abort signal: the poller must stop waiting on its own.
    scrape: (url, signal) => {
      if (url.includes("hang")) {
        hung.push(signal);
        return new Promise<string>(() => undefined);
      }
      return Promise.resolve(METRICS);
    },
  });
  poller.start();
  try {
    poller.track("ns/stuck", { attempt: 1, url: "http://hang/metrics", intervalMs: 20 });
    poller.track("ns/ok", { attempt: 2, url: "http://ok/metrics", intervalMs: 20 });
    await until("samples of the healthy run", () => enqueued.filter((k) => k === "ns/ok").length >= 3);
    assert.deepEqual(poller.latest("ns/ok"), { ...poller.latest("ns/ok"), attempt: 2, step: 42, epoch: 3, loss: 0.5 });
    assert.equal(poller.latest("ns/stuck"), undefined);
    assert.ok(poller.busy <= 2);
    // At most one scrape of the stuck run in flight; after the timeout it is aborted and tried again.
    await until("a retry of the stuck run after its timeout", () => hung.length >= 2, 3000);
    assert.equal(hung[0]!.aborted, true);
  } finally {
    poller.stop();
  }
});

test("a sample that arrives after the run moved to a new attempt is dropped", async () => {
  let release: (s: string) => void = () => undefined;
  const poller = new ProgressPoller({
    log: pino({ level: "silent" }),
    timeoutMs: 5000,
    tickMs: 10,
    onSample: () => undefined,
    scrape: (url) => (url.includes("old") ? new Promise<string>((r) => (release = r)) : Promise.resolve(METRICS)),
  });
  poller.start();
  try {
    poller.track("ns/run", { attempt: 1, url: "http://old/metrics", intervalMs: 60_000 });
    await sleep(30);
    poller.track("ns/run", { attempt: 2, url: "http://new/metrics", intervalMs: 60_000 });
    await until("attempt 2's sample", () => poller.latest("ns/run")?.attempt === 2);
    release(METRICS);
    await sleep(30);
    assert.equal(poller.latest("ns/run")?.attempt, 2);
    poller.forget("ns/run");
    assert.equal(poller.latest("ns/run"), undefined);
  } finally {
    poller.stop();
  }
});
