import assert from "node:assert/strict";
import { test } from "node:test";
import type { CollectionStatus } from "../../../../api/v1alpha1/collection.js";
import { aJob, aPod, aResource, T0 } from "../testing.js";
import type { JobView, PodCreationFailure, PodView, ReconcileResult } from "../types.js";
import { reconcileCollection } from "./reconcile.js";
import { CollectionReason } from "../../../../api/v1alpha1/reasons.js";

const indexed = { source: { pvc: { claimName: "raw" } }, dataset: "745", indexing: { enabled: true, image: "img" } };
const hash = `sha256:${"c".repeat(64)}`;
const msg = JSON.stringify({
  datasets: 1,
  subjects: 3,
  sessions: 4,
  images: 9,
  modalities: { T1w: 5, T2w: 4 },
  bytes: 12345,
  contentHash: hash,
});
const job = (gen: number, o: Parameters<typeof aJob>[1] = {}): JobView =>
  aJob(`c-index-g${gen}`, { labels: { "ssl3d.io/collection": "c" }, ...o });
const pod = (gen: number, exitCode: number, message: string): PodView =>
  aPod(`c-index-g${gen}`, 0, { phase: exitCode === 0 ? "Succeeded" : "Failed", exitCode, message });

interface Case {
  spec: unknown;
  generation?: number;
  status?: Partial<CollectionStatus>;
  jobs?: JobView[];
  pods?: PodView[];
  podCreationFailures?: PodCreationFailure[];
  want: (r: ReconcileResult<CollectionStatus>) => void;
}
const ready = (r: ReconcileResult<CollectionStatus>) => r.status.conditions?.find((c) => c.type === "Ready");

const cases: Record<string, Case> = {
  "no indexing → Ready with a hash of the source": {
    spec: { source: { pvc: { claimName: "raw" } }, dataset: "Dataset745_OpenMind" },
    want: (r) => {
      assert.equal(r.status.phase, "Ready");
      assert.match(r.status.contentHash ?? "", /^sha256:[0-9a-f]{64}$/);
      assert.equal(r.apply.length, 0);
    },
  },
  "an object-store uri (removed from the API) → ValidationFailed": {
    spec: { source: { uri: "s3://b/r", pvc: { claimName: "x" } }, dataset: "1" },
    want: (r) => {
      assert.equal(r.status.phase, "Failed");
      assert.equal(ready(r)?.reason, CollectionReason.ValidationFailed);
      assert.ok(r.events.some((e) => e.type === "Warning"));
    },
  },
  "a subPath escaping the volume → ValidationFailed": {
    spec: { source: { pvc: { claimName: "x", subPath: "../etc" } }, dataset: "1" },
    want: (r) => {
      assert.match(ready(r)?.message ?? "", /spec\.source\.pvc\.subPath/);
    },
  },
  "indexing → one Job per generation running collection-summary": {
    spec: indexed,
    generation: 3,
    jobs: [job(2, { condition: { type: "Complete" } })],
    want: (r) => {
      assert.equal(r.status.phase, "Indexing");
      assert.equal(r.apply[0]!.metadata.name, "c-index-g3");
      const c = (r.apply[0]!.spec as { template: { spec: { containers: { command: string[] }[] } } }).template.spec
        .containers[0]!;
      assert.deepEqual(c.command, ["ssl3d", "collection-summary", "-d", "745", "--json"]);
      assert.deepEqual(
        r.delete.map((d) => d.name),
        ["c-index-g2"],
      );
    },
  },
  "indexing Job complete → summary and content hash from the termination message": {
    spec: indexed,
    jobs: [job(1, { condition: { type: "Complete" } })],
    pods: [pod(1, 0, msg)],
    want: (r) => {
      assert.equal(r.status.phase, "Ready");
      assert.equal(r.status.contentHash, hash);
      assert.deepEqual(r.status.summary, {
        datasets: 1,
        subjects: 3,
        sessions: 4,
        images: 9,
        modalities: { T1w: 5, T2w: 4 },
        bytes: 12345,
      });
    },
  },
  "the Job controller cannot create the indexing pod (FailedCreate) → Ready=False/PodCreationFailed, Warning": {
    spec: indexed,
    jobs: [job(1)],
    podCreationFailures: [
      { job: "c-index-g1", message: "exceeded quota: q, requested: pods=1", time: "2026-03-01T11:59:00Z" },
    ],
    want: (r) => {
      assert.equal(r.status.phase, "Indexing");
      assert.equal(ready(r)?.reason, CollectionReason.PodCreationFailed);
      assert.match(ready(r)?.message ?? "", /Job c-index-g1 cannot create its pod: exceeded quota/);
      assert.ok(r.events.some((e) => e.type === "Warning" && e.reason === CollectionReason.PodCreationFailed));
    },
  },
  "indexing Job failed → Failed with its message": {
    spec: indexed,
    jobs: [job(1, { condition: { type: "Failed" } })],
    pods: [pod(1, 2, "ConfigError: pretrain_data.json: datasets.x: missing")],
    want: (r) => {
      assert.equal(r.status.phase, "Failed");
      assert.match(ready(r)?.message ?? "", /ConfigError/);
    },
  },
};

for (const [name, c] of Object.entries(cases)) {
  test(`Collection: ${name}`, () => {
    const col = aResource("Collection", "c", c.spec, c.status, c.generation ?? 1);
    c.want(
      reconcileCollection({
        collection: col,
        jobs: c.jobs ?? [],
        pods: c.pods ?? [],
        podCreationFailures: c.podCreationFailures,
        now: T0,
      }),
    );
  });
}
