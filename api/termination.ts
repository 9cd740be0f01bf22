/**
 * What a runtime process reports when it ends: the exit code classes (runtime/src/errors.ts) and the JSON line it
 * writes to its termination message (`$SSL3D_TERMINATION_LOG`, in pods /dev/termination-log) when a command fails.
 * The operator turns both into decisions (docs/decisions/0062-failure-policy.md) and keeps them in status.
 */
import { z } from "zod";

export const EXIT = {
  ok: 0,
  internal: 1,
  /** Bad command line, configuration or environment: the same on every attempt. */
  config: 2,
  /** Input data that cannot be used: the same on every attempt. */
  data: 3,
  /** Training diverged (non-finite guard tripped). */
  diverged: 4,
  /** A peer rank failed or could not be reached: another rank's failure, worth a restart. */
  peer: 5,
} as const;

/** Reasons a failure message can name beyond the error class (stable, UpperCamelCase: they become condition reasons). */
export const FAILURE_REASONS = [
  "ConfigError",
  "EnvironmentError",
  "DataError",
  "TrainingError",
  "DistributedError",
  "InternalError",
  "CheckpointOwnedByAnotherRun",
] as const;

export const FailureMessageSchema = z
  .object({
    exitCode: z.number().int().min(0).max(255),
    reason: z.enum(FAILURE_REASONS),
    message: z.string(),
  })
  .describe("The termination message of a failed `ssl3d` command.");
export type FailureMessage = z.infer<typeof FailureMessageSchema>;

/** One line, at most 4000 bytes (the kubelet keeps 4096 per container). */
export function formatFailureMessage(f: FailureMessage): string {
  const line = JSON.stringify(f);
  if (line.length <= 4000) return line;
  return JSON.stringify({ ...f, message: `${f.message.slice(0, 4000 - line.length + f.message.length - 2)}…` });
}

export type Decision = "Fail" | "Restart";

/**
 * The failure policy of a training attempt from the exit codes of its ranks: configuration (2) and data (3)
 * errors fail the run at once (they repeat on every attempt), a diverged run (4) fails (restarting from the
 * checkpoint before the divergence reproduces it), a peer failure (5), a signal (128+n) and anything else restart
 * within runPolicy.maxRestarts. The most specific rank decides: a 2/3/4 anywhere beats the 5s and 143s of the ranks
 * that were stopped because of it.
 */
export function decideOnExitCodes(codes: readonly number[]): { decision: Decision; exitCode: number | undefined } {
  for (const c of [EXIT.config, EXIT.data, EXIT.diverged])
    if (codes.includes(c)) return { decision: "Fail", exitCode: c };
  const first = codes.find((c) => c !== 0 && c !== EXIT.peer && c < 128) ?? codes.find((c) => c !== 0);
  return { decision: "Restart", exitCode: first };
}

/** Parses a termination message (last non-empty line that is a JSON object). */
export function parseTerminationJson<T>(
  message: string | undefined,
  schema: z.ZodType<T>,
): { ok: true; value: T } | { ok: false; error: string } {
  if (message === undefined || message.trim() === "") return { ok: false, error: "the termination message is empty" };
  const lines = message
    .trim()
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("{"));
  const last = lines.at(-1);
  if (last === undefined) return { ok: false, error: `the termination message is not JSON: ${truncate(message, 200)}` };
  let json: unknown;
  try {
    json = JSON.parse(last);
  } catch {
    return { ok: false, error: `the termination message is not JSON: ${truncate(last, 200)}` };
  }
  const r = schema.safeParse(json);
  if (!r.success)
    return {
      ok: false,
      error: `the termination message does not match the contract: ${z.prettifyError(r.error).replace(/\n/g, "; ")}`,
    };
  return { ok: true, value: r.data };
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}
