/**
 * The run-identity marker: `ssl3d-run.json` in the checkpoint folder records which run (name and uid) owns the
 * checkpoints. A run that finds another run's marker refuses to start, so it can neither resume from nor overwrite
 * someone else's checkpoints (two PretrainRuns pointed at one folder, or a run re-created under the same name).
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../errors.js";
import { writeJsonAtomic } from "../io/atomic.js";

export const RUN_MARKER = "ssl3d-run.json";

/** Exit code 2 (configuration); the termination message names reason CheckpointOwnedByAnotherRun. */
export class CheckpointOwnedByAnotherRunError extends ConfigError {
  readonly reason = "CheckpointOwnedByAnotherRun";
}

export interface RunMarker {
  run: string;
  uid: string;
}

function readMarker(file: string): RunMarker | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const o = JSON.parse(readFileSync(file, "utf8")) as Partial<RunMarker>;
    if (typeof o.run === "string" && typeof o.uid === "string") return { run: o.run, uid: o.uid };
  } catch {
    // fall through
  }
  throw new ConfigError(
    "the run-identity marker is not valid JSON with run and uid; remove it only if these checkpoints are this run's",
    { file },
  );
}

/**
 * Checks (every rank) and records (the writer, rank 0) the marker. No identity (uid empty: a plain `ssl3d train`)
 * skips the check.
 */
export async function claimCheckpointFolder(dir: string, me: RunMarker, writer: boolean): Promise<void> {
  if (me.uid === "") return;
  const file = join(dir, RUN_MARKER);
  const owner = readMarker(file);
  if (owner !== undefined && owner.uid !== me.uid) {
    throw new CheckpointOwnedByAnotherRunError(
      `the checkpoint folder belongs to run ${owner.run} (uid ${owner.uid}), not to ${me.run} (uid ${me.uid}); give this run its own folder (storage.checkpoints.folder) instead of resuming from another run's checkpoints`,
      { file },
    );
  }
  if (owner === undefined && writer) {
    await mkdir(dir, { recursive: true });
    await writeJsonAtomic(file, me);
  }
}
