import type { Command } from "commander";

/**
 * One CLI sub-command. A module registers itself on the program; `legacyFlags` maps nnssl's single-dash
 * multi-letter flags (`-tr`, `-np`, `-total_parts`, ...) to the long options the command declares, so upstream
 * command lines keep working (commander only knows one-letter short flags).
 */
export interface CliCommand {
  readonly name: string;
  /** nnssl-compatible executable names that run this command (e.g. `nnssl_train`). */
  readonly aliases?: readonly string[];
  readonly legacyFlags?: Readonly<Record<string, string>>;
  register(program: Command): void;
}
