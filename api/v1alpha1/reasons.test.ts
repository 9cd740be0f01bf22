/**
 * The condition and Event reasons are API: this pins their values (a rename must change this list, docs/operator.md
 * and the alert rules on purpose), and checks that the reconcilers name no reason outside these objects.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { CollectionReason, PlanReason, PretrainRunReason } from "./reasons.js";

test("reason values are stable and equal their names", () => {
  assert.deepEqual(Object.values(CollectionReason), [
    "ValidationFailed",
    "Validated",
    "Indexing",
    "PodCreationFailed",
    "IndexingFailed",
    "WaitingForSummary",
    "InvalidSummary",
    "Indexed",
  ]);
  assert.deepEqual(Object.values(PlanReason), [
    "ValidationFailed",
    "CollectionChanged",
    "CollectionDeleted",
    "UpToDate",
    "WaitingForCollection",
    "WaitingForAdmission",
    "Preprocessing",
    "PodCreationFailed",
    "PreprocessingFailed",
    "WaitingForSummary",
    "InvalidSummary",
    "Preprocessed",
  ]);
  assert.deepEqual(Object.values(PretrainRunReason), [
    "ValidationFailed",
    "Validated",
    "PlanNotReady",
    "ChildRefused",
    "ChildrenApplied",
    "JobCreated",
    "WaitingForAdmission",
    "Admitted",
    "PodsNotReady",
    "AllPodsReady",
    "Restarted",
    "Suspended",
    "Evicted",
    "WorkloadFinished",
    "Resumed",
    "Completed",
    "Failed",
    "DeadlineExceeded",
    "StartupDeadlineExceeded",
    "BackoffLimitExceeded",
    "Preempted",
    "RankFailed",
    "ConfigError",
    "DataError",
    "TrainingDiverged",
    "CheckpointOwnedByAnotherRun",
    "ImagePullBackOff",
    "CreateContainerConfigError",
    "Unschedulable",
    "PodCreationFailed",
  ]);
  for (const o of [CollectionReason, PlanReason, PretrainRunReason]) {
    for (const [k, v] of Object.entries(o)) {
      assert.equal(v, k);
      assert.match(v, /^[A-Z][A-Za-z]*$/);
    }
  }
});

test("docs/operator.md lists the reasons of each kind", () => {
  const doc = readFileSync(join(import.meta.dirname, "..", "..", "docs", "operator.md"), "utf8");
  for (const [kind, reasons] of [
    ["Collection", CollectionReason],
    ["Plan", PlanReason],
    ["PretrainRun", PretrainRunReason],
  ] as const) {
    // the first cell of a Markdown table row, whatever padding the formatter aligned it with
    const row = doc.split("\n").find((l) => l.startsWith("|") && l.split("|")[1]?.trim() === kind);
    assert.ok(row !== undefined, `docs/operator.md: no reasons row for ${kind}`);
    const listed = [...row.matchAll(/`(\w+)`/g)].map((m) => m[1]);
    assert.deepEqual(listed, Object.values(reasons), `docs/operator.md, ${kind}`);
  }
});

test("the reconcilers write reasons only through the constants", () => {
  const dir = join(import.meta.dirname, "..", "..", "operator", "src", "controllers");
  const files = readdirSync(dir, { recursive: true, encoding: "utf8" }).filter(
    (f) => f.endsWith(".ts") && !f.endsWith(".test.ts"),
  );
  assert.ok(files.length >= 5, files.join(", "));
  // set(type, status, "Reason", ...) and `reason: "Reason"` with a string literal.
  const literal = /\bset(?:IfPresent)?\(\s*"\w+",\s*"(?:True|False)",\s*"|\breason: "/;
  for (const f of files) {
    readFileSync(join(dir, f), "utf8")
      .split("\n")
      .forEach((line, i) => {
        assert.doesNotMatch(line, literal, `${f}:${i + 1}`);
      });
  }
});
