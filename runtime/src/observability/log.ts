/**
 * The root pino logger of a runtime process. Logs go to stderr (stdout is reserved for command output such as
 * `inspect --json`); JSON lines when stderr is not a TTY, pretty-printed when it is.
 */
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

let root: Logger | undefined;

export interface LogOptions {
  readonly level?: string;
  /** Force JSON even on a TTY (e.g. `--log-format json`). */
  readonly json?: boolean;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.SSL3D_LOG_LEVEL ?? "info";
  const usePretty = opts.json !== true && process.stderr.isTTY;
  root = usePretty
    ? pino({ level }, pretty({ colorize: true, sync: true, destination: 2, ignore: "pid,hostname" }))
    : pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
  return root;
}

/** The process logger; created with defaults on first use. */
export function log(): Logger {
  return root ?? createLogger();
}
