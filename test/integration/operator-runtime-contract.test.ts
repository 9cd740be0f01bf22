/**
 * The operator ↔ runtime contract, end to end on real output: the runtime CLI (`ssl3d collection-summary --json`,
 * `ssl3d plan-and-preprocess`) writes its termination log on a phantom collection, and the operator's reconcilers read
 * exactly those bytes as the container termination message.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { reconcileCollection } from "../../operator/src/controllers/collection/reconcile.js";
import { reconcilePlan } from "../../operator/src/controllers/plan/reconcile.js";
import { aJob, aPod, aResource, T0 } from "../../operator/src/controllers/testing.js";

let dir: string;
let env: NodeJS.ProcessEnv;

function ssl3d(args: string[], termLog: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ["bin/ssl3d.mjs", ...args], {
    env: { ...env, SSL3D_TERMINATION_LOG: termLog },
    encoding: "utf8",
    timeout: 120_000,
  });
  return { status: r.status, stderr: r.stderr };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "ssl3d-contract-"));
  env = {
    ...process.env,
    nnssl_raw: join(dir, "nnssl_raw"),
    nnssl_preprocessed: join(dir, "nnssl_preprocessed"),
    nnssl_results: join(dir, "nnssl_results"),
  };
  const demo = spawnSync(process.execPath, ["bin/ssl3d.mjs", "demo", "--quick", "--out", dir], {
    env,
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(demo.status, 0, demo.stderr);
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function terminated(job: string, exitCode: number, message: string) {
  return aPod(job, 0, { phase: exitCode === 0 ? "Succeeded" : "Failed", exitCode, message });
}

test("collection-summary's termination log becomes the Collection's summary and content hash", () => {
  const log = join(dir, "summary.log");
  const r = ssl3d(["collection-summary", "-d", "990", "--json"], log);
  assert.equal(r.status, 0, r.stderr);
  const message = readFileSync(log, "utf8");
  const col = aResource("Collection", "c", {
    source: { pvc: { claimName: "raw" } },
    dataset: "990",
    indexing: { enabled: true, image: "img" },
  });
  const out = reconcileCollection({
    collection: col,
    jobs: [aJob("c-index-g1", { condition: { type: "Complete" } })],
    pods: [terminated("c-index-g1", 0, message)],
    now: T0,
  });
  assert.equal(out.status.phase, "Ready");
  assert.equal(out.status.summary?.images, 4);
  assert.equal(out.status.summary.subjects, 2);
  assert.match(out.status.contentHash ?? "", /^sha256:[0-9a-f]{64}$/);
});

test("plan-and-preprocess's termination log becomes the Plan's outputs; its error line becomes the Failed message", () => {
  const collection = aResource(
    "Collection",
    "col",
    { source: { pvc: { claimName: "raw" } }, dataset: "990" },
    {
      phase: "Ready",
      contentHash: "sha256:x",
      conditions: [
        { type: "Ready", status: "True", reason: "Validated", message: "", lastTransitionTime: "2026-01-01T00:00:00Z" },
      ],
    },
  );
  const planSpec = {
    collectionRef: { name: "col" },
    configurations: ["onemmiso"],
    preprocess: { image: "img" },
    output: { pvc: { claimName: "prep" } },
  };
  const started = { phase: "Running", jobName: "p-prep", dataset: "990", collectionHash: "sha256:x" };

  const okLog = join(dir, "prep.log");
  const r = ssl3d(["plan-and-preprocess", "-d", "990", "-c", "onemmiso"], okLog);
  assert.equal(r.status, 0, r.stderr);
  const ok = reconcilePlan({
    plan: aResource("Plan", "p", planSpec, started),
    collection,
    jobs: [aJob("p-prep", { condition: { type: "Complete" } })],
    pods: [terminated("p-prep", 0, readFileSync(okLog, "utf8"))],
    now: T0,
  });
  assert.equal(ok.status.phase, "Ready");
  assert.equal(ok.status.outputs?.valid, 4);
  assert.deepEqual(ok.status.outputs.configurations, ["onemmiso"]);

  const badLog = join(dir, "bad.log");
  const bad = ssl3d(["plan-and-preprocess", "-d", "991", "-c", "onemmiso"], badLog);
  assert.notEqual(bad.status, 0);
  const message = readFileSync(badLog, "utf8");
  const failed = reconcilePlan({
    plan: aResource("Plan", "p", planSpec, started),
    collection,
    jobs: [aJob("p-prep", { condition: { type: "Failed", reason: "BackoffLimitExceeded" } })],
    pods: [terminated("p-prep", bad.status ?? 1, message)],
    now: T0,
  });
  assert.equal(failed.status.phase, "Failed");
  const cond = failed.status.conditions?.find((c) => c.type === "Failed");
  // the runtime's failure message (api/termination.ts) is shown as its sentence
  const written = JSON.parse(message) as { exitCode: number; reason: string; message: string };
  assert.equal(written.exitCode, bad.status);
  assert.equal(cond?.message, written.message);
  assert.match(cond.message, /991/);
});
