import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, exitCodeOf } from "../errors.js";
import { CheckpointOwnedByAnotherRunError, claimCheckpointFolder, RUN_MARKER } from "./run-marker.js";

test("the first run claims the folder; the same run (any attempt, any rank) may continue; another run is refused", async () => {
  const dir = join(mkdtempSync(join(tmpdir(), "ssl3d-marker-")), "run", "checkpoints");
  await claimCheckpointFolder(dir, { run: "a", uid: "1" }, false);
  assert.throws(() => readFileSync(join(dir, RUN_MARKER)), /ENOENT/, "only the writer (rank 0) writes the marker");
  await claimCheckpointFolder(dir, { run: "a", uid: "1" }, true);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, RUN_MARKER), "utf8")), { run: "a", uid: "1" });
  await claimCheckpointFolder(dir, { run: "a", uid: "1" }, true);
  await claimCheckpointFolder(dir, { run: "a", uid: "1" }, false);
  // same name, new uid: a re-created run must not resume the old one's checkpoints
  await assert.rejects(claimCheckpointFolder(dir, { run: "a", uid: "2" }, false), (err: unknown) => {
    assert.ok(err instanceof CheckpointOwnedByAnotherRunError);
    assert.equal(err.reason, "CheckpointOwnedByAnotherRun");
    assert.equal(exitCodeOf(err), 2);
    assert.match(err.message, /belongs to run a \(uid 1\), not to a \(uid 2\)/);
    assert.equal(err.file, join(dir, RUN_MARKER));
    return true;
  });
  // no identity (a plain `ssl3d train`): no check
  await claimCheckpointFolder(dir, { run: "", uid: "" }, true);
});

test("a damaged marker is a configuration error, not silently overwritten", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-marker-"));
  writeFileSync(join(dir, RUN_MARKER), "{not json");
  await assert.rejects(
    claimCheckpointFolder(dir, { run: "a", uid: "1" }, true),
    (err: unknown) => err instanceof ConfigError && /not valid JSON/.test(err.message),
  );
  assert.equal(readFileSync(join(dir, RUN_MARKER), "utf8"), "{not json");
});
