/**
 * `ssl3d` entry point. Parses the command line, runs one sub-command, and turns every failure into one line on
 * stderr (the stack only with `--verbose`), a non-zero exit code, and the same line in the termination log when
 * running in a Kubernetes pod (`/dev/termination-log`, or `$SSL3D_TERMINATION_LOG`).
 */
import { Command, CommanderError } from "commander";
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { FAILURE_REASONS, formatFailureMessage, type FailureMessage } from "../../../api/termination.js";
import { exitCodeOf, oneLine, Ssl3dError } from "../errors.js";
import { createLogger } from "../observability/log.js";
import type { CliCommand } from "./command.js";
import { watchParent } from "../local/parent-watch.js";
import { commands } from "./commands/index.js";
import { terminationLogPath } from "./termination-log.js";

export const VERSION = "0.2.0";

/** Map an executable name (`nnssl_train`) to the sub-command it runs, if it is an alias. */
export function commandForAlias(invokedAs: string, cmds: readonly CliCommand[] = commands): CliCommand | undefined {
  const name = basename(invokedAs).replace(/\.(m?js|ts)$/, "");
  return cmds.find((c) => c.aliases?.includes(name));
}

/** Rewrite nnssl-style flags (`-tr X`, `-np=4`) into the command's long options. */
export function translateLegacyFlags(args: readonly string[], cmd: CliCommand | undefined): string[] {
  const table = cmd?.legacyFlags;
  if (table === undefined) return [...args];
  return args.map((a) => {
    const eq = a.indexOf("=");
    const flag = eq === -1 ? a : a.slice(0, eq);
    const mapped = table[flag];
    if (mapped === undefined) return a;
    return eq === -1 ? mapped : `${mapped}${a.slice(eq)}`;
  });
}

export function buildProgram(cmds: readonly CliCommand[] = commands): Command {
  const program = new Command("ssl3d")
    .description("Self-supervised pre-training of 3D medical-image models (nnssl-compatible).")
    .version(VERSION)
    .option("--verbose", "print stack traces and debug logs")
    .option("--log-format <format>", "log format on stderr: pretty (TTY default) or json")
    .showHelpAfterError()
    .exitOverride();
  program.hook("preAction", (thisCommand) => {
    const o = thisCommand.opts<{ verbose?: boolean; logFormat?: string }>();
    createLogger({ ...(o.verbose === true ? { level: "debug" } : {}), json: o.logFormat === "json" });
  });
  for (const c of cmds) c.register(program);
  return program;
}

/** The termination message's reason (api/termination.ts FAILURE_REASONS) of an error. */
function failureReason(err: unknown): FailureMessage["reason"] {
  const explicit = (err as { reason?: unknown } | null)?.reason;
  if (typeof explicit === "string" && (FAILURE_REASONS as readonly string[]).includes(explicit))
    return explicit as FailureMessage["reason"];
  const name = err instanceof Ssl3dError ? err.name : "";
  return (FAILURE_REASONS as readonly string[]).includes(name) ? (name as FailureMessage["reason"]) : "InternalError";
}

function writeTerminationLog(line: string): void {
  const target = terminationLogPath();
  if (target === undefined) return;
  try {
    writeFileSync(target, line.slice(0, 4000));
  } catch {
    // best effort: the log line on stderr is the primary channel
  }
}

/** Global options that take a value (`--log-format json`): their value is not the sub-command. */
const GLOBAL_VALUE_OPTIONS = new Set(["--log-format"]);

/**
 * Index of the sub-command in `args`: the first word that is neither a global option nor a global option's value,
 * so `ssl3d --verbose plan-and-preprocess -d 1 -np 2` finds `plan-and-preprocess` (and its nnssl flags are
 * translated) like `ssl3d plan-and-preprocess --verbose -d 1 -np 2`.
 */
export function commandIndex(args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith("-")) return i;
    if (GLOBAL_VALUE_OPTIONS.has(a)) i++;
  }
  return -1;
}

/** Run the CLI; resolves to the process exit code. */
export async function main(argv: readonly string[], invokedAs = "ssl3d"): Promise<number> {
  // `ssl3d ... | head`: a closed stdout ends the process quietly instead of crashing with EPIPE
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  watchParent();
  const alias = commandForAlias(invokedAs);
  const rawArgs = alias === undefined ? [...argv] : [alias.name, ...argv];
  const at = alias === undefined ? commandIndex(rawArgs) : 0;
  const sub = alias ?? commands.find((c) => c.name === rawArgs[at]);
  const args = translateLegacyFlags(rawArgs, sub);
  const verbose = args.includes("--verbose");
  const program = buildProgram();
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed usage errors; help/version exit with code 0
      return err.exitCode === 0 ? 0 : 2;
    }
    const line = oneLine(err);
    process.stderr.write(`ssl3d: error: ${line}\n`);
    if (verbose && err instanceof Error && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
    else if (!verbose && exitCodeOf(err) === 1)
      process.stderr.write("ssl3d: (internal error; run with --verbose for the stack trace)\n");
    writeTerminationLog(formatFailureMessage({ exitCode: exitCodeOf(err), reason: failureReason(err), message: line }));
    return exitCodeOf(err);
  }
}
