/**
 * The root pino logger of a runtime process. Logs go to stderr (stdout is reserved for command output such as
 * `inspect --json`); JSON lines when stderr is not a TTY or with `--log-format json`, pretty-printed otherwise.
 */
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";
import { envString } from "../config/settings.js";

export type { Logger };

let root: Logger | undefined;
let jsonForced = false;

export interface LogOptions {
  readonly level?: string;
  /** Force JSON even on a TTY (e.g. `--log-format json`). */
  readonly json?: boolean;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? envString("SSL3D_LOG_LEVEL") ?? "info";
  jsonForced = opts.json === true;
  const usePretty = !jsonForced && process.stderr.isTTY;
  root = usePretty
    ? pino({ level }, pretty({ colorize: true, sync: true, destination: 2, ignore: "pid,hostname" }))
    : pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
  return root;
}

/** The process logger; created with defaults on first use. */
export function log(): Logger {
  return root ?? createLogger();
}

/**
 * Whether output to `stream` is for a person: a TTY, and `--log-format json` not given. Summaries are then printed
 * as sentences; pods, pipes and `--log-format json` get the JSON lines.
 */
export function forPeople(stream: { isTTY?: boolean } = process.stdout): boolean {
  return !jsonForced && stream.isTTY === true;
}
