/**
 * Named errors of the runtime. Every error a user can cause carries what is needed to fix it: the file, the
 * field (a JSON path such as `datasets.ds000001.subjects.sub-01.sessions.ses-1.images[2].image_path`) and what
 * is wrong. The CLI prints `message` as one line and maps the class to an exit code:
 * 0 ok, 1 other/internal, 2 usage or configuration, 3 input data, 4 training diverged, 5 a peer rank failed.
 */
export interface ErrorContext {
  /** File the problem was found in (absolute or as given by the user). */
  readonly file?: string | undefined;
  /** JSON path or header field inside the file. */
  readonly field?: string | undefined;
  readonly cause?: unknown;
}

export abstract class Ssl3dError extends Error {
  abstract readonly exitCode: number;
  readonly file: string | undefined;
  readonly field: string | undefined;

  constructor(message: string, ctx: ErrorContext = {}) {
    super(formatMessage(message, ctx), ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = new.target.name;
    this.file = ctx.file;
    this.field = ctx.field;
  }
}

function formatMessage(message: string, ctx: ErrorContext): string {
  const where = [ctx.file, ctx.field].filter((s): s is string => s !== undefined && s !== "").join(": ");
  return where === "" ? message : `${where}: ${message}`;
}

/** Bad command line, bad configuration, invalid JSON/YAML documents. Exit code 2. */
export class ConfigError extends Ssl3dError {
  readonly exitCode = 2;
}

/** Input data that cannot be used: malformed NIfTI, truncated files, NaN voxels. Exit code 3. */
export class DataError extends Ssl3dError {
  readonly exitCode = 3;
}

/** A precondition of the environment is not met (missing env var, missing stage output). Exit code 2. */
export class EnvironmentError extends Ssl3dError {
  readonly exitCode = 2;
}

/** Training diverged or a numerical guard tripped. Exit code 4. */
export class TrainingError extends Ssl3dError {
  readonly exitCode = 4;
}

/** A peer process of a data-parallel run failed or could not be reached. Exit code 5. */
export class DistributedError extends Ssl3dError {
  readonly exitCode = 5;
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof Ssl3dError) return err.exitCode;
  return fileSystemError(err) === undefined ? 1 : 2;
}

/** One line, no stack: what the CLI prints and what goes to the termination log. */
export function oneLine(err: unknown): string {
  const sys =
    err instanceof Ssl3dError
      ? undefined
      : fileSystemError(
          err,
          undefined,
          (err as NodeJS.ErrnoException | null | undefined)?.syscall ?? "system call failed",
        );
  if (sys !== undefined) return sys.message;
  if (err instanceof Error) return err.message.replace(/\s*\n\s*/g, " ");
  return String(err);
}

/** What a system error code means for the user (the codes a full, read-only or busy machine produces). */
const SYSTEM_ERRORS: Readonly<Record<string, string>> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "the file system is read-only",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  EADDRINUSE: "the address is already in use",
  EADDRNOTAVAIL: "the address is not available on this machine",
  EIO: "input/output error of the device",
};

/**
 * An EnvironmentError (exit code 2, one line naming `file`) for a system error of the environment (disk full,
 * read-only, no permission, port in use); undefined for anything else (ENOENT and friends stay with the caller).
 */
export function fileSystemError(err: unknown, file?: string, what = "cannot write"): EnvironmentError | undefined {
  if (err instanceof Ssl3dError) return undefined;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== "string") return undefined;
  const meaning = SYSTEM_ERRORS[code];
  if (meaning === undefined) return undefined;
  const target = file ?? (err as NodeJS.ErrnoException).path;
  return new EnvironmentError(`${what}: ${meaning} (${code})`, { file: target, cause: err });
}
