import assert from "node:assert/strict";
import { test } from "node:test";
import type { makeInformer } from "@kubernetes/client-node";
import pino from "pino";
import type { KubeClient } from "./client.js";
import { SupervisedInformer } from "./informer.js";

type Obj = { metadata: { name: string; namespace: string } };

/** A stand-in for client-node's informer whose initial list completes when the test says so. */
class FakeInformer {
  private handlers = new Map<string, ((o: Obj) => void)[]>();
  private items: Obj[] = [];
  release: () => void = () => undefined;
  stopped = false;
  constructor(private readonly next: Obj[]) {}
  on(ev: string, cb: (o: Obj) => void): void {
    this.handlers.set(ev, [...(this.handlers.get(ev) ?? []), cb]);
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => {
      this.release = r;
    });
    this.items = this.next;
    for (const o of this.items) for (const h of this.handlers.get("add") ?? []) h(o);
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
  list(): Obj[] {
    return this.items;
  }
  get(name: string): Obj | undefined {
    return this.items.find((o) => o.metadata.name === name);
  }
}

test("a resync keeps serving the old cache until the new list has arrived, then reports vanished objects as deleted", async () => {
  const a = { metadata: { name: "a", namespace: "n" } };
  const b = { metadata: { name: "b", namespace: "n" } };
  const fakes = [new FakeInformer([a, b]), new FakeInformer([a])];
  let i = 0;
  const factory = (() => fakes[i++]!) as unknown as typeof makeInformer;
  const inf = new SupervisedInformer(
    { kc: {} } as unknown as KubeClient,
    { apiVersion: "v1", kind: "Pod", factory },
    pino({ level: "silent" }),
  );
  const deleted: string[] = [];
  inf.on((t, o) => {
    if (t === "delete") deleted.push(o.metadata.name);
  });
  const started = inf.start();
  await Promise.resolve();
  fakes[0]!.release();
  await started;
  assert.deepEqual(
    inf.list().map((o) => o.metadata.name),
    ["a", "b"],
  );
  const resync = inf.resync();
  await new Promise((r) => setImmediate(r));
  // the new informer is still listing: the cache is the old one, not empty
  assert.deepEqual(
    inf.list().map((o) => o.metadata.name),
    ["a", "b"],
  );
  assert.equal(inf.get("b", "n")?.metadata.name, "b");
  assert.equal(fakes[0]!.stopped, false);
  fakes[1]!.release();
  await resync;
  assert.deepEqual(
    inf.list().map((o) => o.metadata.name),
    ["a"],
  );
  assert.equal(fakes[0]!.stopped, true);
  assert.deepEqual(deleted, ["b"]);
  await inf.stop();
});
