import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { WorkQueue } from "./work-queue.js";

test("dedupes keys that are queued but not yet processing", async () => {
  const seen: string[] = [];
  const q = new WorkQueue({ name: "t", concurrency: 1 }, (k) => {
    seen.push(k);
    return Promise.resolve();
  });
  q.add("a");
  q.add("a");
  q.add("b");
  q.add("a");
  q.start();
  await q.idle();
  assert.deepEqual(seen, ["a", "b"]);
});

test("never processes one key concurrently; a re-add during processing runs once afterwards", async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const q = new WorkQueue({ name: "t", concurrency: 4 }, async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    runs++;
    await sleep(20);
    active--;
  });
  q.start();
  q.add("k");
  await sleep(5);
  q.add("k");
  q.add("k");
  await sleep(5);
  await q.idle();
  await sleep(30);
  await q.idle();
  assert.equal(maxActive, 1);
  assert.equal(runs, 2);
});

test("different keys run in parallel up to the concurrency", async () => {
  let active = 0;
  let maxActive = 0;
  const q = new WorkQueue({ name: "t", concurrency: 3 }, async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    await sleep(20);
    active--;
  });
  q.start();
  for (const k of ["a", "b", "c", "d", "e"]) q.add(k);
  await q.idle();
  assert.equal(maxActive, 3);
});

test("rate-limited retries back off exponentially per key and forget resets", () => {
  const q = new WorkQueue({ name: "t", baseDelayMs: 100, maxDelayMs: 1000 }, () => Promise.resolve());
  assert.deepEqual(
    [q.addRateLimited("x"), q.addRateLimited("x"), q.addRateLimited("x"), q.addRateLimited("x"), q.addRateLimited("x")],
    [100, 200, 400, 800, 1000],
  );
  assert.equal(q.addRateLimited("y"), 100);
  q.forget("x");
  assert.equal(q.addRateLimited("x"), 100);
  q.stop();
});

test("addAfter delivers later, and the earliest pending delay wins", async () => {
  const seen: [string, number][] = [];
  const t0 = Date.now();
  const q = new WorkQueue({ name: "t" }, (k) => {
    seen.push([k, Date.now() - t0]);
    return Promise.resolve();
  });
  q.start();
  q.addAfter("k", 500);
  q.addAfter("k", 40);
  q.addAfter("k", 300);
  await sleep(150);
  assert.equal(seen.length, 1);
  assert.ok(seen[0]![1] >= 35);
  await sleep(500);
  assert.equal(seen.length, 1, "the later timers were replaced, not added");
  q.stop();
});
